/**
 * Nothing leaks under faults. Rounds of 200 concurrent proxied calls whose upstream answers, answers 5xx,
 * resets, hangs past the timeout, or streams a huge body the browser abandons, plus hostile launches and
 * callbacks: afterwards the server holds no client connection, the keep-alive pool to the upstream holds no busy
 * socket and no socket the upstream does not also hold, no timer is left behind, the heap has not grown with the
 * number of requests, and no failed request left a session or a token set behind.
 */
import http from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import type { Store } from 'express-session';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { createMemorySessionStore } from '../../src/session/session-middleware.js';
import { MemoryTokenStore } from '../../src/session/token-store.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { startFaultUpstream, type FaultMode, type FaultUpstream } from '../helpers/fault-upstream.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let sandbox: Sandbox & { url: string };
let upstream: FaultUpstream;
let b: StartedBff;
let sessionStore: Store;
let tokenStore: MemoryTokenStore;
let cookie: string;
let context: string;

beforeAll(async () => {
  sandbox = await startSandbox({ clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }], redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/ });
  upstream = await startFaultUpstream();
  sessionStore = createMemorySessionStore();
  tokenStore = new MemoryTokenStore();
  // The timeout must fire for the hanging phase, but 200 concurrent answered calls on a busy CI machine (the
  // upstream, the server and the test share one process, beside other Jest workers) can take some hundreds of
  // milliseconds: a tight timeout turned a few of them into 504s there. So did 2 s, once, in a full run, and every
  // time with the machine's two cores kept busy by two other processes (the upstream starting 200 bodies of 50 MB
  // at once is slow to send some of their headers then): 5 s leaves room, at 3 s more per round's hanging phase.
  b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', FHIR_PROXY_TIMEOUT_MS: '5000', LAUNCH_RATE_LIMIT: '100000' }, { sessionStore, tokenStore });
  const browser = new Browser();
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  context = new URL(done.headers.get('location')!, b.url).searchParams.get('context')!;
  cookie = browser.cookieHeader(b.url);
  // the launch's token now goes to the misbehaving upstream
  const tokens = (await tokenStore.get(context))!;
  await tokenStore.set(context, { ...tokens, fhirBaseUrl: upstream.base }, 3600);
}, 30000);

afterAll(async () => {
  await b?.close();
  await upstream?.close();
  await sandbox?.close();
});

