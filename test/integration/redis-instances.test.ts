/**
 * Several instances sharing one real Redis, as on Heroku or App Engine: two server processes (the real entry
 * point) behind one PUBLIC_URL, a restart mid-session, Redis stopped and started under load, and one refresh
 * across instances for 20 parallel calls with an expired token.
 */
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { TEST_SESSION_SECRET } from '../helpers/bff.js';
import { json } from '../helpers/json.js';
import { freePort, redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.js';

const d = redisAvailable() ? describe : describe.skip;
const CSRF = { 'X-CSRF': '1' };
const TTL = 3;

d('instances sharing Redis', () => {
  let redis: TestRedis;
  let sandbox: Sandbox & { url: string };
  let a: ServerProcess;
  let b: ServerProcess;
  let env: Record<string, string>;
  let portA: number;
  const refreshes: unknown[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    sandbox = await startSandbox({
      clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
      redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
      accessTokenTtlSeconds: TTL,
    });
    sandbox.events.on('token-request', (e: { grant_type?: string }) => { if (e.grant_type === 'refresh_token') refreshes.push(e); });
    portA = await freePort();
    // one PUBLIC_URL for both, as behind a router
    env = {
      PUBLIC_URL: `http://127.0.0.1:${portA}`, SESSION_SECRET: TEST_SESSION_SECRET, REDIS_URL: redis.url, SMART_ISS: sandbox.fhirBaseUrl,
      SMART_CLIENT_ID: 'public-app', ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', TOKEN_REFRESH_SKEW_SECONDS: '0', METRICS_TOKEN: 'metrics-token-0123456789',
    };
    [a, b] = await Promise.all([startServerProcess(env, portA), freePort().then((p) => startServerProcess(env, p))]);
  }, 60000);

  afterAll(async () => {
    await a?.stop('SIGKILL');
    await b?.stop('SIGKILL');
    await sandbox?.close();
    await redis?.stop();
  });

  async function launchAcross(patient: string) {
    const browser = new Browser();
    const start = await browser.get(`${a.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient })}`);
    expect(start.status).toBe(302);
    const cb = new URL(await authorize(start.headers.get('location')!));
    // the router sends the callback to the other instance
    const done = await fetch(`${b.url}/callback${cb.search}`, { headers: { cookie: browser.cookieHeader(a.url) }, redirect: 'manual' });
    expect(done.status).toBe(302);
    const cookie = done.headers.getSetCookie()[0]!.split(';')[0]!;
    const context = new URL(done.headers.get('location')!, a.url).searchParams.get('context')!;
    return { cookie, context, patient };
  }

  const get = (base: string, path: string, cookie: string, context?: string) =>
    fetch(`${base}${path}`, { headers: { cookie, ...CSRF, ...(context ? { 'X-SMART-Context': context } : {}) } });

  test('a launch started on one instance completes on the other; both serve the session and the proxy', async () => {
    const l = await launchAcross(sandbox.patients[0]!.id);
    for (const s of [a, b]) {
      const session = await get(s.url, '/api/session', l.cookie);
      expect(session.status).toBe(200);
      expect((await json(session)).patient).toBe(l.patient);
      expect((await get(s.url, `/fhir/Patient/${l.patient}`, l.cookie)).status).toBe(200);
    }
  });

  test('a restarted instance loses no session', async () => {
    const l = await launchAcross(sandbox.patients[1]!.id);
    expect(await a.stop('SIGTERM')).toBe(0);
    a = await startServerProcess(env, portA);
    expect((await get(a.url, `/fhir/Patient/${l.patient}`, l.cookie)).status).toBe(200);
  }, 30000);

  test('20 parallel calls across both instances with an expired token cause exactly one refresh', async () => {
    const l = await launchAcross(sandbox.patients[2]!.id);
    await new Promise((r) => setTimeout(r, TTL * 1000 + 300));
    const before = refreshes.length;
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => get(i % 2 ? a.url : b.url, `/fhir/Patient/${l.patient}`, l.cookie)));
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    expect(refreshes.length - before).toBe(1);
  }, 20000);

  test('Redis stopped under load: 503s with a clear message, no crash; service resumes when it is back', async () => {
    const l = await launchAcross(sandbox.patients[3]!.id);
    expect((await fetch(`${a.url}/readyz`)).status).toBe(200);
    await redis.stop();
    const during = await Promise.all(Array.from({ length: 10 }, (_, i) => get(i % 2 ? a.url : b.url, '/api/session', l.cookie)));
    expect(during.map((r) => r.status)).toEqual(Array(10).fill(503));
    const body = await json(during[0]!);
    expect(body.error).toBe('session_store_unavailable');
    const ready = await fetch(`${a.url}/readyz`).catch((e) => { throw new Error(`${e.cause?.code} ${a.child.exitCode} ${a.child.signalCode}\n${a.output().slice(-4000)}`); });
    expect(ready.status).toBe(503);
    const health = await fetch(`${a.url}/healthz`).catch((e) => { throw new Error(`${e.cause?.code} ${a.child.exitCode} ${a.child.signalCode}\n${a.output().slice(-4000)}`); });
    expect(health.status).toBe(200);
    await redis.start(); // an empty Redis: sessions are gone, but the instances recover by themselves
    // each instance reconnects on its own backoff (up to 3 s apart): wait until both are ready again
    for (const s of [a, b]) {
      let status = 0;
      for (let i = 0; i < 50 && status !== 200; i++) {
        await new Promise((r) => setTimeout(r, 200));
        status = (await fetch(`${s.url}/readyz`)).status;
      }
      expect(status).toBe(200);
    }
    const after = await get(b.url, '/api/session', l.cookie);
    expect(after.status).toBe(401); // the session was in the Redis that was lost: a clear 401, not a crash
    const fresh = await launchAcross(sandbox.patients[4]!.id);
    expect((await get(a.url, '/api/session', fresh.cookie)).status).toBe(200);
    expect(a.child.exitCode).toBeNull();
    expect(b.child.exitCode).toBeNull();
  }, 30000);

  test('/metrics counts launches, behind METRICS_TOKEN', async () => {
    await launchAcross(sandbox.patients[0]!.id);
    expect((await fetch(`${b.url}/metrics`)).status).toBe(401);
    const res = await fetch(`${b.url}/metrics`, { headers: { authorization: 'Bearer metrics-token-0123456789' } });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(/smart_bff_launches_total\{outcome="success"\} [1-9]/);
    expect(text).toMatch(/smart_bff_token_exchanges_total\{result="success"\} [1-9]/);
    expect(text).toMatch(/smart_bff_proxy_request_duration_seconds_bucket/);
  });
});
