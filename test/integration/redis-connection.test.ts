/**
 * The Redis connection (src/session/redis-client.ts) against real servers that go wrong the way deployments do:
 * a TLS Redis reached with the wrong CA, the wrong host name, the wrong password or plain redis://; a plain
 * Redis reached with rediss://; a port that accepts and then says nothing. Each reason on /readyz is one an
 * operator can act on. And SNI: the host name (or REDIS_TLS_SERVERNAME) goes out in the TLS handshake.
 */
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../src/config.js';
import { RedisConnection } from '../../src/session/redis-client.js';
import { captureLogs } from '../helpers/log-capture.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { makeTestCertificates } from '../helpers/tls-certs.js';

const d = redisAvailable() ? describe : describe.skip;
const STRONG = 'q8Yt3vN0pLw2Zr7XcB5mKd9HsJ4fGa1e-Ux6';

async function connection(env: Record<string, string>): Promise<{ conn: RedisConnection; logs: ReturnType<typeof captureLogs> }> {
  const config = await loadConfig({ NODE_ENV: 'test', SESSION_SECRET: STRONG, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'c', ...env });
  const logs = captureLogs('info');
  const conn = new RedisConnection(config.redis!, logs.logger);
  void conn.start();
  return { conn, logs };
}

/** The first answer of check() that is not 'unreachable: connecting', polled with a generous deadline. */
async function settled(conn: RedisConnection): Promise<string> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const r = await conn.check();
    if (r !== 'unreachable: connecting') return r;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('the connection never settled');
}

d('Redis connection problems, each with its reason', () => {
  let tlsRedis: TestRedis;
  let plainRedis: TestRedis;
  const conns: RedisConnection[] = [];
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    [tlsRedis, plainRedis] = await Promise.all([startRedis({ tls: true, password: 'right-password' }), startRedis()]);
  });
  afterAll(async () => {
    for (const c of conns) await c.close();
    for (const c of closers) await c();
    await tlsRedis?.stop();
    await plainRedis?.stop();
  });

  async function open(env: Record<string, string>) {
    const r = await connection(env);
    conns.push(r.conn);
    return r;
  }

  test('the CA that signed the certificate: ok', async () => {
    const { conn } = await open({ REDIS_URL: tlsRedis.url.replace('127.0.0.1', 'localhost'), REDIS_TLS_CA_FILE: tlsRedis.certs!.caFile });
    expect(await settled(conn)).toBe('ok');
  });

  test('another CA: the CA file is named as the problem, and the log says which file', async () => {
    const other = makeTestCertificates();
    const { conn, logs } = await open({ REDIS_URL: tlsRedis.url, REDIS_TLS_CA_FILE: other.caFile });
    expect(await settled(conn)).toBe("unreachable: TLS certificate problem (SELF_SIGNED_CERT_IN_CHAIN): REDIS_TLS_CA_FILE is not the CA that signed the server's certificate");
    expect(logs.find('redis.unreachable').some((l) => l.level === 'error' && String(l.hint).includes(other.caFile))).toBe(true);
  });

  test('a certificate that does not name the host: REDIS_TLS_SERVERNAME is the fix', async () => {
    const { conn } = await open({ REDIS_URL: tlsRedis.url, REDIS_TLS_CA_FILE: tlsRedis.certs!.caFile, REDIS_TLS_SERVERNAME: 'redis.elsewhere.example' });
    expect(await settled(conn)).toBe('unreachable: TLS certificate problem (ERR_TLS_CERT_ALTNAME_INVALID): the certificate does not name the REDIS_URL host; set REDIS_TLS_SERVERNAME to a name it lists');
  });

  test('the wrong password: authentication failed, and the password is never logged', async () => {
    const { conn, logs } = await open({ REDIS_URL: tlsRedis.url.replace('right-password', 'wrong-password'), REDIS_TLS_REJECT_UNAUTHORIZED: 'false' });
    expect(await settled(conn)).toBe('unreachable: authentication failed (WRONGPASS): check the user name and password in REDIS_URL');
    expect(logs.text()).not.toMatch(/right-password|wrong-password/);
  });

  test('redis:// to a TLS-only Redis: the server hangs up, and the reason suggests rediss://', async () => {
    const { conn } = await open({ REDIS_URL: tlsRedis.url.replace('rediss:', 'redis:') });
    expect(await settled(conn)).toBe('unreachable: connection closed by the server (if it requires TLS, use rediss://)');
  });

  test('rediss:// to a plain Redis: it waits for the rest of a "command" that is a TLS hello, the attempt times out, and the reason suggests redis://', async () => {
    const { conn } = await open({ REDIS_URL: plainRedis.url.replace('redis:', 'rediss:'), REDIS_CONNECT_TIMEOUT_MS: '500' });
    expect(await settled(conn)).toBe('unreachable: timeout: no connection within REDIS_CONNECT_TIMEOUT_MS (500 ms) (if this Redis does not speak TLS, use redis://)');
  });

  test('a port that accepts and never answers the handshake: the connect timeout ends each attempt', async () => {
    const silent = net.createServer(() => undefined);
    const held: net.Socket[] = [];
    silent.on('connection', (s) => held.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => { held.forEach((s) => s.destroy()); silent.close(() => r()); }));
    const port = (silent.address() as net.AddressInfo).port;
    const { conn } = await open({ REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_CONNECT_TIMEOUT_MS: '300' });
    expect(await settled(conn)).toBe('unreachable: timeout: no connection within REDIS_CONNECT_TIMEOUT_MS (300 ms) (if this Redis does not speak TLS, use redis://)');
  });

  test('SNI: the REDIS_URL host name, or REDIS_TLS_SERVERNAME, is sent in the handshake (an IP address is not)', async () => {
    const certs = tlsRedis.certs!;
    const seen: (string | false)[] = [];
    const server = tls.createServer({ cert: readFileSync(certs.chainFile), key: readFileSync(certs.keyFile) }, (s) => { seen.push((s as tls.TLSSocket & { servername: string | false }).servername); s.destroy(); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => server.close(() => r())));
    const port = (server.address() as net.AddressInfo).port;
    for (const [env, expected] of [
      [{ REDIS_URL: `rediss://localhost:${port}` }, 'localhost'],
      [{ REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_TLS_SERVERNAME: 'localhost' }, 'localhost'],
      [{ REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_TLS_REJECT_UNAUTHORIZED: 'false' }, false],
    ] as const) {
      const before = seen.length;
      const { conn } = await open({ ...env, REDIS_TLS_CA_FILE: 'REDIS_TLS_REJECT_UNAUTHORIZED' in env ? '' : certs.caFile });
      const end = Date.now() + 30_000;
      while (seen.length === before && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      await conn.close();
      expect(seen[before]).toBe(expected);
    }
  });
});
