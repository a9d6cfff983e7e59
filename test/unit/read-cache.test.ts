/** ReadCache (read-cache.ts): kept until invalidated or expired; a read that raced a write is not kept; nothing kept while not live. */
import { ReadCache } from '../../src/session/read-cache.js';

const store = new Map<string, { v: number }>();
let loads = 0;
/** A store read: the value as it is when the read starts, delivered a moment later. */
const load = (key: string) => async () => {
  loads++;
  const value = store.get(key);
  await new Promise((r) => setImmediate(r));
  return value;
};

beforeEach(() => {
  store.clear();
  loads = 0;
});

test('a value is read once, then from memory, until invalidated', async () => {
  const cache = new ReadCache<{ v: number }>({ max: 10, ttlMs: 60_000 });
  store.set('a', { v: 1 });
  expect(await cache.get('a', load('a'))).toEqual({ v: 1 });
  expect(await cache.get('a', load('a'))).toEqual({ v: 1 });
  expect(loads).toBe(1);
  store.set('a', { v: 2 });
  cache.invalidate('a');
  expect(await cache.get('a', load('a'))).toEqual({ v: 2 });
  expect(loads).toBe(2);
});

test('a miss is never kept', async () => {
  const cache = new ReadCache<{ v: number }>({ max: 10, ttlMs: 60_000 });
  expect(await cache.get('a', load('a'))).toBeUndefined();
  store.set('a', { v: 1 });
  expect(await cache.get('a', load('a'))).toEqual({ v: 1 });
});

test('a read during which an invalidation arrived is used once and not kept', async () => {
  const cache = new ReadCache<{ v: number }>({ max: 10, ttlMs: 60_000 });
  store.set('a', { v: 1 });
  const reading = cache.get('a', load('a'));
  store.set('a', { v: 2 });
  cache.invalidate('a'); // the write's announcement arrives while the read is in flight
  expect(await reading).toEqual({ v: 1 });
  expect(await cache.get('a', load('a'))).toEqual({ v: 2 });
  expect(loads).toBe(2);
});

test('entries expire after ttlMs', async () => {
  const cache = new ReadCache<{ v: number }>({ max: 10, ttlMs: 30 });
  store.set('a', { v: 1 });
  await cache.get('a', load('a'));
  store.set('a', { v: 2 });
  await new Promise((r) => setTimeout(r, 60));
  expect(await cache.get('a', load('a'))).toEqual({ v: 2 });
});

test('while not live nothing is kept; going live again starts empty', async () => {
  const cache = new ReadCache<{ v: number }>({ max: 10, ttlMs: 60_000 });
  store.set('a', { v: 1 });
  await cache.get('a', load('a'));
  cache.setLive(false);
  expect(cache.size).toBe(0);
  await cache.get('a', load('a'));
  await cache.get('a', load('a'));
  expect([loads, cache.size]).toEqual([3, 0]);
  const reading = cache.get('a', load('a'));
  cache.setLive(true);
  await reading; // started while not live: not kept
  expect(cache.size).toBe(0);
  await cache.get('a', load('a'));
  await cache.get('a', load('a'));
  expect(loads).toBe(5);
});

test('peek: the value kept, without a store read; nothing once invalidated, expired or while not live', async () => {
  const cache = new ReadCache<{ v: number }>({ max: 10, ttlMs: 40 });
  store.set('a', { v: 1 });
  expect(cache.peek('a')).toBeUndefined(); // never read: peek does not load
  await cache.get('a', load('a'));
  expect(cache.peek('a')).toEqual({ v: 1 });
  cache.invalidate('a');
  expect(cache.peek('a')).toBeUndefined();
  await cache.get('a', load('a'));
  cache.setLive(false);
  expect(cache.peek('a')).toBeUndefined();
  cache.setLive(true);
  await cache.get('a', load('a'));
  await new Promise((r) => setTimeout(r, 80));
  expect(cache.peek('a')).toBeUndefined();
  expect(loads).toBe(3);
});
