/**
 * Hostile inputs from an audit of the running server (shared/SECURITY-CHECKLIST.md, section H), each against the
 * real app over real sockets with the sandbox's authorization server: prototype keys in maps keyed by user input
 * (#42), errors that are not the session store's (#43), route matching against the JSON and anti-forgery checks
 * (#46); and the missing TRUST_PROXY behind a TLS-terminating router (#24).
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { json } from '../helpers/json.js';
import { rawHttp } from '../helpers/raw-http.js';
import { createClient } from 'redis';
import { createRedisSessionStore, RedisTransactionStore, type RedisClient } from '../../src/session/redis-store.js';
import { redisAvailable, startRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/revocations.js';

const CSRF = { 'X-CSRF': '1' };
const INHERITED = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__'];
let sandbox: Sandbox & { url: string };
const started: StartedBff[] = [];
const tokenRequests: unknown[] = [];
const fhirRequests: unknown[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  } as Parameters<typeof startSandbox>[0]);
  sandbox.events.on('token-request', (e) => tokenRequests.push(e));
  sandbox.events.on('fhir-request', (e) => fhirRequests.push(e));
});
afterAll(async () => {
  for (const b of started) await b.close();
  await sandbox?.close();
});

async function bff(env: Record<string, string> = {}): Promise<StartedBff> {
  const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', LAUNCH_RATE_LIMIT: '10000', ...env });
  started.push(b);
  return b;
}

async function signedIn(b: StartedBff): Promise<{ browser: Browser; context: string }> {
  const browser = new Browser();
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  return { browser, context: new URL(done.headers.get('location')!, b.url).searchParams.get('context')! };
}

describe('#42 maps keyed by user input ignore inherited keys', () => {
  let b: StartedBff;
  let user: { browser: Browser; context: string };
  beforeAll(async () => {
    b = await bff();
    user = await signedIn(b);
  });

  test.each(INHERITED)('#42 X-SMART-Context: %s with no session → 401 (/api/session JSON, /fhir OperationOutcome), never 500', async (key) => {
    const api = await fetch(`${b.url}/api/session`, { headers: { ...CSRF, 'X-SMART-Context': key } });
    expect(api.status).toBe(401);
    expect((await json(api)).error).toBe('context_unknown');
    const before = fhirRequests.length;
    const fhir = await fetch(`${b.url}/fhir/Patient/${sandbox.patients[0]!.id}`, { headers: { ...CSRF, 'X-SMART-Context': key } });
    expect(fhir.status).toBe(401);
    expect((await json(fhir)).issue[0].details.coding[0].code).toBe('context_unknown');
    expect(fhirRequests.length).toBe(before);
  });

  test.each(INHERITED)('#42 X-SMART-Context: %s in a signed-in session → 401 context_unknown, never another context', async (key) => {
    const api = await user.browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': key });
    expect(api.status).toBe(401);
    expect((await json(api)).error).toBe('context_unknown');
    const before = fhirRequests.length;
    const fhir = await user.browser.get(`${b.url}/fhir/Patient/${sandbox.patients[0]!.id}`, { ...CSRF, 'X-SMART-Context': key });
    expect(fhir.status).toBe(401);
    expect(fhirRequests.length).toBe(before);
    // the real context still works
    expect((await user.browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': user.context })).status).toBe(200);
  });

  test.each(INHERITED)('#42 /callback?state=%s → 400 state_unknown: no pending launch matches, no token request', async (key) => {
    const browser = new Browser();
    expect((await browser.get(`${b.url}/login`)).status).toBe(302); // a real pending launch in this browser
    const before = tokenRequests.length;
    const logged = b.logs.find('callback.state').length;
    const res = await browser.get(`${b.url}/callback?state=${encodeURIComponent(key)}&code=stolen`, { accept: 'application/json' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('state_unknown');
    expect(tokenRequests.length).toBe(before);
    expect(b.logs.find('callback.state').slice(logged)).toEqual([expect.objectContaining({ found: false })]);
  });

  test.each(INHERITED)('#42 an Oracle Health error_uri urn:cerner:error:%s is an unknown code, not a property of Object', async (key) => {
    const res = await fetch(`${b.url}/callback?error=invalid_request&error_uri=${encodeURIComponent(`urn:cerner:error:${key}`)}`, { headers: { accept: 'application/json' } });
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error).toBe('authorization_error');
    expect(JSON.stringify(body)).not.toMatch(/native code|\[object Object\]|function/);
  });

  test.each(INHERITED)('#42 /launch/continue?t=%s → the cookie page (400), not a match', async (key) => {
    const browser = new Browser();
    await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`, { 'sec-fetch-dest': 'iframe' });
    const res = await browser.get(`${b.url}/launch/continue?t=${encodeURIComponent(key)}`);
    expect(res.status).toBe(400);
    expect(res.headers.get('location')).toBeNull();
  });
});

describe('#43 only session-store failures become 503 session_store_unavailable', () => {
  const ADMIN = 'admin-token-0123456789-abcdefghij';
  const METRICS = 'metrics-token-0123456789';
  let b: StartedBff;
  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostile-'));
    const keyFile = join(dir, 'backend.pem');
    writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), { mode: 0o600 });
    b = await bff({
      SMART_BACKEND_ISS: sandbox.fhirBaseUrl, SMART_BACKEND_CLIENT_ID: 'backend-app', SMART_BACKEND_KEY_FILE: keyFile, ADMIN_TOKEN: ADMIN,
      BULK_DATA_DIR: join(dir, 'bulk'), METRICS_TOKEN: METRICS,
    });
  });

  async function metrics(): Promise<string> {
    return (await fetch(`${b.url}/metrics`, { headers: { authorization: `Bearer ${METRICS}` } })).text();
  }

  test('#43 GET * HTTP/1.1 → 400, not a store outage', async () => {
    const res = await rawHttp(b.url, `GET * HTTP/1.1\r\nHost: ${new URL(b.url).host}\r\nAccept: application/json\r\n\r\n`);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error).toBe('bad_request');
  });

  test('#43 an absolute-form request target is served as its path (RFC 9112 §3.2.2)', async () => {
    const res = await rawHttp(b.url, `GET http://${new URL(b.url).host}/healthz HTTP/1.1\r\nHost: ${new URL(b.url).host}\r\n\r\n`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ status: 'ok' });
  });

  test('#43 malformed JSON on POST /api/bulk-data/exports → 400', async () => {
    const res = await fetch(`${b.url}/api/bulk-data/exports`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: '{"registration": ' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('bad_request');
  });

  test('#43 an oversized body on POST /api/bulk-data/exports → 413', async () => {
    const res = await fetch(`${b.url}/api/bulk-data/exports`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ outputFormat: 'x'.repeat(64 * 1024) }) });
    expect(res.status).toBe(413);
    expect((await json(res)).error).toBe('payload_too_large');
  });

  test('#43 each is counted as what it is: no session store error, error responses by code', async () => {
    const text = await metrics();
    expect(text).toMatch(/^smart_bff_session_store_errors_total 0$/m);
    expect(text).toMatch(/^smart_bff_error_responses_total\{status="400",code="bad_request"\} 2$/m);
    expect(text).toMatch(/^smart_bff_error_responses_total\{status="413",code="payload_too_large"\} 1$/m);
  });
});

/** A BFF whose sessions and pending launches are in the Redis at `url` (no offline queue: a command to a Redis that is gone fails at once), with /metrics. */
async function bffOnRedis(url: string): Promise<{ b: StartedBff; client: RedisClient; metrics: () => Promise<string> }> {
  const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: () => 200 } }) as unknown as RedisClient;
  client.on('error', () => undefined);
  await client.connect();
  const METRICS = 'metrics-token-0123456789';
  const b = await startBff(
    { SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', METRICS_TOKEN: METRICS },
    { sessionStore: createRedisSessionStore(client, 600), transactionStore: new RedisTransactionStore(client) },
  );
  started.push(b);
  return { b, client, metrics: async () => (await fetch(`${b.url}/metrics`, { headers: { authorization: `Bearer ${METRICS}` } })).text() };
}

