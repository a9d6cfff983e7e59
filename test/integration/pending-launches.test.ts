/**
 * Checklist #44: pending (anonymous) launches are kept apart from established sessions, with their own bound and
 * TTL, so a flood of /login never evicts a signed-in user. Against the real app with the in-memory stores, and
 * against the real server entry point with a real Redis (two instances sharing it).
 */
import type { Store } from 'express-session';
import { createClient } from 'redis';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { createMemorySessionStore } from '../../src/session/session-middleware.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff, TEST_SESSION_SECRET } from '../helpers/bff.js';
import { json } from '../helpers/json.js';
import { freePort, redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.js';

const CSRF = { 'X-CSRF': '1' };
let sandbox: Sandbox & { url: string };
const started: StartedBff[] = [];
const tokenRequests: unknown[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  } as Parameters<typeof startSandbox>[0]);
  sandbox.events.on('token-request', (e) => tokenRequests.push(e));
});
afterAll(async () => {
  for (const b of started) await b.close();
  await sandbox?.close();
});

/** Counts what reaches a real store (its own methods, called through). */
function countCalls(store: Store): { total(): number; reset(): void } {
  const counts = { n: 0 };
  for (const name of ['get', 'set', 'touch', 'destroy'] as const) {
    const original = (store[name] as (...a: unknown[]) => unknown).bind(store);
    (store as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => { counts.n++; return original(...args); };
  }
  return { total: () => counts.n, reset: () => { counts.n = 0; } };
}

function storeLength(store: Store): Promise<number> {
  return new Promise((resolve, reject) => store.length!((err, n) => (err ? reject(err) : resolve(n ?? 0))));
}

async function launchUrl(b: { url: string }, browser: Browser, patient = sandbox.patients[0]!.id): Promise<string> {
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient })}`);
  expect(start.status).toBe(302);
  return start.headers.get('location')!;
}

/** Anonymous /login calls, `concurrency` at a time, each from a new browser (no cookie). */
async function flood(url: string, count: number, concurrency = 16): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++;
      const res = await fetch(`${url}/login`, { redirect: 'manual' });
      await res.arrayBuffer();
      statuses.push(res.status);
    }
  }));
  return statuses;
}

describe('#44 pending launches are bounded apart from established sessions (memory stores)', () => {
  test('#44 a signed-in session survives 10,100 anonymous /login calls, which never touch the session store', async () => {
    const store = createMemorySessionStore(); // the production default: LRU of 10,000 sessions
    const calls = countCalls(store);
    const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', LAUNCH_RATE_LIMIT: '100000', MAX_PENDING_LAUNCHES: '100' }, { sessionStore: store });
    started.push(b);
    const browser = new Browser();
    expect((await browser.get(await authorize(await launchUrl(b, browser)))).status).toBe(302);
    expect((await browser.get(`${b.url}/api/session`, CSRF)).status).toBe(200);
    const sessions = await storeLength(store);
    calls.reset();

    const statuses = await flood(b.url, 10_100);
    expect(statuses.filter((s) => s !== 302)).toEqual([]);

    expect((await browser.get(`${b.url}/api/session`, CSRF)).status).toBe(200);
    calls.reset(); // (that request touched the store, as it should)
    await flood(b.url, 20);
    expect(calls.total()).toBe(0);
    expect(await storeLength(store)).toBe(sessions);
  }, 180000);

  test('#44 the pending-launch bound (MAX_PENDING_LAUNCHES) evicts only pending launches, oldest first', async () => {
    const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', LAUNCH_RATE_LIMIT: '100000', MAX_PENDING_LAUNCHES: '5' });
    started.push(b);
    const browser = new Browser();
    expect((await browser.get(await authorize(await launchUrl(b, browser, sandbox.patients[0]!.id)))).status).toBe(302);
    // a second tab's launch, then five anonymous launches elsewhere: the tab's pending launch is the oldest
    const evictedCallback = await authorize(await launchUrl(b, browser, sandbox.patients[1]!.id));
    await flood(b.url, 5, 1);
    const before = tokenRequests.length;
    const res = await browser.get(evictedCallback, { accept: 'application/json' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('state_unknown');
    expect(tokenRequests.length).toBe(before);
    // the signed-in session is untouched, and a new launch completes
    expect((await browser.get(`${b.url}/api/session`, CSRF)).status).toBe(200);
    const again = await browser.get(await authorize(await launchUrl(b, browser, sandbox.patients[2]!.id)));
    expect(again.status).toBe(302);
    const context = new URL(again.headers.get('location')!, b.url).searchParams.get('context')!;
    expect((await json(await browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': context }))).patient).toBe(sandbox.patients[2]!.id);
  });
});

describe('#44 a pending launch is used once', () => {
  test('#44 the same callback again, from the same browser without the session it created → 400 state_unknown, no second token request', async () => {
    const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', LAUNCH_RATE_LIMIT: '100000' });
    started.push(b);
    const browser = new Browser();
    const callbackUrl = await authorize(await launchUrl(b, browser));
    const launchCookie = browser.cookieHeader(b.url); // the launch cookie only: no session yet
    const before = tokenRequests.length;
    expect((await fetch(callbackUrl, { headers: { cookie: launchCookie }, redirect: 'manual' })).status).toBe(302);
    const again = await fetch(callbackUrl, { headers: { cookie: launchCookie, accept: 'application/json' }, redirect: 'manual' });
    expect(again.status).toBe(400);
    expect((await json(again)).error).toBe('state_unknown');
    expect(tokenRequests.length).toBe(before + 1);
  });
});

const d = redisAvailable() ? describe : describe.skip;

d('#44 pending launches in Redis: one key per state with a TTL, single use, bound to the browser', () => {
  let redis: TestRedis;
  let client: ReturnType<typeof createClient>;
  let a: ServerProcess;
  let b: ServerProcess;
  const TTL = 120;

  beforeAll(async () => {
    redis = await startRedis();
    client = createClient({ url: redis.url });
    await client.connect();
    const portA = await freePort();
    const env = {
      PUBLIC_URL: `http://127.0.0.1:${portA}`, SESSION_SECRET: TEST_SESSION_SECRET, REDIS_URL: redis.url, SMART_ISS: sandbox.fhirBaseUrl,
      SMART_CLIENT_ID: 'public-app', ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', LAUNCH_TTL_SECONDS: String(TTL),
    };
    [a, b] = await Promise.all([startServerProcess(env, portA), freePort().then((p) => startServerProcess(env, p))]);
  }, 60000);
  afterAll(async () => {
    await a?.stop('SIGKILL');
    await b?.stop('SIGKILL');
    await client?.quit();
    await redis?.stop();
  });

  const keys = async (pattern: string) => (await client.keys(`smart-bff:${pattern}`)).sort();

  test('#44 /login stores no session, only its pending launch under its own key with the launch TTL', async () => {
    await client.flushAll();
    const browser = new Browser();
    const res = await browser.get(`${a.url}/login`);
    expect(res.status).toBe(302);
    expect(await keys('sess:*')).toEqual([]);
    const pending = await keys('launch:*');
    expect(pending).toHaveLength(1);
    const ttl = await client.pTTL(pending[0]!);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual((TTL + 60) * 1000);
    // the state and the browser binding are not in the stored value in the clear
    const state = new URL(res.headers.get('location')!).searchParams.get('state')!;
    const stored = (await client.get(pending[0]!))!;
    expect(stored).not.toContain(state);
    for (const value of browser.cookies(a.url).values()) expect(stored).not.toContain(value);
  });

  test("#44 a foreign browser's state → 400 and no token request, and the victim's pending launch survives it", async () => {
    await client.flushAll();
    const victim = new Browser();
    const attacker = new Browser();
    await attacker.get(`${a.url}/login`);
    const callbackUrl = await authorize(await launchUrl({ url: a.url }, victim));
    const cb = new URL(callbackUrl);
    const before = tokenRequests.length;
    const stolen = await fetch(`${b.url}/callback${cb.search}`, { headers: { cookie: attacker.cookieHeader(a.url), accept: 'application/json' }, redirect: 'manual' });
    expect(stolen.status).toBe(400);
    expect((await json(stolen)).error).toBe('state_unknown');
    expect(tokenRequests.length).toBe(before);
    expect(await keys('launch:*')).toHaveLength(2);
    // the victim finishes (on the other instance), and its pending launch is gone: single use
    const done = await fetch(`${b.url}/callback${cb.search}`, { headers: { cookie: victim.cookieHeader(a.url) }, redirect: 'manual' });
    expect(done.status).toBe(302);
    expect(tokenRequests.length).toBe(before + 1);
    expect(await keys('launch:*')).toHaveLength(1); // the attacker's own
    expect(await keys('sess:*')).toHaveLength(1);
  });

  test('#44 the same callback at two instances at once: the code is exchanged once', async () => {
    const browser = new Browser();
    const cb = new URL(await authorize(await launchUrl({ url: a.url }, browser)));
    const before = tokenRequests.length;
    const cookie = browser.cookieHeader(a.url);
    const results = await Promise.all([a.url, b.url].map((base) => fetch(`${base}/callback${cb.search}`, { headers: { cookie, accept: 'application/json' }, redirect: 'manual' })));
    expect(tokenRequests.length - before).toBe(1);
    expect(results.map((r) => r.status).sort()).toEqual([302, 400]);
  });
});
