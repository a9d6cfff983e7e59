/**
 * Redis the way the platforms give it, against the real server entry point (src/server.ts as a child process)
 * and a real redis-server that speaks TLS only, on a self-signed certificate chain made for the test (Heroku
 * Redis) and with a password in the URL:
 *  - REDIS_TLS_REJECT_UNAUTHORIZED=false (Heroku) and REDIS_TLS_CA_FILE (Memorystore): a full EHR launch and a
 *    proxied FHIR call, with the session in that Redis;
 *  - verification on and no CA: the server still listens, /readyz and the session routes answer 503 with the
 *    certificate problem, and the log names the setting to change, once, not once per retry;
 *  - Redis down at boot: the server listens, answers 503, and the same process becomes ready and completes a
 *    launch once redis-server starts on that port.
 */
import net from 'node:net';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createClient } from 'redis';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { TEST_SESSION_SECRET } from '../helpers/bff.js';
import { json } from '../helpers/json.js';
import { freePort, redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.js';

const d = redisAvailable() ? describe : describe.skip;
const CSRF = { 'X-CSRF': '1' };
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;

/** Polls `probe` until it returns a value, with a generous deadline (the CI machine is busy). */
async function until<T>(what: string, probe: () => Promise<T | undefined>, deadlineMs = 30_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** A TCP relay in front of Redis that counts connection attempts (each is one TLS handshake). */
async function countingRelay(targetPort: number): Promise<{ port: number; connections(): number; close(): Promise<void> }> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    count++;
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => { client.destroy(); upstream.destroy(); });
      s.on('close', () => sockets.delete(s));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => count,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()); }),
  };
}

/** A session cookie express-session accepts (signed with the secret), for a session id no store has. */
function signedSessionCookie(): string {
  const sid = randomBytes(16).toString('base64url');
  const sig = createHmac('sha256', TEST_SESSION_SECRET).update(sid).digest('base64').replace(/=+$/, '');
  return `smart-bff.sid=${encodeURIComponent(`s:${sid}.${sig}`)}`;
}

const lines = (out: string, event: string) => out.split('\n').filter((l) => l.includes(`"event":"${event}"`));