(redisAvailable() ? describe : describe.skip)('#43 a real store failure is still a store failure', () => {
  test('#43 Redis stopped: 503 session_store_unavailable from the session and pending-launch stores, each counted as a store error', async () => {
    const redis = await startRedis();
    const { b, client, metrics } = await bffOnRedis(redis.url);
    try {
      const { browser } = await signedIn(b);
      expect((await browser.get(`${b.url}/api/session`, CSRF)).status).toBe(200);
      await redis.stop();
      const session = await browser.get(`${b.url}/api/session`, CSRF);
      expect(session.status).toBe(503);
      expect((await json(session)).error).toBe('session_store_unavailable');
      const login = await fetch(`${b.url}/login`, { headers: { accept: 'application/json' }, redirect: 'manual' });
      expect(login.status).toBe(503);
      expect((await json(login)).error).toBe('session_store_unavailable');
      const text = await metrics();
      expect(text).toMatch(/^smart_bff_session_store_errors_total 2$/m);
      expect(text).toMatch(/^smart_bff_error_responses_total\{status="503",code="session_store_unavailable"\} 2$/m);
    } finally {
      await client.disconnect().catch(() => undefined);
      await redis.stop();
    }
  });
});

(redisAvailable() ? describe : describe.skip)('#43 a store failure after the response is not an error response', () => {
  test('#43 Redis refusing the session touch at the end of a request (an ACL without EXPIRE): the 200 stands, no error response, no refused request; counted and logged as after the response', async () => {
    const redis = await startRedis();
    const admin = createClient({ url: redis.url });
    await admin.connect();
    // every command but EXPIRE, which connect-redis's touch sends once the response is written
    await admin.sendCommand(['ACL', 'SETUSER', 'app', 'on', '>app-password', '~*', '&*', '+@all', '-expire']);
    const url = new URL(redis.url);
    url.username = 'app';
    url.password = 'app-password';
    const { b, client, metrics } = await bffOnRedis(url.href);
    try {
      const { browser } = await signedIn(b);
      const session = await browser.get(`${b.url}/api/session`, CSRF);
      expect(session.status).toBe(200);
      expect((await json(session)).contexts).toBeDefined();
      await waitFor(() => b.logs.find('error.after_response').length > 0, 'the touch after the response to fail');
      const late = b.logs.find('error.after_response');
      expect(late).toEqual([expect.objectContaining({ level: 'warn', code: 'session_store_unavailable', method: 'GET', path: '/api/session' })]);
      expect(b.logs.find('error.response')).toEqual([]);
      const text = await metrics();
      expect(text).toMatch(/^smart_bff_errors_after_response_total\{code="session_store_unavailable"\} 1$/m);
      expect(text).toMatch(/^smart_bff_session_store_errors_total 0$/m);
      expect(text).not.toMatch(/^smart_bff_error_responses_total\{/m);
      expect(text).toMatch(/^smart_bff_launches_total\{outcome="success"\} 1$/m);
      expect(text).not.toMatch(/^smart_bff_launches_total\{outcome="session_store_unavailable"\}/m);
    } finally {
      await client.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      await redis.stop();
    }
  });
});

describe('#46 the anti-forgery and JSON checks match the same paths as the router', () => {
  let b: StartedBff;
  let user: { browser: Browser; context: string };
  beforeAll(async () => {
    b = await bff();
    user = await signedIn(b);
  });

  /** A page navigation's Accept: the answer must not depend on it. */
  const PAGE = { accept: 'text/html,application/xhtml+xml' };

  async function both(method: string, path: string) {
    const send = async (headers: Record<string, string>) => {
      const res = await rawHttp(b.url, [`${method} ${path} HTTP/1.1`, `Host: ${new URL(b.url).host}`, `Cookie: ${user.browser.cookieHeader(b.url)}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), 'Content-Length: 0', '', ''].join('\r\n'));
      return { status: res.status, json: /json/.test(res.headers['content-type'] ?? ''), body: res.body };
    };
    const without = await send(PAGE);
    const withHeader = await send({ ...PAGE, ...CSRF });
    return { without, withHeader };
  }

  function expectConsistent(path: string, r: Awaited<ReturnType<typeof both>>): void {
    // never reachable without the header; a refusal for the missing header is JSON, never a page
    expect({ path, status: r.without.status }).not.toEqual({ path, status: 200 });
    if (r.without.status === 401) expect({ path, json: r.without.json, body: JSON.parse(r.without.body).error }).toEqual({ path, json: true, body: 'csrf_header_required' });
    // whatever the header unlocks was refused without it
    if (r.withHeader.status < 400) expect({ path, status: r.without.status }).toEqual({ path, status: 401 });
  }

  test.each([
    '/api/session', '/api/session/', '/API/SESSION', '/Api/session', '/api/Session', '/%61pi/session', '/api/%73ession', '/api//session',
    '/api/session?x=1', '/api', '/api/', '/API', '/api/session;x', '/api/./session',
  ])('#46 GET %s', async (path) => {
    const r = await both('GET', path);
    expectConsistent(path, r);
    if (r.withHeader.status === 200) expect(r.withHeader.json).toBe(true);
  });

  test('#46 routes are case-sensitive: /API/SESSION and POST /LOGOUT are not routes, with or without the header', async () => {
    expect((await both('GET', '/API/SESSION')).withHeader.status).toBe(404);
    expect((await both('POST', '/LOGOUT')).withHeader.status).toBe(404);
    expect((await user.browser.get(`${b.url}/api/session`, CSRF)).status).toBe(200);
  });

  test('#46 the exact route still answers with the header (sanity)', async () => {
    const r = await both('GET', '/api/session');
    expect([r.without.status, r.withHeader.status]).toEqual([401, 200]);
  });

  test.each(['/LOGOUT', '/Logout', '/%6cogout', '/logout/', '/logout'])('#46 POST %s without the header never ends the session', async (path) => {
    const r = await rawHttp(b.url, [`POST ${path} HTTP/1.1`, `Host: ${new URL(b.url).host}`, `Cookie: ${user.browser.cookieHeader(b.url)}`, `Accept: ${PAGE.accept}`, 'Content-Length: 0', '', ''].join('\r\n'));
    expect({ path, status: r.status }).not.toEqual({ path, status: 200 });
    if (r.status === 401) expect({ path, type: r.headers['content-type'] }).toEqual({ path, type: expect.stringMatching(/json/) });
    expect((await user.browser.get(`${b.url}/api/session`, CSRF)).status).toBe(200);
  });

  test.each(['/FHIR/Patient/1', '/Fhir/Patient/1', '/%66hir/Patient/1'])('#46 GET %s is not proxied, with or without the header', async (path) => {
    const before = fhirRequests.length;
    const r = await both('GET', path);
    expectConsistent(path, r);
    expect(r.withHeader.status).toBe(404);
    expect(fhirRequests.length).toBe(before);
  });
});

describe('#24 TRUST_PROXY missing behind a TLS-terminating router', () => {
  const forwarded = { 'x-forwarded-proto': 'https' };

  test('#24 the first request with X-Forwarded-Proto: https while trust proxy is off logs one warning naming TRUST_PROXY', async () => {
    const b = await bff({ PUBLIC_URL: 'https://app.example.org' });
    expect(b.logs.find('config.trust_proxy_missing')).toEqual([]);
    for (const path of ['/healthz', '/login', '/fhir/Patient/1', '/']) await fetch(`${b.url}${path}`, { headers: forwarded, redirect: 'manual' });
    const lines = b.logs.find('config.trust_proxy_missing');
    expect(lines).toHaveLength(1);
    expect(lines[0]!.level).toBe('warn');
    expect(String(lines[0]!.msg)).toMatch(/TRUST_PROXY/);
    expect(String(lines[0]!.msg)).toMatch(/Heroku.*App Engine.*1|TRUST_PROXY=1/);
    expect(String(lines[0]!.msg)).toMatch(/session_cookie_missing/);
  });

  test.each([
    ['TRUST_PROXY is set', { PUBLIC_URL: 'https://app.example.org', TRUST_PROXY: '1' }, forwarded],
    ['Heroku is detected', { PUBLIC_URL: 'https://app.example.org', DYNO: 'web.1' }, forwarded],
    ['no forwarded header', { PUBLIC_URL: 'https://app.example.org' }, {}],
    ['an http PUBLIC_URL', {}, forwarded],
  ])('#24 no warning when %s', async (_name, env, headers) => {
    const b = await bff(env as Record<string, string>);
    await fetch(`${b.url}/healthz`, { headers });
    await fetch(`${b.url}/login`, { headers, redirect: 'manual' });
    expect(b.logs.find('config.trust_proxy_missing')).toEqual([]);
  });
});
