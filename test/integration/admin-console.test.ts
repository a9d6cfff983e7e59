/**
 * The operator console (/admin) over real sockets: operator sign-in (wrong token, anti-forgery on every state
 * change, the cookie's attributes, idle expiry, sign-out, the rate limit, pages redirecting and JSON answering 401),
 * the launch trace fed by the server's own log records (real launches against the sandbox EHR: a successful one and
 * a real invalid_grant), telling the same story as `smart-bff explain` on the same records, under LOG_LEVEL=warn
 * too, bounded, and never touched by the FHIR proxy; exports from the console against the sandbox's $export; and
 * with Redis, two instances sharing the trace and the operators' sessions.
 */
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { loadConfig, type Config } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import { createSandbox, startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { sandboxBackendRegistration } from '../../src/sandbox/backend-registration.js';
import { RedisConnection } from '../../src/session/redis-client.js';
import { createRedisSessionStore, RedisTokenStore, RedisTransactionStore } from '../../src/session/redis-store.js';
import { storiesFromRecords } from '../../src/launch-trace/story.js';
import { authorize } from '../helpers/authorize.js';
import { TEST_SESSION_SECRET, startBff } from '../helpers/bff.js';
import { Browser } from '../helpers/browser.js';
import { json } from '../helpers/json.js';
import { failedLaunch, successfulLaunch, SANDBOX_PATIENTS } from '../helpers/launches.js';
import { captureLogs, type CapturedLogs } from '../helpers/log-capture.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

const ADMIN = 'admin-token-0123456789-abcdefghij';
const CSRF = { 'x-csrf': '1', 'content-type': 'application/json' };

interface Console {
  url: string;
  app: App;
  logs: CapturedLogs;
  sandbox: Sandbox;
  config: Config;
  tokens: string[];
  close(): Promise<void>;
}

/** The BFF with its sandbox EHR on one origin (as `npm start` serves it), ADMIN_TOKEN set, and a backend registration for the sandbox. */
async function startConsole(env: Record<string, string> = {}, opts: { level?: 'warn' | 'info'; redis?: RedisConnection } = {}): Promise<Console> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const sandbox = await createSandbox({
    baseUrl: `${url}/sandbox`,
    clients: [{ client_id: 'smart-bff-dev', token_endpoint_auth_method: 'none', redirect_uris: [`${url}/callback`], launch_uri: `${url}/launch` }],
    bulkExport: { delayMs: 300 },
  });
  const tokens: string[] = [];
  sandbox.events.on('token-response', (e: Record<string, unknown>) => {
    for (const k of ['access_token', 'refresh_token', 'id_token']) if (typeof e[k] === 'string') tokens.push(e[k] as string);
  });
  let config = await loadConfig({
    NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'smart-bff-dev',
    ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', ADMIN_TOKEN: ADMIN, BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'admin-console-')), ...env,
  });
  config = Object.freeze({ ...config, backend: Object.freeze({ ...config.backend, registrations: Object.freeze([await sandboxBackendRegistration(sandbox)]) }) });
  const logs = captureLogs(opts.level ?? 'info');
  const client = opts.redis?.client;
  const app = createApp({
    config, logger: logs.logger, sandbox,
    ...(client ? { redis: opts.redis!, sessionStore: createRedisSessionStore(client, 600), tokenStore: new RedisTokenStore(client), transactionStore: new RedisTransactionStore(client) } : {}),
  });
  server.on('request', app);
  return {
    url, app, logs, sandbox, config, tokens,
    close: async () => {
      await app.locals.exportJobs?.stopAll();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

async function signIn(url: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${url}/admin/api/sign-in`, { method: 'POST', headers: { ...CSRF, ...headers }, body: JSON.stringify({ token: ADMIN }) });
  expect(res.status).toBe(200);
  return res.headers.getSetCookie()[0]!.split(';')[0]!;
}

/** Polls until `check` passes (the trace's writes to Redis are not awaited by the request that logs them). */
async function eventually(check: () => Promise<void>, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const get = (url: string, cookie?: string, headers: Record<string, string> = {}) => fetch(url, { headers: { ...(cookie ? { cookie } : {}), ...headers }, redirect: 'manual' });

describe('without ADMIN_TOKEN', () => {
  test('the whole /admin area is off: 404, pages and JSON alike', async () => {
    const bff = await startBff({ SMART_ISS: 'https://ehr.example/fhir', SMART_CLIENT_ID: 'c' });
    try {
      for (const path of ['/admin', '/admin/sign-in', '/admin/launches', '/admin/exports', '/admin/api/launches', '/admin/api/exports']) {
        expect([path, (await get(`${bff.url}${path}`)).status]).toEqual([path, 404]);
      }
      expect((await fetch(`${bff.url}/admin/api/sign-in`, { method: 'POST', headers: CSRF, body: JSON.stringify({ token: ADMIN }) })).status).toBe(404);
    } finally {
      await bff.close();
    }
  });
});

describe('operator sign-in', () => {
  let c: Console;
  beforeAll(async () => {
    c = await startConsole();
  }, 60000);
  afterAll(() => c?.close());

  test('pages without a sign-in redirect to the sign-in page; JSON endpoints answer 401 JSON', async () => {
    for (const path of ['/admin', '/admin/launches', '/admin/launches?failed=1', '/admin/exports', '/admin/exports/AAAAAAAAAAAAAAAA/files/Patient-1.ndjson']) {
      let res = await get(`${c.url}${path}`);
      if (path === '/admin') res = await get(`${c.url}${res.headers.get('location')}`);
      expect([path, res.status]).toEqual([path, 303]);
      const to = new URL(res.headers.get('location')!, c.url);
      expect(to.pathname).toBe('/admin/sign-in');
      expect(to.searchParams.get('next')).toBe(path === '/admin' ? '/admin/launches' : path);
    }
    for (const [method, path] of [['GET', '/admin/api/launches'], ['GET', '/admin/api/exports'], ['POST', '/admin/api/exports'], ['DELETE', '/admin/api/exports/AAAAAAAAAAAAAAAA']] as const) {
      const res = await fetch(`${c.url}${path}`, { method, headers: { ...CSRF, accept: 'text/html' }, redirect: 'manual', ...(method === 'POST' ? { body: '{}' } : {}) });
      expect([path, res.status, res.headers.get('content-type')]).toEqual([path, 401, expect.stringContaining('application/json')]);
      expect(await json(res)).toMatchObject({ error: 'not_authenticated' });
    }
    // the sign-in page itself: a form for the token, never the token
    const page = await get(`${c.url}/admin/sign-in?next=%2Fadmin%2Fexports`);
    const html = await page.text();
    expect(page.status).toBe(200);
    expect(html).toContain('id="sign-in-form"');
    expect(html).toContain('data-next="/admin/exports"');
    expect(html).not.toContain(ADMIN);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'self';/);
  });

  test('a wrong token is refused: 401 JSON, no cookie', async () => {
    const res = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: CSRF, body: JSON.stringify({ token: `${ADMIN}x` }) });
    expect(res.status).toBe(401);
    expect(res.headers.getSetCookie()).toEqual([]);
    expect(await json(res)).toMatchObject({ error: 'not_authenticated', message: expect.stringContaining('not the operator token') });
    expect(c.logs.find('admin.sign_in').at(-1)).toMatchObject({ outcome: 'refused' });
    expect(c.logs.text()).not.toContain(ADMIN);
  });

  test('a cross-site sign-in is refused: a form post (no X-CSRF), another Origin, Sec-Fetch-Site cross-site', async () => {
    const form = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${ADMIN}` });
    expect([form.status, (await json(form)).error, form.headers.getSetCookie()]).toEqual([401, 'csrf_header_required', []]);
    const origin = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: { ...CSRF, origin: 'https://evil.example' }, body: JSON.stringify({ token: ADMIN }) });
    expect([origin.status, (await json(origin)).error, origin.headers.getSetCookie()]).toEqual([403, 'cross_site_request', []]);
    const site = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: { ...CSRF, 'sec-fetch-site': 'cross-site' }, body: JSON.stringify({ token: ADMIN }) });
    expect([site.status, (await json(site)).error, site.headers.getSetCookie()]).toEqual([403, 'cross_site_request', []]);
    // the console's own script: same origin
    const own = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: { ...CSRF, origin: c.url, 'sec-fetch-site': 'same-origin' }, body: JSON.stringify({ token: ADMIN }) });
    expect(own.status).toBe(200);
  });

  test('the cookie: the server\'s own (not the token, not the clinicians\' session), HttpOnly, SameSite=Strict, Path=/, no Domain, ends with the browser', async () => {
    const res = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: CSRF, body: JSON.stringify({ token: ADMIN, next: '/admin/exports' }) });
    expect(await json(res)).toEqual({ ok: true, next: '/admin/exports' });
    const [cookie, ...more] = res.headers.getSetCookie();
    expect(more).toEqual([]);
    const [pair, ...attrs] = cookie!.split(';').map((s) => s.trim());
    const [name, value] = pair!.split('=');
    expect(name).toBe('smart-bff.admin');
    expect(value).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(value).not.toContain(ADMIN);
    expect(attrs.sort()).toEqual(['HttpOnly', 'Path=/', 'SameSite=Strict']);
    // pages and JSON with it; the token appears nowhere
    for (const path of ['/admin/launches', '/admin/exports', '/admin/api/launches', '/admin/api/exports']) {
      const page = await get(`${c.url}${path}`, `${name}=${value}`);
      expect([path, page.status]).toEqual([path, 200]);
      expect(await page.text()).not.toContain(ADMIN);
    }
    // `next` never leaves the console
    for (const next of ['https://evil.example/', '//evil.example/admin', '/admin/../x', '/admin/./launches', '/admin//evil.example', '/\\evil.example', '/admin/sign-in', '/adminx']) {
      const r = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: CSRF, body: JSON.stringify({ token: ADMIN, next }) });
      expect([next, (await json(r)).next]).toEqual([next, '/admin/launches']);
    }
  });

  test('on https: __Host-smart-bff-admin, Secure', async () => {
    const bff = await startBff({ SMART_ISS: 'https://ehr.example/fhir', SMART_CLIENT_ID: 'c', ADMIN_TOKEN: ADMIN, PUBLIC_URL: 'https://console.example', TRUST_PROXY: '1', BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'admin-https-')) });
    try {
      const res = await fetch(`${bff.url}/admin/api/sign-in`, { method: 'POST', headers: { ...CSRF, 'x-forwarded-proto': 'https', origin: 'https://console.example' }, body: JSON.stringify({ token: ADMIN }) });
      expect(res.status).toBe(200);
      const [pair, ...attrs] = res.headers.getSetCookie()[0]!.split(';').map((s) => s.trim());
      expect(pair).toMatch(/^__Host-smart-bff-admin=[A-Za-z0-9_-]{43}$/);
      expect(attrs.sort()).toEqual(['HttpOnly', 'Path=/', 'SameSite=Strict', 'Secure']);
      // the origin check follows PUBLIC_URL: the http origin the test reaches is another origin
      const other = await fetch(`${bff.url}/admin/api/sign-in`, { method: 'POST', headers: { ...CSRF, origin: bff.url }, body: JSON.stringify({ token: ADMIN }) });
      expect(other.status).toBe(403);
    } finally {
      await bff.close();
    }
  });

  test('state changes need X-CSRF: 1 with a signed-in cookie too: starting and cancelling an export, signing out', async () => {
    const cookie = await signIn(c.url);
    const start = await fetch(`${c.url}/admin/api/exports`, { method: 'POST', headers: { cookie, 'content-type': 'application/json' }, body: JSON.stringify({ registration: 'sandbox', level: 'system' }) });
    expect([start.status, (await json(start)).error]).toEqual([401, 'csrf_header_required']);
    const evil = await fetch(`${c.url}/admin/api/exports`, { method: 'POST', headers: { cookie, ...CSRF, origin: 'https://evil.example' }, body: JSON.stringify({ registration: 'sandbox', level: 'system' }) });
    expect(evil.status).toBe(403);
    expect((await json(await get(`${c.url}/admin/api/exports`, cookie))).jobs).toEqual([]);

    const ok = await fetch(`${c.url}/admin/api/exports`, { method: 'POST', headers: { cookie, ...CSRF }, body: JSON.stringify({ registration: 'sandbox', level: 'system' }) });
    expect(ok.status).toBe(202);
    const { id } = await json(ok);
    expect((await fetch(`${c.url}/admin/api/exports/${id}`, { method: 'DELETE', headers: { cookie } })).status).toBe(401);
    const cancel = await fetch(`${c.url}/admin/api/exports/${id}`, { method: 'DELETE', headers: { cookie, ...CSRF } });
    expect([cancel.status, (await json(cancel)).status]).toEqual([200, 'cancelled']);

    const signOut = await fetch(`${c.url}/admin/api/sign-out`, { method: 'POST', headers: { cookie } });
    expect(signOut.status).toBe(401);
    expect((await get(`${c.url}/admin/api/exports`, cookie)).status).toBe(200); // still signed in
  });

  test('every sign-in is a new session, and the one the browser had before is ended (no fixation)', async () => {
    const first = await signIn(c.url);
    const res = await fetch(`${c.url}/admin/api/sign-in`, { method: 'POST', headers: { ...CSRF, cookie: first }, body: JSON.stringify({ token: ADMIN }) });
    const second = res.headers.getSetCookie()[0]!.split(';')[0]!;
    expect(second).not.toBe(first);
    expect((await get(`${c.url}/admin/api/exports`, second)).status).toBe(200);
    expect((await get(`${c.url}/admin/api/exports`, first)).status).toBe(401);
    // a value the server never issued is never adopted
    expect((await get(`${c.url}/admin/api/exports`, 'smart-bff.admin=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA')).status).toBe(401);
  });

  test('sign-out ends the session on the server: the old cookie no longer works', async () => {
    const cookie = await signIn(c.url);
    const res = await fetch(`${c.url}/admin/api/sign-out`, { method: 'POST', headers: { cookie, ...CSRF } });
    expect([res.status, await json(res)]).toEqual([200, { ok: true, next: '/admin/sign-in' }]);
    expect(res.headers.getSetCookie()[0]).toMatch(/^smart-bff\.admin=; .*Expires=Thu, 01 Jan 1970/);
    expect((await get(`${c.url}/admin/api/exports`, cookie)).status).toBe(401);
    expect((await get(`${c.url}/admin/launches`, cookie)).status).toBe(303);
  });

  test('the console cannot be framed, whatever the app\'s own framing settings', async () => {
    const embedded = await startBff({ SMART_ISS: 'https://ehr.example/fhir', SMART_CLIENT_ID: 'c', ADMIN_TOKEN: ADMIN, FRAME_ANCESTORS: 'https://ehr.example', BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'admin-frame-')) });
    try {
      expect((await get(`${embedded.url}/`)).headers.get('content-security-policy')).toContain('frame-ancestors https://ehr.example');
      const page = await get(`${embedded.url}/admin/sign-in`);
      expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      expect(page.headers.get('x-frame-options')).toBe('DENY');
    } finally {
      await embedded.close();
    }
  });

  test('exports: bad requests are refused with a reason; a key is never accepted', async () => {
    const cookie = await signIn(c.url);
    const post = (body: unknown) => fetch(`${c.url}/admin/api/exports`, { method: 'POST', headers: { cookie, ...CSRF }, body: JSON.stringify(body) });
    for (const [body, message] of [
      [{ registration: 'sandbox', level: 'group' }, 'needs groupId'],
      [{ registration: 'nope', level: 'system' }, 'No backend registration is named "nope"'],
      [{ registration: 'sandbox', level: 'system', types: ['Patient;drop'] }, 'Invalid export request: types.0'],
      [{ registration: 'sandbox', level: 'system', since: 'yesterday' }, 'Invalid export request: since'],
      [{ registration: 'sandbox', level: 'system', privateKey: '-----BEGIN PRIVATE KEY-----' }, 'Keys and secrets are never accepted'],
    ] as const) {
      const res = await post(body);
      expect([res.status, (await json(res)).message]).toEqual([400, expect.stringContaining(message)]);
    }
  });
});

