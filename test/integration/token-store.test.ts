/**
 * The token stores' lifetime operations (token-store.ts), in memory and on a real Redis: `take` hands a token
 * set out once, even to several instances asking at the same moment (so its tokens are revoked once); `replace`
 * (a refresh) keeps the expiry that follows the session and never brings back a token set whose context ended;
 * `extend` moves the expiry of the token sets still stored and creates none.
 */
import { MemoryTokenStore, type TokenSet, type TokenStore } from '../../src/session/token-store.js';
import { RedisTokenStore } from '../../src/session/redis-store.js';
import { redisAvailable, redisClientsForFile } from '../helpers/redis.js';

const set = (n: number): TokenSet => ({ accessToken: `at-${n}`, refreshToken: `rt-${n}`, tokenType: 'Bearer', fhirBaseUrl: 'https://ehr.example/fhir', registration: 'default' });

const client = redisClientsForFile();

const kinds = redisAvailable() ? ['memory', 'redis'] : ['memory'];

describe.each(kinds)('%s', (kind) => {
  /** Two handles on one store (two instances on one Redis; in memory, the same store). */
  async function stores(): Promise<[TokenStore, TokenStore, (id: string) => Promise<number | undefined>]> {
    if (kind === 'memory') {
      const m = new MemoryTokenStore();
      return [m, m, async (id) => m.remainingSeconds(id)];
    }
    const a = await client();
    const b = await client();
    return [new RedisTokenStore(a), new RedisTokenStore(b), async (id) => { const ms = await a.pTTL(`smart-bff:tokens:${id}`); return ms > 0 ? ms / 1000 : undefined; }];
  }

  test('take: of two instances taking the same token sets at once, one gets each', async () => {
    const [a, b] = await stores();
    const ids = Array.from({ length: 20 }, (_, i) => `${kind}-take-${i}`);
    for (const [i, id] of ids.entries()) await a.set(id, set(i), 60);
    const results = await Promise.all(ids.flatMap((id) => [a.take(id), b.take(id)]));
    for (let i = 0; i < ids.length; i++) {
      const pair = [results[2 * i], results[2 * i + 1]];
      expect(pair.filter(Boolean)).toEqual([set(i)]);
    }
    for (const id of ids) expect(await a.get(id)).toBeUndefined();
  });

  test('replace keeps the expiry, and refuses a token set that was taken (its context ended)', async () => {
    const [a, b, ttl] = await stores();
    const id = `${kind}-replace`;
    await a.set(id, set(1), 30);
    expect(await b.replace(id, set(2))).toBe(true);
    expect(await a.get(id)).toEqual(set(2));
    const left = (await ttl(id))!;
    expect(left).toBeGreaterThan(25);
    expect(left).toBeLessThanOrEqual(30);
    await a.take(id);
    expect(await b.replace(id, set(3))).toBe(false);
    expect(await a.get(id)).toBeUndefined();
  });

  test('extend moves the expiry of stored token sets and creates none', async () => {
    const [a, b, ttl] = await stores();
    await a.set(`${kind}-x1`, set(1), 5);
    await b.extend([`${kind}-x1`, `${kind}-gone`], 120);
    expect((await ttl(`${kind}-x1`))!).toBeGreaterThan(100);
    expect(await a.get(`${kind}-gone`)).toBeUndefined();
    expect(await ttl(`${kind}-gone`)).toBeUndefined();
  });
});
