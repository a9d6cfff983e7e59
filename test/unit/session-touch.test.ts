/** throttleTouches: the session store is touched at most once per interval per session; a destroy forgets it. */
import { jest } from '@jest/globals';
import type { Store, SessionData } from 'express-session';
import { throttleTouches, touchIntervalMs } from '../../src/session/session-middleware.js';

function fakeStore() {
  const touched: string[] = [];
  const store = {
    touch: (sid: string, _s: SessionData, cb?: (err?: unknown) => void) => { touched.push(sid); cb?.(); },
    destroy: (_sid: string, cb?: (err?: unknown) => void) => cb?.(),
  } as unknown as Store;
  return { store, touched };
}

const sess = {} as SessionData;

test('a second touch within the interval is skipped; after it, the store is touched again', async () => {
  const { store, touched } = fakeStore();
  throttleTouches(store, 100);
  const done = jest.fn();
  store.touch!('a', sess, done);
  store.touch!('a', sess, done);
  store.touch!('b', sess, done);
  expect(touched).toEqual(['a', 'b']);
  expect(done).toHaveBeenCalledTimes(3);
  await new Promise((r) => setTimeout(r, 150));
  store.touch!('a', sess, done);
  expect(touched).toEqual(['a', 'b', 'a']);
});

test('a failed touch is retried on the next request; a destroyed session is forgotten', () => {
  const touched: string[] = [];
  let fail = true;
  const store = {
    touch: (sid: string, _s: SessionData, cb?: (err?: unknown) => void) => { touched.push(sid); cb?.(fail ? new Error('store down') : undefined); },
    destroy: (_sid: string, cb?: (err?: unknown) => void) => cb?.(),
  } as unknown as Store;
  throttleTouches(store, 60_000);
  const errors: unknown[] = [];
  store.touch!('a', sess, ((err?: unknown) => errors.push(err)) as () => void);
  fail = false;
  store.touch!('a', sess, () => undefined);
  expect(touched).toEqual(['a', 'a']);
  expect(errors).toHaveLength(1);
  store.destroy('a', () => undefined);
  store.touch!('a', sess, () => undefined);
  expect(touched).toEqual(['a', 'a', 'a']);
});

test('the interval is a tenth of the idle timeout, at most a minute', () => {
  expect(touchIntervalMs(30 * 60)).toBe(60_000);
  expect(touchIntervalMs(120)).toBe(12_000);
});