describe('operator sessions end when idle', () => {
  test('ADMIN_SESSION_IDLE_MINUTES: a sign-in unused for longer is over (page → sign-in, JSON → 401), and its cookie cleared', async () => {
    const bff = await startBff({ SMART_ISS: 'https://ehr.example/fhir', SMART_CLIENT_ID: 'c', ADMIN_TOKEN: ADMIN, ADMIN_SESSION_IDLE_MINUTES: '0.01', BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'admin-idle-')) });
    try {
      const cookie = await signIn(bff.url);
      expect((await get(`${bff.url}/admin/api/launches`, cookie)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 1500)); // idle: 0.6 s
      const res = await get(`${bff.url}/admin/api/launches`, cookie);
      expect(res.status).toBe(401);
      expect(res.headers.getSetCookie()[0]).toMatch(/^smart-bff\.admin=; /);
      expect((await get(`${bff.url}/admin/launches`, cookie)).headers.get('location')).toBe('/admin/sign-in?next=%2Fadmin%2Flaunches');
    } finally {
      await bff.close();
    }
  });

  test('failed sign-ins are limited per address: after 10, even the right token waits', async () => {
    const bff = await startBff({ SMART_ISS: 'https://ehr.example/fhir', SMART_CLIENT_ID: 'c', ADMIN_TOKEN: ADMIN, BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'admin-rl-')) });
    try {
      const attempt = (token: string) => fetch(`${bff.url}/admin/api/sign-in`, { method: 'POST', headers: CSRF, body: JSON.stringify({ token }) });
      expect((await attempt(ADMIN)).status).toBe(200); // successes do not count
      for (let i = 0; i < 10; i++) expect((await attempt(`wrong-${i}`)).status).toBe(401);
      const blocked = await attempt(ADMIN);
      expect([blocked.status, (await json(blocked)).error]).toEqual([429, 'rate_limited']);
    } finally {
      await bff.close();
    }
  });
});

