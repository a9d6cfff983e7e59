/**
 * Property-based tests (fast-check) of the launch, callback and proxy inputs: random and hostile iss, launch,
 * state, code, error_description, paths and headers never produce a 5xx, an outbound request to an unlisted
 * host, a token sent outside its FHIR base, or a log line that is not a single JSON line free of secrets.
 */
import fc from 'fast-check';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { MemoryTokenStore } from '../../src/session/token-store.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';

let sandbox: Sandbox & { url: string };
let b: StartedBff;
let sentinel: http.Server;
let sentinelHits = 0;
let sentinelUrl: string;
let upstream: FaultUpstream;
let tokenStore: MemoryTokenStore;
const tokenRequests: unknown[] = [];
const secrets = new Set<string>();

const hostile = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ unit: 'binary', maxLength: 100 }),
  fc.constantFrom('\r\nX-Injected: 1', '<script>alert(1)</script>', '../../etc/passwd', '%00', '%0d%0a', 'http://169.254.169.254/latest', '\u2028\u2029', '"},{"level":"fatal"'),
  fc.webUrl({ withQueryParameters: true, withFragments: true }),
);

beforeAll(async () => {
  sandbox = await startSandbox({ clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }], redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/ });
  sandbox.events.on('token-request', (e) => tokenRequests.push(e));
  sandbox.events.on('token-response', (e: Record<string, unknown>) => { for (const k of ['access_token', 'refresh_token', 'id_token']) if (typeof e[k] === 'string') secrets.add(e[k] as string); });
  sentinel = http.createServer((_req, res) => { sentinelHits++; res.end('{}'); });
  await new Promise<void>((r) => sentinel.listen(0, '127.0.0.1', r));
  sentinelUrl = `http://127.0.0.1:${(sentinel.address() as AddressInfo).port}`;
  upstream = await startFaultUpstream('/fhir/r4');
  tokenStore = new MemoryTokenStore();
  b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', LAUNCH_RATE_LIMIT: '100000' }, { tokenStore });
});
afterAll(async () => {
  await b?.close();
  await upstream?.close();
  sentinel?.close();
  await sandbox?.close();
});

function assertLogsSafe(): void {
  for (const line of b.logs.lines) {
    expect(() => JSON.parse(line)).not.toThrow();
    expect(line).not.toMatch(/[\r\n]/);
    for (const s of secrets) expect(line.includes(s)).toBe(false);
  }
}

test('launch: random and hostile iss and launch never cause a 5xx or a request to an unlisted host', async () => {
  const fetchesBefore = b.app.locals.smart.discovery.fetchCount;
  await fc.assert(
    fc.asyncProperty(fc.oneof(hostile, fc.constant(sentinelUrl), fc.constant(`${sentinelUrl}/fhir`), fc.constant(`${sandbox.fhirBaseUrl}.evil`)), hostile, async (iss, launch) => {
      const res = await fetch(`${b.url}/launch?iss=${encodeURIComponent(iss)}&launch=${encodeURIComponent(launch)}`, { redirect: 'manual' });
      expect(res.status).toBeLessThan(500);
      await res.arrayBuffer();
    }),
    { numRuns: 150 },
  );
  expect(sentinelHits).toBe(0);
  expect(b.app.locals.smart.discovery.fetchCount).toBe(fetchesBefore);
  assertLogsSafe();
});

test('callback: random state, code, error and error_description never cause a 5xx or a token request', async () => {
  const browser = new Browser();
  await browser.get(`${b.url}/login`); // a session with a pending launch
  const before = tokenRequests.length;
  await fc.assert(
    fc.asyncProperty(fc.option(hostile), fc.option(hostile), fc.option(hostile), fc.option(hostile), async (state, code, error, description) => {
      const q = new URLSearchParams();
      if (state !== null) q.set('state', state);
      if (code !== null) q.set('code', code);
      if (error !== null) q.set('error', error);
      if (description !== null) q.set('error_description', description);
      const res = await browser.get(`${b.url}/callback?${q}`);
      expect(res.status).toBeLessThan(500);
      const body = await res.text();
      if (description) expect(body.includes('<script>alert(1)</script>')).toBe(false);
    }),
    { numRuns: 150 },
  );
  expect(tokenRequests.length).toBe(before);
  assertLogsSafe();
});

test('proxy: random paths and headers never cause a 5xx, and the token never leaves its FHIR base', async () => {
  const browser = new Browser();
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  const context = new URL(done.headers.get('location')!, b.url).searchParams.get('context')!;
  const tokens = (await tokenStore.get(context))!;
  await tokenStore.set(context, { ...tokens, fhirBaseUrl: upstream.base }, 3600);
  upstream.mode = { kind: 'echo' };
  const segment = fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('..', '.', '%2e%2e', '.%2e', '%2f', '%5c', '%00', '\\', 'https:', '//evil.com', '@evil.com', 'Patient', '$export', '%252e%252e'));
  const rawPath = fc.array(segment, { maxLength: 5 }).map((s) => `/${s.map((x) => x.replace(/[\s#?]/g, '')).join('/')}`);
  const headerValue = fc.string({ maxLength: 50 }).map((v) => v.replace(/[^\x20-\x7e]/g, ''));
  await fc.assert(
    fc.asyncProperty(rawPath, fc.string({ maxLength: 30 }).map((q) => encodeURIComponent(q)), headerValue, headerValue, async (path, query, h1, h2) => {
      const res = await new Promise<{ status: number }>((resolve, reject) => {
        const u = new URL(b.url);
        const req = http.request({
          host: u.hostname, port: u.port, method: 'GET', path: `/fhir${path}?q=${query}`,
          headers: { 'X-CSRF': '1', 'X-SMART-Context': context, cookie: browser.cookieHeader(b.url), 'x-forwarded-host': h1 || 'evil.example', prefer: h2 || 'x', authorization: 'Bearer browser' },
        }, (r) => { r.resume(); r.on('end', () => resolve({ status: r.statusCode! })); });
        req.on('error', reject);
        req.end();
      });
      expect(res.status).toBeLessThan(500);
    }),
    { numRuns: 200 },
  );
  expect(upstream.received.length).toBeGreaterThan(10); // many random paths were valid and went upstream
  for (const r of upstream.received) {
    const p = new URL(r.url, 'http://x').pathname;
    expect(p === '/fhir/r4' || p.startsWith('/fhir/r4/')).toBe(true);
    expect(r.headers.authorization).toBe(`Bearer ${tokens.accessToken}`);
    expect(r.headers['x-forwarded-host']).toBeUndefined();
  }
  assertLogsSafe();
}, 60000);

test('500 concurrent launches: one discovery fetch, 500 distinct states, and callbacks each matching their own', async () => {
  const fresh = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', LAUNCH_RATE_LIMIT: '100000' });
  try {
    const browsers = Array.from({ length: 500 }, () => new Browser());
    const starts = await Promise.all(browsers.map((br) => br.get(`${fresh.url}/login`)));
    expect(starts.every((r) => r.status === 302)).toBe(true);
    expect(fresh.app.locals.smart.discovery.fetchCount).toBe(1);
    const states = starts.map((r) => new URL(r.headers.get('location')!).searchParams.get('state'));
    expect(new Set(states).size).toBe(500);
    const sample = [0, 99, 250, 499];
    for (const i of sample) {
      const res = await browsers[i]!.get(await authorize(starts[i]!.headers.get('location')!));
      expect(res.status).toBe(302);
      expect((await browsers[i]!.get(`${fresh.url}/api/session`, { 'X-CSRF': '1' })).status).toBe(200);
    }
  } finally {
    await fresh.close();
  }
}, 60000);