/** One request on its own connection (no client-side pool to blur the socket counts). */
function get(path: string, headers: Record<string, string>, abortAfterFirstChunk = false): Promise<number> {
  return new Promise((resolve) => {
    const u = new URL(b.url);
    const req = http.get({ host: u.hostname, port: u.port, path, headers, agent: false }, (res) => {
      if (abortAfterFirstChunk) {
        res.once('data', () => { req.destroy(); resolve(res.statusCode!); });
        return;
      }
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', () => resolve(0));
  });
}

const fhirHeaders = () => ({ 'X-CSRF': '1', cookie, 'X-SMART-Context': context });

const PHASES: { mode: FaultMode; expect: number; abort?: boolean }[] = [
  { mode: { kind: 'ok' }, expect: 200 },
  { mode: { kind: 'status', status: 503 }, expect: 503 },
  { mode: { kind: 'reset' }, expect: 502 },
  { mode: { kind: 'hang' }, expect: 504 },
  { mode: { kind: 'huge', bytes: 50 * 1024 * 1024, contentType: 'application/fhir+ndjson', line: `{"resourceType":"Observation","id":"${'x'.repeat(100)}"}\n` }, expect: 200, abort: true },
  { mode: { kind: 'ok' }, expect: 200 }, // leaves the keep-alive pool with idle sockets to account for
];

/** Concurrent requests per fault phase (the security checklist's R2 asks for no socket leak at 200). */
const CONCURRENCY = 200;

async function faultRound(concurrency: number): Promise<void> {
  for (const phase of PHASES) {
    upstream.mode = phase.mode;
    const statuses = await Promise.all(Array.from({ length: concurrency }, (_, i) => get(`/fhir/Observation/${i}`, fhirHeaders(), phase.abort)));
    expect(statuses).toEqual(Array(concurrency).fill(phase.expect));
  }
  // hostile launches and callbacks, with and without the session cookie
  const hostile = await Promise.all([
    ...Array.from({ length: 10 }, (_, i) => get(`/launch?iss=${encodeURIComponent(`https://evil-${i}.example.com/fhir`)}&launch=x`, { accept: 'application/json' })),
    ...Array.from({ length: 10 }, (_, i) => get(`/callback?state=forged-${i}&code=stolen-${i}`, { accept: 'application/json' })),
    ...Array.from({ length: 10 }, (_, i) => get(`/callback?state=forged-${i}&code=stolen-${i}`, { accept: 'application/json', cookie })),
    ...Array.from({ length: 10 }, () => get('/fhir/Patient/1', { 'X-CSRF': '1' })),
  ]);
  expect(hostile.every((s) => s >= 400 && s < 500)).toBe(true);
}

async function settle(): Promise<void> {
  upstream.mode = { kind: 'ok' };
  await new Promise((r) => setTimeout(r, 300));
  // On a busy machine a connection the proxy closed reaches the upstream's 'close' a little later (CI once counted 103
  // against 101): wait until both sides count the same, at most 2 s, well under the upstream's 5 s keep-alive timeout,
  // so a connection left open is still caught.
  for (let i = 0; i < 20 && upstream.openSockets() !== (await b.app.locals.proxyClient.stats()).connected; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  gc();
  await new Promise((r) => setTimeout(r, 50));
  gc();
}

async function snapshot() {
  const resources = process.getActiveResourcesInfo();
  const pool = await b.app.locals.proxyClient.stats();
  return { timers: resources.filter((r) => r === 'Timeout').length, busy: pool.running, free: pool.free, connected: pool.connected, queued: pool.pending, heap: process.memoryUsage().heapUsed };
}

function sessionCount(): Promise<number> {
  return new Promise((resolve, reject) => sessionStore.length!((err, n) => (err ? reject(err) : resolve(n ?? 0))));
}

function serverConnections(): Promise<number> {
  return new Promise((resolve, reject) => b.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

test('sockets, timers, memory and sessions are where they were after rounds of faults', async () => {
  const sessionsBefore = await sessionCount();
  await faultRound(CONCURRENCY); // warm-up: pools, caches and compiled code reach their steady size
  b.logs.lines.length = 0;
  await settle();
  const before = await snapshot();

  const rounds = 4;
  for (let i = 0; i < rounds; i++) await faultRound(CONCURRENCY);
  b.logs.lines.length = 0; // the captured log lines are the test's, not the server's
  await settle();
  const after = await snapshot();
  const requests = rounds * (PHASES.length * CONCURRENCY + 40);

  // no client connection left open on the server, no busy or queued upstream socket
  expect(await serverConnections()).toBe(0);
  expect(after.busy).toBe(0);
  expect(after.queued).toBe(0);
  // every open upstream connection is an idle one in the pool, one the upstream also holds open; no more of them
  // than requests that ever ran at once
  expect(after.free).toBeGreaterThan(0);
  expect(after.connected).toBe(after.free);
  expect(after.free).toBeLessThanOrEqual(CONCURRENCY);
  expect(upstream.openSockets()).toBe(after.free);
  // no timer left behind by timeouts, aborts or resets
  expect(after.timers).toBeLessThanOrEqual(before.timers + 2);
  // the heap does not grow with the request count: under 2 KB per request over this many requests
  expect(after.heap - before.heap).toBeLessThan(requests * 2048);
  // no session or token set from a failed request: the launch's session is the only one
  expect(await sessionCount()).toBe(sessionsBefore);
  expect(await tokenStore.get(context)).toBeDefined();
}, 120000);
