/**
 * The in-memory token store's bound (token-store.ts): a token set pushed out because the store is full is handed
 * to onEvict (so that the app revokes its tokens), and only then: never one taken, deleted, replaced or expired.
 */
import { MemoryTokenStore, type TokenSet } from '../../src/session/token-store.js';

const set = (n: number): TokenSet => ({ accessToken: `at-${n}`, refreshToken: `rt-${n}`, tokenType: 'Bearer', fhirBaseUrl: 'https://ehr.example/fhir', registration: 'default' });

test('a token set pushed out of a full store is handed to onEvict; the others stay', async () => {
  const evicted: [string, TokenSet][] = [];
  const store = new MemoryTokenStore({ max: 2, onEvict: (id, tokens) => evicted.push([id, tokens]) });
  await store.set('a', set(1), 60);
  await store.set('b', set(2), 60);
  await store.get('a'); // b is now the least recently used
  await store.set('c', set(3), 60);
  expect(evicted).toEqual([['b', set(2)]]);
  expect(await store.get('a')).toEqual(set(1));
  expect(await store.get('c')).toEqual(set(3));
});

test('taken, deleted, replaced or expired token sets are not "pushed out"', async () => {
  const evicted: string[] = [];
  const store = new MemoryTokenStore({ max: 3, onEvict: (id) => evicted.push(id) });
  await store.set('taken', set(1), 60);
  await store.set('deleted', set(2), 60);
  await store.set('replaced', set(3), 60);
  expect(await store.take('taken')).toEqual(set(1));
  await store.delete('deleted');
  expect(await store.replace('replaced', set(4))).toBe(true);
  await store.set('short', set(5), 0.05);
  await new Promise((r) => setTimeout(r, 120));
  expect(await store.get('short')).toBeUndefined();
  expect(evicted).toEqual([]);
});

test('a token set\'s remaining time never exceeds the time it was stored for, even just after a clock reading', async () => {
  const store = new MemoryTokenStore();
  await store.set('primer', set(0), 60);
  for (let i = 0; i < 200; i++) {
    store.remainingSeconds('primer'); // reads the store's clock just before the set
    await store.set(`t${i}`, set(i), 30);
    expect(store.remainingSeconds(`t${i}`)).toBeLessThanOrEqual(30);
    expect(await store.replace(`t${i}`, set(i + 1))).toBe(true); // the expiry kept, not pushed later
    expect(store.remainingSeconds(`t${i}`)).toBeLessThanOrEqual(30);
  }
});

test('peek: the stored token set at once, none once expired, taken or deleted', async () => {
  const store = new MemoryTokenStore();
  expect(store.peek('a')).toBeUndefined(); // nothing stored yet (the cache is not even made)
  await store.set('a', set(1), 60);
  await store.set('b', set(2), 0.05);
  await store.set('c', set(3), 60);
  expect([store.peek('a'), store.peek('b')]).toEqual([set(1), set(2)]);
  await store.take('a');
  await store.delete('c');
  await new Promise((r) => setTimeout(r, 80));
  expect([store.peek('a'), store.peek('b'), store.peek('c')]).toEqual([undefined, undefined, undefined]);
});
