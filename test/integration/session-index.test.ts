/**
 * The session index (session-endings.ts), in memory and on a real Redis: an entry is taken once, whoever asks
 * at the same moment (two instances, a request and the sweep); it is due only once its deadline has passed; a
 * touch pushes the deadline of an entry that exists and never recreates one that was taken or forgotten.
 */
import { MemorySessionIndex, type SessionIndex } from '../../src/session/session-endings.js';
import { RedisSessionIndex } from '../../src/session/redis-store.js';
import { redisAvailable, redisClientsForFile } from '../helpers/redis.js';

const client = redisClientsForFile();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const KEEP = 60_000;

describe.each(redisAvailable() ? ['memory', 'redis'] : ['memory'])('%s', (kind) => {
  /** Two instances' handles on one index (in memory: the same one). */
  async function indexes(): Promise<[SessionIndex, SessionIndex]> {
    if (kind === 'memory') {
      const m = new MemorySessionIndex();
      return [m, m];
    }
    const [a, b] = [await client(), await client()];
    await a.flushAll();
    return [new RedisSessionIndex(a), new RedisSessionIndex(b)];
  }

  test('claim: of two instances claiming the same entries at once, one gets each; then nothing is left', async () => {
    const [a, b] = await indexes();
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    for (const k of keys) await a.save(k, { contexts: [`${k}-c1`, `${k}-c2`], createdAt: 1000 }, 60_000, KEEP);
    const results = await Promise.all(keys.flatMap((k) => [a.claim(k), b.claim(k)]));
    keys.forEach((k, i) => {
      expect([results[2 * i], results[2 * i + 1]].filter(Boolean)).toEqual([{ key: k, contexts: [`${k}-c1`, `${k}-c2`], createdAt: 1000 }]);
    });
    for (const k of keys) expect(await a.claim(k)).toBeUndefined();
  });

  test('claimDue: nothing before the deadline; after it, each due entry goes to one of two sweeping instances', async () => {
    const [a, b] = await indexes();
    for (let i = 0; i < 10; i++) await a.save(`due${i}`, { contexts: [`c${i}`], createdAt: 1 }, 300, KEEP);
    await a.save('later', { contexts: ['c-later'], createdAt: 1 }, 60_000, KEEP);
    expect(await a.claimDue(0, 100)).toEqual([]);
    await sleep(400);
    const [x, y] = await Promise.all([a.claimDue(0, 100), b.claimDue(0, 100)]);
    expect([...x, ...y].map((e) => e.key).sort()).toEqual(Array.from({ length: 10 }, (_, i) => `due${i}`).sort());
    expect(await a.claimDue(0, 100)).toEqual([]);
    expect(await a.claim('later')).toEqual({ key: 'later', contexts: ['c-later'], createdAt: 1 });
  });

  test('a touch pushes the deadline; it never brings back an entry that was forgotten or taken', async () => {
    const [a, b] = await indexes();
    await a.save('s1', { contexts: ['c1'], createdAt: 1 }, 300, KEEP);
    await a.save('s2', { contexts: ['c2'], createdAt: 1 }, 300, KEEP);
    await b.touch('s1', 60_000, KEEP);
    await b.forget('s2');
    await b.touch('s2', 60_000, KEEP);
    await sleep(400);
    expect(await a.claimDue(0, 100)).toEqual([]);
    expect(await a.claim('s2')).toBeUndefined();
    expect(await a.claim('s1')).toEqual({ key: 's1', contexts: ['c1'], createdAt: 1 });
    await b.touch('s1', 60_000, KEEP);
    expect(await a.claim('s1')).toBeUndefined();
  });
});
