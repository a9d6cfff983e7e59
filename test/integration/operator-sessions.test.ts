/**
 * Operators' sessions (review L2): a touch that read the session just before it ended (a sign-out on another
 * request or instance, its Redis key expiring) never writes it back. Memory and a real Redis.
 */
import { MemoryOperatorSessions, RedisOperatorSessions, type OperatorSession } from '../../src/admin/operator-sessions.js';
import { RedisConnection } from '../../src/session/redis-client.js';
import { loadConfig } from '../../src/config.js';
import { captureLogs } from '../helpers/log-capture.js';
import { TEST_SESSION_SECRET } from '../helpers/bff.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

/** Holds every touch between its read and its write until `release`. */
function gated<T extends new (...args: any[]) => { touch(id: string): Promise<OperatorSession | undefined> }>(Base: T) {
  return class extends Base {
    gate: Promise<void> | undefined;
    readDone: (() => void) | undefined;
    protected async read(key: string): Promise<OperatorSession | undefined> {
      const v = await (Base.prototype as unknown as { read(k: string): Promise<OperatorSession | undefined> }).read.call(this, key);
      this.readDone?.();
      await this.gate;
      return v;
    }
  };
}

async function signedOutMidTouch(store: InstanceType<ReturnType<typeof gated>> & { create(): Promise<string>; destroy(id: string): Promise<void> }) {
  const id = await store.create();
  let release!: () => void;
  store.gate = new Promise<void>((r) => (release = r));
  const read = new Promise<void>((r) => (store.readDone = r));
  const touching = store.touch(id);
  await read;
  store.gate = undefined;
  store.readDone = undefined;
  await store.destroy(id); // signed out while the touch was between its read and its write
  release();
  expect(await touching).toBeUndefined();
  expect(await store.touch(id)).toBeUndefined(); // and it stays ended
}

test('memory: a sign-out between a touch\'s read and its write ends the session for good', async () => {
  const Store = gated(MemoryOperatorSessions);
  await signedOutMidTouch(new Store(60) as never);
});

const withRedis = redisAvailable() ? describe : describe.skip;
withRedis('Redis', () => {
  let redis: TestRedis;
  let conn: RedisConnection;
  beforeAll(async () => {
    redis = await startRedis();
    const config = await loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'http://127.0.0.1:1', SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: 'https://ehr.example/fhir', SMART_CLIENT_ID: 'x', SANDBOX: 'off', REDIS_URL: redis.url });
    conn = new RedisConnection(config.redis!, captureLogs('warn').logger);
    await conn.start();
  });
  afterAll(async () => {
    await conn?.close();
    await redis?.stop();
  });

  test('a sign-out between a touch\'s read and its write ends the session for good (SET XX)', async () => {
    const Store = gated(RedisOperatorSessions);
    await signedOutMidTouch(new Store(conn.client, 60) as never);
    expect(await conn.client.keys('smart-bff:admin:session:*')).toEqual([]);
  });

  test('a key that expires between a touch\'s read and its write is not written back', async () => {
    const Store = gated(RedisOperatorSessions);
    const store = new Store(conn.client, 60) as unknown as InstanceType<ReturnType<typeof gated>> & { create(): Promise<string> };
    const id = await store.create();
    let release!: () => void;
    store.gate = new Promise<void>((r) => (release = r));
    const read = new Promise<void>((r) => (store.readDone = r));
    const touching = store.touch(id);
    await read;
    store.gate = undefined;
    store.readDone = undefined;
    const [key] = await conn.client.keys('smart-bff:admin:session:*');
    await conn.client.pExpire(key!, 1);
    await new Promise((r) => setTimeout(r, 20));
    release();
    expect(await touching).toBeUndefined();
    expect(await conn.client.exists(key!)).toBe(0);
  });
});