d('Redis over TLS, and Redis unreachable at boot (real server entry point)', () => {
  let redis: TestRedis;
  let sandbox: Sandbox & { url: string };
  const servers: ServerProcess[] = [];
  const others: { close(): Promise<void> }[] = [];

  beforeAll(async () => {
    redis = await startRedis({ tls: true, password: PASSWORD });
    sandbox = await startSandbox({
      clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
      redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    });
  }, 60000);

  afterAll(async () => {
    for (const s of servers) await s.stop('SIGKILL');
    for (const o of others) await o.close();
    await sandbox?.close();
    await redis?.stop();
  });

  async function startServer(env: Record<string, string>): Promise<ServerProcess> {
    const port = await freePort();
    const s = await startServerProcess({
      PUBLIC_URL: `http://127.0.0.1:${port}`, SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app',
      ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', ...env,
    }, port);
    servers.push(s);
    return s;
  }

  /** EHR launch → sign-in → callback → a FHIR read through the proxy. */
  async function launchAndReadPatient(server: ServerProcess, patientIndex: number): Promise<void> {
    const patient = sandbox.patients[patientIndex]!.id;
    const browser = new Browser();
    const start = await browser.get(`${server.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient })}`);
    expect(start.status).toBe(302);
    const done = await browser.get(await authorize(start.headers.get('location')!));
    expect(done.status).toBe(302);
    const context = new URL(done.headers.get('location')!, server.url).searchParams.get('context');
    expect(context).toBeTruthy();
    const read = await browser.get(`${server.url}/fhir/Patient/${patient}`, { ...CSRF, 'X-SMART-Context': context! });
    expect(read.status).toBe(200);
    const body = await json(read);
    expect(body.resourceType).toBe('Patient');
    expect(body.id).toBe(patient);
  }

  async function readyz(server: ServerProcess): Promise<{ status: number; body: any }> {
    const res = await fetch(`${server.url}/readyz`);
    return { status: res.status, body: await json(res) };
  }

  test('rediss:// with REDIS_TLS_REJECT_UNAUTHORIZED=false (Heroku Redis): a launch completes and the proxy answers; the session is in that Redis', async () => {
    const server = await startServer({ REDIS_URL: redis.url, REDIS_TLS_REJECT_UNAUTHORIZED: 'false' });
    await until('readiness', async () => ((await readyz(server)).status === 200 ? true : undefined));
    expect((await readyz(server)).body.checks.redis).toBe('ok');
    await launchAndReadPatient(server, 0);

    const inspector = createClient({ url: redis.url, socket: { tls: true, ca: readFileSync(redis.certs!.caFile, 'utf8') } });
    inspector.on('error', () => undefined);
    await inspector.connect();
    try {
      expect((await inspector.keys('smart-bff:sess:*')).length).toBeGreaterThan(0);
      expect((await inspector.keys('smart-bff:tokens:*')).length).toBeGreaterThan(0);
    } finally {
      await inspector.close();
    }
    expect(server.output()).toMatch(/"event":"redis.connecting"[^\n]*"tls":true[^\n]*"verify":"off"/);
    expect(server.output()).toMatch(/REDIS_TLS_REJECT_UNAUTHORIZED=false: the Redis server's TLS certificate is NOT verified/);
    expect(server.output()).not.toContain(PASSWORD);
  }, 60000);

  test('rediss:// with REDIS_TLS_CA_FILE (Memorystore in-transit encryption): verified against that CA, by host name (SNI), and a launch completes', async () => {
    const server = await startServer({ REDIS_URL: redis.url.replace('127.0.0.1', 'localhost'), REDIS_TLS_CA_FILE: redis.certs!.caFile });
    await until('readiness', async () => ((await readyz(server)).status === 200 ? true : undefined));
    await launchAndReadPatient(server, 1);
    expect(server.output()).toMatch(/"event":"redis.connecting"[^\n]*"verify":"ca-file","servername":"localhost"/);
    expect(server.output()).not.toContain(PASSWORD);
  }, 60000);

  test('rediss:// with verification on and no CA: listens; /readyz and session routes answer 503 with the certificate problem; the fix is logged once, not per retry', async () => {
    const relay = await countingRelay(redis.port);
    others.push(relay);
    const server = await startServer({ REDIS_URL: `rediss://:${PASSWORD}@127.0.0.1:${relay.port}` });
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);

    const ready = await until('the certificate problem on /readyz', async () => {
      const r = await readyz(server);
      return r.body.checks.redis !== 'unreachable: connecting' ? r : undefined;
    });
    expect(ready.status).toBe(503);
    expect(ready.body.status).toBe('not_ready');
    expect(ready.body.checks.redis).toBe('unreachable: TLS certificate problem (SELF_SIGNED_CERT_IN_CHAIN): set REDIS_TLS_REJECT_UNAUTHORIZED=false or REDIS_TLS_CA_FILE');

    const login = await fetch(`${server.url}/login`, { headers: { accept: 'application/json' }, redirect: 'manual' });
    expect(login.status).toBe(503);
    expect((await json(login)).error).toBe('session_store_unavailable');
    expect(login.headers.get('set-cookie')).toBeNull(); // no cookie for a session that was never stored
    const launch = await fetch(`${server.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`, { headers: { accept: 'application/json' }, redirect: 'manual' });
    expect(launch.status).toBe(503);
    expect(launch.headers.get('set-cookie')).toBeNull();
    const cookie = signedSessionCookie();
    const session = await fetch(`${server.url}/api/session`, { headers: { cookie, ...CSRF } });
    expect(session.status).toBe(503);
    expect((await json(session)).error).toBe('session_store_unavailable');
    const fhir = await fetch(`${server.url}/fhir/Patient/x`, { headers: { cookie, ...CSRF } });
    expect(fhir.status).toBe(503);
    expect(fhir.headers.get('set-cookie')).toBeNull(); // never a silent new session

    // The client keeps retrying (several handshakes reach the relay), yet the problem is logged once, with its fix.
    await until('three connection attempts', async () => (relay.connections() >= 3 ? true : undefined));
    await until('the log line', async () => (lines(server.output(), 'redis.unreachable').length > 0 ? true : undefined));
    const logged = lines(server.output(), 'redis.unreachable');
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/"level":"error"/);
    expect(logged[0]).toMatch(/SELF_SIGNED_CERT_IN_CHAIN/);
    expect(logged[0]).toMatch(/REDIS_TLS_REJECT_UNAUTHORIZED=false/);
    expect(logged[0]).toMatch(/REDIS_TLS_CA_FILE/);
    expect(server.output()).not.toContain(PASSWORD);
    expect(server.child.exitCode).toBeNull();
  }, 60000);

  test('Redis down at boot: listens and answers 503; when redis-server starts on that port the same process becomes ready and a launch completes', async () => {
    const later = await startRedis({ tls: true, password: PASSWORD, started: false });
    others.push({ close: () => later.stop() });
    const server = await startServer({ REDIS_URL: later.url, REDIS_TLS_REJECT_UNAUTHORIZED: 'false', REDIS_CONNECT_TIMEOUT_MS: '2000' });

    const down = await until('the connection problem on /readyz', async () => {
      const r = await readyz(server);
      return r.body.checks.redis !== 'unreachable: connecting' ? r : undefined;
    });
    expect(down.status).toBe(503);
    expect(down.body.checks.redis).toBe('unreachable: connection refused');
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const login = await fetch(`${server.url}/login`, { headers: { accept: 'application/json' }, redirect: 'manual' });
    expect(login.status).toBe(503);
    expect((await json(login)).error).toBe('session_store_unavailable');
    expect(login.headers.get('set-cookie')).toBeNull();
    expect(login.headers.get('ratelimit')).toBeNull(); // the shared rate limit cannot count while Redis is down

    await later.start();
    await until('readiness after Redis came up', async () => ((await readyz(server)).status === 200 ? true : undefined));
    await launchAndReadPatient(server, 2);
    // the launch rate limit counts in Redis again (its scripts are loaded now, not left failed from boot)
    const again = await fetch(`${server.url}/login`, { redirect: 'manual' });
    expect(again.status).toBe(302);
    expect(again.headers.get('ratelimit')).toMatch(/limit=60, remaining=\d+/);
    expect(lines(server.output(), 'redis.ready')).toHaveLength(1);
    expect(lines(server.output(), 'server.listening')).toHaveLength(1); // the same process, never restarted
  }, 90000);
});