describe('the launch trace', () => {
  let c: Console;
  let cookie: string;
  let ok: Awaited<ReturnType<typeof successfulLaunch>>;
  let bad: Awaited<ReturnType<typeof failedLaunch>>;
  beforeAll(async () => {
    c = await startConsole();
    ok = await successfulLaunch(c.url);
    bad = await failedLaunch(c.url);
    expect((await fetch(`${c.url}/launch?iss=${encodeURIComponent('https://ehr.example/<img src=x onerror=alert(1)>')}&launch=x`)).status).toBe(400);
    cookie = await signIn(c.url);
  }, 60000);
  afterAll(() => c?.close());

  test('the page tells the story explain tells from the same log: the same launches, steps, outcomes and diagnoses', async () => {
    const fromPage = (await json(await get(`${c.url}/admin/api/launches`, cookie))).launches;
    const fromLog = storiesFromRecords(c.logs.entries());
    expect(fromPage).toEqual(JSON.parse(JSON.stringify(fromLog)));
    expect(fromPage.map((s: { outcome: string }) => s.outcome)).toEqual(['failed', 'failed', 'complete']);
    const invalidGrant = fromPage.find((s: { diagnosis: { error: string } | null }) => s.diagnosis?.error === 'invalid_grant');
    expect(invalidGrant.requestIds).toContain(bad.callbackRequestId);
    expect(invalidGrant.steps.map((s: { event: string }) => s.event)).toEqual(['launch.start', 'authorize.redirect', 'callback.received', 'callback.state', 'token.request', 'token.response', 'error.response']);
    expect(fromPage[2].requestIds).toContain(ok.callbackRequestId);
  });

  test('/admin/launches: failed first with the diagnosis and the fix, everything escaped, no token anywhere; ?failed=1; a launch opens to its steps', async () => {
    const res = await get(`${c.url}/admin/launches`, cookie);
    const html = await res.text();
    expect(res.headers.get('cache-control')).toBe('no-store');
    const order = [...html.matchAll(/<details class="launch launch-(\w+)"/g)].map((m) => m[1]);
    expect(order).toEqual(['failed', 'failed', 'complete']);
    expect(html).toContain('What failed: The token endpoint refused the authorization code: invalid_grant');
    expect(html).toContain('<li>The code was already used, expired, or was issued for another client or redirect URI; start the launch again.</li>');
    expect(html).toContain('<strong>Fix:</strong> Check, in this order');
    expect(html).toContain('https://ehr.example/&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toContain('<img src=x');
    for (const secret of [...c.tokens, ...bad.stolenTokens!, ADMIN]) expect(html).not.toContain(secret);
    // only known fields: the log's fingerprints and hashes are in the log, not on the page
    for (const field of ['code_fp', 'verifier_fp', 'state_sha', 'code_challenge_sha', 'session_sha', 'contextId']) {
      expect(c.logs.text()).toContain(`"${field}"`);
      expect(html).not.toContain(field);
    }

    const failedOnly = await (await get(`${c.url}/admin/launches?failed=1`, cookie)).text();
    expect([...failedOnly.matchAll(/<details class="launch launch-(\w+)"/g)].map((m) => m[1])).toEqual(['failed', 'failed']);

    const id = (await json(await get(`${c.url}/admin/api/launches?failed=1`, cookie))).launches.find((s: { diagnosis: { error: string } | null }) => s.diagnosis?.error === 'invalid_grant').id;
    const one = await (await get(`${c.url}/admin/launches/${id}`, cookie)).text();
    expect(one).toContain(`Launch <code>${id}</code>`);
    expect(one).toMatch(/<dt>redirect_uri_matches_authorize<\/dt><dd>yes<\/dd>/);
    expect(one).toMatch(/<dt>error<\/dt><dd>invalid_grant<\/dd>/);
    expect(one).toContain(`smart-bff explain --launch ${id}`);
    for (const secret of [...c.tokens, ...bad.stolenTokens!]) expect(one).not.toContain(secret);
    const apiText = await (await get(`${c.url}/admin/api/launches`, cookie)).text();
    for (const field of ['code_fp', 'verifier_fp', 'state_sha', 'session_sha', 'contextId']) expect([field, one.includes(field), apiText.includes(field)]).toEqual([field, false, false]);
    expect((await get(`${c.url}/admin/launches/nope`, cookie)).status).toBe(404);
    expect((await get(`${c.url}/admin/launches/%3Cscript%3E`, cookie)).status).toBe(404);
  });

  test('the FHIR proxy never feeds the trace: its calls log as before, and not one of their lines reaches the trace\'s tap', async () => {
    const trace = c.app.locals.admin!.trace;
    const [seen, kept] = [trace.seen, trace.kept];
    const context = new URL(ok.location!, c.url).searchParams.get('context')!;
    for (let i = 0; i < 3; i++) {
      const res = await ok.browser.get(`${c.url}/fhir/Patient/${SANDBOX_PATIENTS[0]}`, { 'x-csrf': '1', 'x-smart-context': context });
      expect(res.status).toBe(200);
    }
    expect(c.logs.find('proxy.request').length).toBeGreaterThanOrEqual(3);
    expect([trace.seen, trace.kept]).toEqual([seen, kept]);
    // while a launch route's lines do reach it
    expect((await fetch(`${c.url}/login?iss=${encodeURIComponent('https://other.example/fhir')}`)).status).toBe(400);
    expect(trace.seen).toBeGreaterThan(seen);
  });
});

describe('the launch trace under LOG_LEVEL=warn, and bounded', () => {
  test('the trace still has the info-level steps of a launch, while the log keeps to warn', async () => {
    const c = await startConsole({ LOG_LEVEL: 'warn' }, { level: 'warn' });
    try {
      await successfulLaunch(c.url);
      expect(c.logs.find('launch.start')).toEqual([]);
      expect(c.logs.entries().every((e) => e.level !== 'info')).toBe(true);
      const cookie = await signIn(c.url);
      const [story] = (await json(await get(`${c.url}/admin/api/launches`, cookie))).launches;
      expect(story.outcome).toBe('complete');
      expect(story.steps.map((s: { event: string }) => s.event)).toEqual(['launch.start', 'discovery', 'authorize.redirect', 'callback.received', 'callback.state', 'token.request', 'token.response', 'launch.complete']);
      // a failure is a warn line: in the log and in the trace
      await failedLaunch(c.url);
      expect(c.logs.find('token.response').map((e) => e.error)).toEqual(['invalid_grant']);
    } finally {
      await c.close();
    }
  }, 60000);

  test('LAUNCH_TRACE_SIZE: the oldest launches go first', async () => {
    const c = await startConsole({ LAUNCH_TRACE_SIZE: '2' });
    try {
      await successfulLaunch(c.url, SANDBOX_PATIENTS[0]);
      await successfulLaunch(c.url, SANDBOX_PATIENTS[1]);
      await failedLaunch(c.url, SANDBOX_PATIENTS[2]);
      const cookie = await signIn(c.url);
      const launches = (await json(await get(`${c.url}/admin/api/launches`, cookie))).launches;
      const all = storiesFromRecords(c.logs.entries());
      expect(all).toHaveLength(3);
      const newest = [...all].sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, 2).map((s) => s.id);
      expect(launches.map((s: { id: string }) => s.id).sort()).toEqual(newest.sort());
      expect((await c.app.locals.admin!.trace.store.recent()).map((l) => l.key).sort()).toEqual(newest.sort()); // what memory holds
    } finally {
      await c.close();
    }
  }, 60000);

  test('a flood of requests refused before any launch existed never pushes a launch out: they have a ring of their own (a quarter of LAUNCH_TRACE_SIZE)', async () => {
    const c = await startConsole({ LAUNCH_TRACE_SIZE: '4' });
    try {
      const ok = await successfulLaunch(c.url, SANDBOX_PATIENTS[0]);
      await failedLaunch(c.url, SANDBOX_PATIENTS[1]);
      for (let i = 0; i < 12; i++) {
        const res = await fetch(`${c.url}/launch?iss=${encodeURIComponent(`https://flood${i}.example/fhir`)}&launch=x`);
        expect(res.status).toBe(400);
      }
      const cookie = await signIn(c.url);
      const { launches } = await json(await get(`${c.url}/admin/api/launches`, cookie));
      const refused = launches.filter((s: { id: string }) => s.id.startsWith('r.'));
      const real = launches.filter((s: { id: string }) => !s.id.startsWith('r.'));
      expect(real.map((s: { outcome: string }) => s.outcome).sort()).toEqual(['complete', 'failed']);
      expect(real.some((s: { requestIds: string[] }) => s.requestIds.includes(ok.callbackRequestId!))).toBe(true);
      // the newest refusal only (refusedTraceSize(4) = 1)
      expect(refused).toHaveLength(1);
      expect(JSON.stringify(refused[0])).toContain('flood11.example');
    } finally {
      await c.close();
    }
  }, 60000);

  test('a 404 under a launch route\'s prefix is no launch: it never reaches the trace', async () => {
    const c = await startConsole();
    try {
      const trace = c.app.locals.admin!.trace;
      for (const path of ['/launch/x', '/launch/continue/x', '/login/y', '/callback/z', '/launchx']) {
        expect([path, (await fetch(`${c.url}${path}?iss=https://ehr.example/fhir`)).status]).toEqual([path, 404]);
      }
      expect(c.logs.find('error.response').filter((e) => e.status === 404)).toHaveLength(5);
      expect([trace.seen, trace.kept]).toEqual([0, 0]);
      expect(await trace.store.recent()).toEqual([]);
    } finally {
      await c.close();
    }
  }, 60000);

  test('/launch/continue counts against LAUNCH_RATE_LIMIT with the other launch routes', async () => {
    const c = await startConsole({ LAUNCH_RATE_LIMIT: '3' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await fetch(`${c.url}/launch/continue?t=nothing`, { redirect: 'manual' })).status);
      expect(statuses.slice(0, 3).every((s) => s !== 429)).toBe(true);
      expect(statuses[3]).toBe(429);
      // and the same budget as /launch
      expect((await fetch(`${c.url}/launch?iss=x&launch=y`)).status).toBe(429);
    } finally {
      await c.close();
    }
  }, 60000);
});

