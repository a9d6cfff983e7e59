/**
 * Caches whose capacity is large are made at their first use, not at start-up (lazy-lru.ts): lru-cache allocates
 * its whole capacity when it is made, which production start-up paid for every cache of the app.
 */
import { LazyLru } from '../../src/lazy-lru.js';
import { loadConfig } from '../../src/config.js';
import { createApp } from '../../src/app.js';
import { createLogger } from '../../src/log.js';

test('LazyLru: nothing is made until the cache is used; then it is one cache, with the options given', () => {
  const lazy = new LazyLru<string, number>({ max: 2 });
  expect(lazy.made).toBeUndefined();
  expect(lazy.made?.get('a')).toBeUndefined(); // looking without making
  expect(lazy.made).toBeUndefined();
  lazy.cache.set('a', 1);
  expect(lazy.made).toBe(lazy.cache);
  lazy.cache.set('b', 2);
  lazy.cache.set('c', 3);
  expect([...lazy.cache.keys()].sort()).toEqual(['b', 'c']); // max 2
});

test('a new app makes none of its large caches before they are used', async () => {
  const config = await loadConfig({
    NODE_ENV: 'production', PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: 'lazy-lru-test-secret-0123456789abcdefghij',
    SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1', SINGLE_INSTANCE: '1',
  });
  const app = createApp({ config, logger: createLogger({ level: 'silent' }), sessionSweepIntervalMs: false });
  try {
    const made: Record<string, unknown> = {};
    const visit = (name: string, value: unknown, depth: number) => {
      if (value instanceof LazyLru) made[name] = value.made;
      else if (value && typeof value === 'object' && depth < 3) for (const [k, v] of Object.entries(value)) visit(`${name}.${k}`, v, depth + 1);
    };
    const { smart } = app.locals;
    for (const [name, part] of Object.entries({ tokenStore: smart.tokenStore, transactions: smart.transactions, discovery: smart.discovery, recentCodes: smart.recentCodes, sessionEndings: app.locals.sessionEndings })) visit(name, part, 0);
    // the token store (sized for every session's contexts), pending launches, discovery and the replay guard at least
    expect(Object.keys(made)).toEqual(expect.arrayContaining(['tokenStore.lazy', 'transactions.lazy', 'discovery.lazyEntries', 'discovery.lazyKnown', 'recentCodes.seen']));
    expect(Object.entries(made).filter(([, v]) => v !== undefined)).toEqual([]);
  } finally {
    app.locals.sessionEndings.close();
  }
});