const withRedis = redisAvailable() ? describe : describe.skip;

withRedis('with Redis: every instance sees the trace and the operators\' sessions', () => {
  let redis: TestRedis;
  let sandbox: Sandbox & { url: string };
  const apps: { url: string; close(): Promise<void>; conn: RedisConnection; app: App }[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    sandbox = await startSandbox({ clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }], redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/ });
    // two instances behind one PUBLIC_URL
    const server = http.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const publicUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (let i = 0; i < 2; i++) {
      const config = await loadConfig({
        NODE_ENV: 'test', PUBLIC_URL: publicUrl, SESSION_SECRET: TEST_SESSION_SECRET, SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', ALLOW_INSECURE_HTTP: '1',
        SANDBOX: 'off', ADMIN_TOKEN: ADMIN, REDIS_URL: redis.url, LAUNCH_TRACE_SIZE: '2', BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'admin-redis-')),
      });
      const conn = new RedisConnection(config.redis!, captureLogs('warn').logger);
      await conn.start();
      const s = i === 0 ? server : http.createServer();
      if (i === 1) await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      const app = createApp({ config, logger: captureLogs('info').logger, redis: conn, sessionStore: createRedisSessionStore(conn.client, 600), tokenStore: new RedisTokenStore(conn.client), transactionStore: new RedisTransactionStore(conn.client) });
      s.on('request', app);
      apps.push({
        url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, conn, app,
        close: async () => { s.closeAllConnections(); await new Promise<void>((r) => s.close(() => r())); await conn.close(); },
      });
    }
  }, 60000);

  afterAll(async () => {
    for (const a of apps) await a.close();
    await sandbox?.close();
    await redis?.stop();
  });

  /** /launch on the first instance, the callback on the second, as a router may send them. */
  async function launchAcross(patient: string): Promise<string> {
    const [a, b] = apps;
    const browser = new Browser();
    const start = await browser.get(`${a!.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient })}`);
    expect(start.status).toBe(302);
    const cb = new URL(await authorize(start.headers.get('location')!));
    const done = await fetch(`${b!.url}/callback${cb.search}`, { headers: { cookie: browser.cookieHeader(a!.url) }, redirect: 'manual' });
    expect(done.status).toBe(302);
    return done.headers.get('x-request-id')!;
  }

  test('a launch started on one instance and completed on the other is one story, on either instance; a sign-in on one works on the other', async () => {
    const callbackRequest = await launchAcross(SANDBOX_PATIENTS[0]!);
    const cookie = await signIn(apps[0]!.url);
    for (const a of apps) await eventually(async () => {
      const { launches } = await json(await get(`${a.url}/admin/api/launches`, cookie));
      expect(launches).toHaveLength(1);
      expect(launches[0]).toMatchObject({ outcome: 'complete', requestIds: expect.arrayContaining([callbackRequest]) });
      // the second instance discovers the EHR for itself at the callback
      expect(launches[0].steps.map((s: { event: string }) => s.event)).toEqual(['launch.start', 'discovery', 'authorize.redirect', 'callback.received', 'callback.state', 'discovery', 'token.request', 'token.response', 'launch.complete']);
    });
    // signed out on the second: over on the first too
    expect((await fetch(`${apps[1]!.url}/admin/api/sign-out`, { method: 'POST', headers: { cookie, ...CSRF } })).status).toBe(200);
    expect((await get(`${apps[0]!.url}/admin/api/launches`, cookie)).status).toBe(401);
  });

  test('bounded in Redis: a capped index, one list per launch, every key expiring', async () => {
    const callbacks: string[] = [];
    for (const p of SANDBOX_PATIENTS.slice(1, 4)) callbacks.push(await launchAcross(p));
    const client = apps[0]!.conn.client;
    let lists: string[] = [];
    await eventually(async () => {
      const index = await client.zRange('smart-bff:trace:index', 0, -1);
      expect(index).toHaveLength(2);
      lists = await client.keys('smart-bff:trace:launch:*');
      expect(lists.sort()).toEqual(index.map((k) => `smart-bff:trace:launch:${k}`).sort());
      // the two newest launches, each whole, and only the known fields of their records
      const raw = await Promise.all(lists.map((k) => client.lRange(k, 0, -1)));
      const kept = raw.map((l) => l.map((r) => JSON.parse(r) as { requestId?: string }));
      expect(kept.map((records) => callbacks.findIndex((c) => records.some((r) => r.requestId === c))).sort()).toEqual([1, 2]);
      for (const field of ['code_fp', 'verifier_fp', 'state_sha', 'session_sha', 'contextId', 'service']) expect([field, raw.flat().some((r) => r.includes(`"${field}"`))]).toEqual([field, false]);
    });
    for (const key of [...lists, 'smart-bff:trace:index']) {
      const ttl = await client.ttl(key);
      expect([key, ttl > 0 && ttl <= 24 * 3600]).toEqual([key, true]);
    }
    const cookie = await signIn(apps[1]!.url);
    expect((await json(await get(`${apps[1]!.url}/admin/api/launches`, cookie))).launches.map((l: { outcome: string }) => l.outcome)).toEqual(['complete', 'complete']);
  });

  test('a flood of refused requests on both instances never pushes a launch out of the shared trace: their own capped index', async () => {
    const client = apps[0]!.conn.client;
    const before = (await client.zRange('smart-bff:trace:index', 0, -1)).sort();
    expect(before).toHaveLength(2);
    for (let i = 0; i < 8; i++) {
      const res = await fetch(`${apps[i % 2]!.url}/callback?state=forged${i}&code=x`);
      expect(res.status).toBe(400);
    }
    await eventually(async () => {
      expect((await client.zRange('smart-bff:trace:index', 0, -1)).sort()).toEqual(before);
      const refused = await client.zRange('smart-bff:trace:refused-index', 0, -1);
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatch(/^r\./);
      const lists = (await client.keys('smart-bff:trace:launch:*')).sort();
      expect(lists).toEqual([...before, ...refused].map((k) => `smart-bff:trace:launch:${k}`).sort());
    });
    const ttl = await client.ttl('smart-bff:trace:refused-index');
    expect(ttl > 0 && ttl <= 24 * 3600).toBe(true);
    const cookie = await signIn(apps[0]!.url);
    const { launches } = await json(await get(`${apps[0]!.url}/admin/api/launches`, cookie));
    expect(launches.filter((l: { id: string }) => !l.id.startsWith('r.')).map((l: { outcome: string }) => l.outcome)).toEqual(['complete', 'complete']);
    expect(launches.filter((l: { id: string }) => l.id.startsWith('r.'))).toHaveLength(1);
  });
});
