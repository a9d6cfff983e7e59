/**
 * The SMART App Launch flow end to end over real sockets: the real BFF against the sandbox's real
 * authorization server (oidc-provider) and FHIR server.
 */
import http from 'node:http';
import { jest } from '@jest/globals';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import * as jose from 'jose';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { authorize } from '../helpers/authorize.js';
import { json } from '../helpers/json.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { parsePrivateKey } from '../../src/keys.js';
import { createMemorySessionStore } from '../../src/session/session-middleware.js';

const CSRF = { 'X-CSRF': '1' };
const CLIENT_SECRET = 'sandbox-client-secret-that-must-never-be-logged-7f3a';
const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
const PRIVATE_PEM = ecKey.export({ type: 'pkcs8', format: 'pem' }).toString();

type SandboxWithUrl = Sandbox & { url: string };
let sandbox: SandboxWithUrl;
const bffs: StartedBff[] = [];
const tokenRequests: Record<string, unknown>[] = [];
const tokenResponses: Record<string, unknown>[] = [];

let publicJwk: jose.JWK;

beforeAll(async () => {
  publicJwk = (await parsePrivateKey(PRIVATE_PEM, 'test-key-1')).publicJwk;
  sandbox = await startSandbox({
    clients: [
      { client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] },
      { client_id: 'symmetric-app', token_endpoint_auth_method: 'client_secret_basic', client_secret: CLIENT_SECRET, redirect_uris: [] },
      { client_id: 'asymmetric-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...publicJwk } as Record<string, unknown>] }, redirect_uris: [] },
    ],
    redirectUriPattern: /^http:\/\/(127\.0\.0\.1|localhost):\d+\/callback$/,
  } as Parameters<typeof startSandbox>[0]);
  sandbox.events.on('token-request', (e: Record<string, unknown>) => tokenRequests.push(e));
  sandbox.events.on('token-response', (e: Record<string, unknown>) => tokenResponses.push(e));
});

afterAll(async () => {
  for (const b of bffs) await b.close();
  await sandbox?.close();
});

async function bff(env: Record<string, string> = {}, opts: Parameters<typeof startBff>[1] = {}): Promise<StartedBff> {
  const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', ...env }, opts);
  bffs.push(b);
  return b;
}

/** EHR launch through to the app page; returns the context id and the session JSON. */
async function ehrLaunch(b: StartedBff, browser: Browser, patient = sandbox.patients[0]!.id) {
  const launch = sandbox.createLaunch({ patient });
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(launch)}`);
  expect(start.status).toBe(302);
  const authorizeUrl = start.headers.get('location')!;
  const callbackUrl = await authorize(authorizeUrl);
  const done = await browser.get(callbackUrl);
  return { launch, authorizeUrl, callbackUrl, done };
}

async function sessionJson(b: StartedBff, browser: Browser, context?: string) {
  const res = await browser.get(`${b.url}/api/session`, { ...CSRF, ...(context ? { 'X-SMART-Context': context } : {}) });
  return { status: res.status, body: (await json(res)) as Record<string, unknown> };
}

describe('EHR launch', () => {
  test('the authorize redirect carries exactly the SMART parameters', async () => {
    const b = await bff();
    const browser = new Browser();
    const launch = sandbox.createLaunch({ patient: sandbox.patients[0]!.id });
    const res = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(launch)}`);
    expect(res.status).toBe(302);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const u = new URL(res.headers.get('location')!);
    const p = Object.fromEntries(u.searchParams);
    expect(p).toMatchObject({
      response_type: 'code', client_id: 'public-app', redirect_uri: `${b.url}/callback`, launch, aud: sandbox.fhirBaseUrl,
      code_challenge_method: 'S256',
    });
    expect(p.scope!.split(' ')).toEqual(expect.arrayContaining(['launch', 'openid', 'fhirUser', 'patient/*.rs']));
    expect(p.state).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(p.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  test.each([
    ['public', {}],
    ['confidential symmetric', { SMART_CLIENT_ID: 'symmetric-app', SMART_CLIENT_SECRET: CLIENT_SECRET }],
    ['confidential asymmetric', { SMART_CLIENT_ID: 'asymmetric-app', SMART_PRIVATE_KEY: PRIVATE_PEM, SMART_KEY_ID: 'test-key-1' }],
  ])('%s client: launch ends on the app page with the patient in /api/session', async (_name, env) => {
    const b = await bff(env);
    const browser = new Browser();
    const patient = sandbox.patients[1]!.id;
    const { done } = await ehrLaunch(b, browser, patient);
    expect(done.status).toBe(302);
    const appUrl = new URL(done.headers.get('location')!, b.url);
    expect(appUrl.pathname).toBe('/app');
    const context = appUrl.searchParams.get('context')!;
    expect(context).toBeTruthy();
    const page = await browser.get(appUrl.href);
    expect(page.status).toBe(200);
    const { status, body } = await sessionJson(b, browser);
    expect(status).toBe(200);
    expect(body).toMatchObject({ context, patient, need_patient_banner: true, launch_mode: 'ehr' });
    expect(String(body.fhirUser)).toMatch(/Practitioner\//);
    expect(body.granted_scopes).toEqual(expect.stringContaining('patient/'));
    expect(body.requested_scopes).toEqual(expect.stringContaining('launch'));
    expect(typeof body.expires_at).toBe('string');
    expect(JSON.stringify(body)).not.toMatch(/access_token|refresh_token|id_token/);
  });

  test('the private_key_jwt assertion follows SMART exactly', async () => {
    const b = await bff({ SMART_CLIENT_ID: 'asymmetric-app', SMART_PRIVATE_KEY: PRIVATE_PEM, SMART_KEY_ID: 'test-key-1' });
    const before = tokenRequests.length;
    await ehrLaunch(b, new Browser());
    const req = tokenRequests.slice(before).find((r) => r.client_assertion)!;
    expect(req).toBeDefined();
    const assertion = String(req.client_assertion);
    const header = jose.decodeProtectedHeader(assertion);
    const claims = jose.decodeJwt(assertion);
    expect(header).toMatchObject({ alg: 'ES384', kid: 'test-key-1', typ: 'JWT' });
    const tokenEndpoint = (await json(await fetch(`${sandbox.fhirBaseUrl}/.well-known/smart-configuration`))).token_endpoint;
    expect(claims).toMatchObject({ iss: 'asymmetric-app', sub: 'asymmetric-app', aud: tokenEndpoint });
    expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(300);
    expect(typeof claims.jti).toBe('string');
  });
});

describe('standalone launch', () => {
  test.each([
    ['public', {}],
    ['confidential symmetric', { SMART_CLIENT_ID: 'symmetric-app', SMART_CLIENT_SECRET: CLIENT_SECRET }],
    ['confidential asymmetric', { SMART_CLIENT_ID: 'asymmetric-app', SMART_PRIVATE_KEY: PRIVATE_PEM, SMART_KEY_ID: 'test-key-1' }],
  ])('%s client: /login picks the patient at the authorization server', async (_name, env) => {
    const b = await bff(env);
    const browser = new Browser();
    const start = await browser.get(`${b.url}/login`);
    expect(start.status).toBe(302);
    const authorizeUrl = new URL(start.headers.get('location')!);
    expect(authorizeUrl.searchParams.get('scope')!.split(' ')).toContain('launch/patient');
    expect(authorizeUrl.searchParams.get('launch')).toBeNull();
    const patient = sandbox.patients[2]!.id;
    const done = await browser.get(await authorize(authorizeUrl.href, { patient }));
    expect(done.status).toBe(302);
    const { body } = await sessionJson(b, browser);
    expect(body).toMatchObject({ patient, launch_mode: 'standalone' });
  });
});

describe('two launches in one browser', () => {
  test('interleaved launches both complete and never cross', async () => {
    const b = await bff();
    const browser = new Browser();
    const [pa, pb] = [sandbox.patients[0]!.id, sandbox.patients[3]!.id];
    const startA = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: pa })}`);
    const startB = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: pb })}`);
    const cbA = await authorize(startA.headers.get('location')!);
    const cbB = await authorize(startB.headers.get('location')!);
    const doneB = await browser.get(cbB);
    const doneA = await browser.get(cbA);
    expect([doneA.status, doneB.status]).toEqual([302, 302]);
    const ctxA = new URL(doneA.headers.get('location')!, b.url).searchParams.get('context')!;
    const ctxB = new URL(doneB.headers.get('location')!, b.url).searchParams.get('context')!;
    expect(ctxA).not.toBe(ctxB);
    expect((await sessionJson(b, browser, ctxA)).body.patient).toBe(pa);
    expect((await sessionJson(b, browser, ctxB)).body.patient).toBe(pb);
    const ambiguous = await sessionJson(b, browser);
    expect(ambiguous.status).toBe(400);
    expect(ambiguous.body.error).toBe('context_required');
    expect((await sessionJson(b, browser, 'no-such-context')).status).toBe(401);
  });
});

describe('state handling', () => {
  test('missing state → 400 and no token request', async () => {
    const b = await bff();
    const before = tokenRequests.length;
    const res = await new Browser().get(`${b.url}/callback?code=abc`, { accept: 'application/json' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('state_missing');
    expect(tokenRequests.length).toBe(before);
  });

  test('unknown state → 400 and no token request', async () => {
    const b = await bff();
    const browser = new Browser();
    await browser.get(`${b.url}/login`); // a session with one pending transaction
    const before = tokenRequests.length;
    const res = await browser.get(`${b.url}/callback?code=abc&state=not-a-state`, { accept: 'application/json' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('state_unknown');
    expect(tokenRequests.length).toBe(before);
  });

  test('a state from another session → 400 and no token request', async () => {
    const b = await bff();
    const victim = new Browser();
    const attacker = new Browser();
    await attacker.get(`${b.url}/login`);
    const start = await victim.get(`${b.url}/login`);
    const callbackUrl = await authorize(start.headers.get('location')!, { patient: sandbox.patients[0]!.id });
    const before = tokenRequests.length;
    const res = await attacker.get(callbackUrl, { accept: 'application/json' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('state_unknown');
    expect(tokenRequests.length).toBe(before);
    // the victim can still finish
    expect((await victim.get(callbackUrl)).status).toBe(302);
  });

  test('a replayed callback lands on the first result and never sends the code twice', async () => {
    const b = await bff();
    const browser = new Browser();
    const before = tokenRequests.length;
    const { callbackUrl, done } = await ehrLaunch(b, browser);
    const first = done.headers.get('location');
    const again = await browser.get(callbackUrl);
    expect(again.status).toBe(302);
    expect(again.headers.get('location')).toBe(first);
    expect(tokenRequests.length - before).toBe(1);
  });

  test('a double-submitted callback (both in flight) exchanges the code once; both land on the app', async () => {
    const b = await bff();
    const browser = new Browser();
    const launch = sandbox.createLaunch({ patient: sandbox.patients[0]!.id });
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${launch}`);
    const callbackUrl = await authorize(start.headers.get('location')!);
    const before = tokenRequests.length;
    const cookie = browser.cookieHeader(b.url);
    const [r1, r2] = await Promise.all([
      fetch(callbackUrl, { headers: { cookie }, redirect: 'manual' }),
      fetch(callbackUrl, { headers: { cookie }, redirect: 'manual' }),
    ]);
    expect([r1.status, r2.status]).toEqual([302, 302]);
    expect(r1.headers.get('location')).toBe(r2.headers.get('location'));
    expect(tokenRequests.length - before).toBe(1);
    // the second response carries the new session cookie too, so whichever the browser keeps works
    for (const r of [r1, r2]) {
      const setCookie = r.headers.getSetCookie().find((c) => c.startsWith('smart-bff.sid='));
      expect(setCookie).toBeDefined();
      const res = await fetch(`${b.url}/api/session`, { headers: { cookie: setCookie!.split(';')[0]!, ...CSRF } });
      expect(res.status).toBe(200);
    }
  });

  test('the session id changes at login and the old one is no longer valid', async () => {
    const b = await bff();
    const browser = new Browser();
    // a launch in progress has no session (the session is created at the callback): sign in once, then launch again
    await ehrLaunch(b, browser, sandbox.patients[1]!.id);
    const launch = sandbox.createLaunch({ patient: sandbox.patients[0]!.id });
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${launch}`);
    const before = browser.cookies(b.url).get('smart-bff.sid');
    expect(before).toBeDefined();
    await browser.get(await authorize(start.headers.get('location')!));
    const after = browser.cookies(b.url).get('smart-bff.sid');
    expect(after).toBeDefined();
    expect(after).not.toBe(before);
    const old = await fetch(`${b.url}/api/session`, { headers: { cookie: `smart-bff.sid=${before}`, ...CSRF } });
    expect(old.status).toBe(401);
  });

  test('a first sign-in destroys nothing in the store (its session is new); a second one destroys the old session', async () => {
    const store = createMemorySessionStore();
    const destroyed: string[] = [];
    const destroy = store.destroy.bind(store);
    store.destroy = (sid, cb) => {
      destroyed.push(sid);
      destroy(sid, cb);
    };
    const b = await bff({}, { sessionStore: store });
    const browser = new Browser();
    // a cookie naming no stored session (expired, or planted) is no session either: express-session gives a new id
    browser.setCookie(b.url, 'smart-bff.sid', 's%3Aplanted-session-id.bm90LWEtc2lnbmF0dXJl');
    await ehrLaunch(b, browser);
    expect(destroyed).toEqual([]);
    const first = browser.cookies(b.url).get('smart-bff.sid')!;
    await ehrLaunch(b, browser, sandbox.patients[1]!.id);
    expect(destroyed).toEqual([decodeURIComponent(first).slice(2, decodeURIComponent(first).lastIndexOf('.'))]);
    expect((await sessionJson(b, browser)).status).toBe(400); // two contexts: one must be named
  });
});

describe('transactions expire', () => {
  test('a callback after LAUNCH_TTL_SECONDS → 400 state_expired and no token request', async () => {
    const b = await bff({ LAUNCH_TTL_SECONDS: '1' });
    const browser = new Browser();
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const cb = await authorize(start.headers.get('location')!);
    await new Promise((r) => setTimeout(r, 1200));
    const before = tokenRequests.length;
    const res = await browser.get(cb, { accept: 'application/json' });
    expect(res.status).toBe(400);
    expect((await json(res)).error).toBe('state_expired');
    expect(tokenRequests.length).toBe(before);
  });
});

describe('refusals', () => {
  test('an iss that is not on the allow-list is refused before any outbound request', async () => {
    let hits = 0;
    const evil = http.createServer((_req, res) => { hits++; res.end('{}'); });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/fhir`;
    try {
      const b = await bff();
      const fetchesBefore = b.app.locals.smart.discovery.fetchCount;
      for (const iss of [evilUrl, 'http://169.254.169.254/', `${sandbox.fhirBaseUrl}.evil.com`, `${sandbox.fhirBaseUrl}/../x`]) {
        const res = await new Browser().get(`${b.url}/launch?iss=${encodeURIComponent(iss)}&launch=x`);
        expect(res.status).toBe(400);
        expect(await res.text()).toMatch(/not configured to accept launches from that FHIR server/);
      }
      const login = await new Browser().get(`${b.url}/login?iss=${encodeURIComponent(evilUrl)}`, { accept: 'application/json' });
      expect(login.status).toBe(400);
      expect((await json(login)).error).toBe('iss_not_allowed');
      expect(hits).toBe(0);
      expect(b.app.locals.smart.discovery.fetchCount).toBe(fetchesBefore);
    } finally {
      evil.close();
    }
  });

  test('/launch without iss or launch → 400 page', async () => {
    const b = await bff();
    const res = await new Browser().get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}`);
    expect(res.status).toBe(400);
    const html = await res.text();
    expect(html).toMatch(/missing launch/);
    expect(html).toMatch(/correlation id/);
  });

  test('an error redirect from the authorization server ends on a page that escapes the description', async () => {
    const b = await bff();
    const browser = new Browser();
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const before = tokenRequests.length;
    const res = await browser.get(`${b.url}/callback?error=access_denied&error_description=${encodeURIComponent('<script>alert(1)</script>')}&state=${state}`);
    expect(res.status).toBe(403);
    const html = await res.text();
    expect(html).toMatch(/Access not granted/);
    expect(html).not.toContain('<script>alert(1)</script>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(tokenRequests.length).toBe(before);
  });

  test('a real denial at the consent screen', async () => {
    const b = await bff();
    const browser = new Browser();
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const cb = await authorize(start.headers.get('location')!, { deny: true });
    expect(new URL(cb).searchParams.get('error')).toBe('access_denied');
    const res = await browser.get(cb, { accept: 'application/json' });
    expect(res.status).toBe(403);
    expect(await json(res)).toMatchObject({ error: 'authorization_error', oauth_error: 'access_denied' });
  });

  test('/api/* without X-CSRF → 401 JSON, not a redirect', async () => {
    const b = await bff();
    const res = await new Browser().get(`${b.url}/api/session`);
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toMatch(/json/);
    expect((await json(res)).error).toBe('csrf_header_required');
    const logout = await fetch(`${b.url}/logout`, { method: 'POST', redirect: 'manual' });
    expect(logout.status).toBe(401);
  });
});

describe('invalid_grant diagnosis', () => {
  test('a reused code: the token endpoint refuses it and the log and page say the code was reused', async () => {
    const b = await bff();
    const browser = new Browser();
    const { callbackUrl } = await ehrLaunch(b, browser);
    const usedCode = new URL(callbackUrl).searchParams.get('code')!;
    // a new launch in the same browser, answered with the old code
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const iss = new URL(callbackUrl).searchParams.get('iss')!; // RFC 9207: as the server sends it
    const res = await browser.get(`${b.url}/callback?code=${encodeURIComponent(usedCode)}&state=${state}&iss=${encodeURIComponent(iss)}`);
    expect(res.status).toBe(401);
    const html = await res.text();
    expect(html).toMatch(/invalid_grant/);
    expect(html).toMatch(/Code reused/);
    const line = b.logs.find('token.response').find((e) => e.error === 'invalid_grant')!;
    expect(line).toBeDefined();
    expect((line.likely_causes as string[]).join()).toMatch(/Code reused/);
    expect(line.status).toBe(400);
    expect(line).toHaveProperty('server_date');
    expect(html).not.toContain(usedCode);
  });

  test('a redirect_uri that differs between authorize and token request (two instances, two PUBLIC_URLs)', async () => {
    const { MemoryTokenStore } = await import('../../src/session/token-store.js');
    const { MemoryTransactionStore } = await import('../../src/session/transaction-store.js');
    const { createMemorySessionStore } = await import('../../src/session/session-middleware.js');
    const sessionStore = createMemorySessionStore();
    const tokenStore = new MemoryTokenStore();
    const transactionStore = new MemoryTransactionStore({ max: 100 }); // shared, as Redis is between instances
    const one = await bff({}, { sessionStore, tokenStore, transactionStore });
    const two = await bff({}, { sessionStore, tokenStore, transactionStore, host: 'localhost' });
    const browser = new Browser();
    const start = await browser.get(`${one.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const cb = new URL(await authorize(start.headers.get('location')!));
    // the router sends the callback to the other instance, configured with another PUBLIC_URL
    const cookie = browser.cookieHeader(one.url);
    const res = await fetch(`${two.url}/callback${cb.search}`, { headers: { cookie }, redirect: 'manual' });
    expect(res.status).toBe(401);
    const html = await res.text();
    expect(html).toMatch(/redirect_uri differs byte for byte/);
    const line = two.logs.find('token.response').find((e) => e.error === 'invalid_grant')!;
    expect((line.likely_causes as string[])[0]).toMatch(new RegExp(`redirect_uri differs byte for byte between the authorize request \\(${one.url}/callback\\) and the token request \\(${two.url}/callback\\)`));
    expect(two.logs.find('token.request')[0]).toMatchObject({ redirect_uri_matches_authorize: false });
  });
});

describe('invalid_client diagnosis', () => {
  test('a key whose kid is not registered: 502 page naming private_key_jwt and the registered JWKS', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const b = await bff({ SMART_CLIENT_ID: 'asymmetric-app', SMART_PRIVATE_KEY: other });
    const browser = new Browser();
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const res = await browser.get(await authorize(start.headers.get('location')!), { accept: 'application/json' });
    expect(res.status).toBe(502);
    const body = await json(res);
    expect(body).toMatchObject({ error: 'token_exchange_failed', oauth_error: 'invalid_client' });
    expect(body.likely_causes.join(' ')).toMatch(/private_key_jwt assertion: check that the kid is in the JWKS registered/);
    expect(JSON.stringify(body)).not.toMatch(/BEGIN|PRIVATE/);
  });

  test('a wrong client secret: 502 naming the secret', async () => {
    const b = await bff({ SMART_CLIENT_ID: 'symmetric-app', SMART_CLIENT_SECRET: 'not-the-secret' });
    const browser = new Browser();
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const res = await browser.get(await authorize(start.headers.get('location')!));
    expect(res.status).toBe(502);
    const html = await res.text();
    expect(html).toMatch(/invalid_client/);
    expect(html).toMatch(/We sent a client secret: check SMART_CLIENT_SECRET/);
    expect(html).not.toContain('not-the-secret');
  });
});

describe('logging', () => {
  test('one line per step, sharing a launch id', async () => {
    const b = await bff({ SMART_CLIENT_ID: 'symmetric-app', SMART_CLIENT_SECRET: CLIENT_SECRET });
    await ehrLaunch(b, new Browser());
    const entries = b.logs.entries().filter((e) => e.launchId);
    const launchId = entries.find((e) => e.event === 'authorize.redirect')!.launchId;
    const steps = entries.filter((e) => e.launchId === launchId).map((e) => e.event);
    expect(steps).toEqual(expect.arrayContaining(['launch.start', 'discovery', 'authorize.redirect', 'callback.state', 'token.request', 'token.response', 'launch.complete']));
    const req = entries.find((e) => e.event === 'token.request')!;
    expect(req).toMatchObject({ grant_type: 'authorization_code', client_auth: 'client_secret_basic', redirect_uri: `${b.url}/callback`, pkce_verifier_matches_challenge: true });
    expect(String(req.code_fp)).toMatch(/^len:\d+\/sha:/);
    const authz = entries.find((e) => e.event === 'authorize.redirect')!;
    expect(authz).toMatchObject({ pkce_method: 'S256', client_id: 'symmetric-app' });
    expect(authz.code_challenge_sha).toBeDefined();
  });

  test('no token, code, verifier, secret or key ever appears in the logs of full flows', async () => {
    const captured = { requests: tokenRequests.length, responses: tokenResponses.length };
    const all: StartedBff[] = [
      await bff({ SMART_CLIENT_ID: 'symmetric-app', SMART_CLIENT_SECRET: CLIENT_SECRET }),
      await bff({ SMART_CLIENT_ID: 'asymmetric-app', SMART_PRIVATE_KEY: PRIVATE_PEM }),
      await bff(),
    ];
    for (const b of all) {
      const browser = new Browser();
      const { callbackUrl } = await ehrLaunch(b, browser);
      await browser.get(callbackUrl); // replay
      await sessionJson(b, browser);
      await browser.request(`${b.url}/logout`, { method: 'POST', headers: CSRF });
    }
    const secrets = new Set<string>([CLIENT_SECRET, PRIVATE_PEM.split('\n')[1]!]);
    for (const r of tokenRequests.slice(captured.requests)) {
      for (const k of ['code', 'code_verifier', 'client_assertion', 'refresh_token']) if (typeof r[k] === 'string') secrets.add(r[k] as string);
    }
    for (const r of tokenResponses.slice(captured.responses)) {
      for (const k of ['access_token', 'refresh_token', 'id_token']) if (typeof r[k] === 'string') secrets.add(r[k] as string);
    }
    expect(secrets.size).toBeGreaterThan(10);
    const text = all.map((b) => b.logs.text()).join('\n');
    expect(text.length).toBeGreaterThan(1000);
    for (const s of secrets) {
      expect(text.includes(s)).toBe(false);
      if (s.length > 40) expect(text.includes(s.slice(0, 24))).toBe(false);
    }
  });
  test('error codes are in the logs and authorization codes are not: a good launch, iss_not_allowed, a reused code (invalid_grant)', async () => {
    const captured = { requests: tokenRequests.length, responses: tokenResponses.length };
    const b = await bff({ SMART_CLIENT_ID: 'symmetric-app', SMART_CLIENT_SECRET: CLIENT_SECRET });
    const browser = new Browser();
    const { callbackUrl } = await ehrLaunch(b, browser);
    const usedCode = new URL(callbackUrl).searchParams.get('code')!;
    expect((await browser.get(`${b.url}/launch?iss=${encodeURIComponent('https://ehr.example.evil.com/r4')}&launch=abc`)).status).toBe(400);
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const iss = new URL(callbackUrl).searchParams.get('iss')!; // RFC 9207: as the server sends it
    expect((await browser.get(`${b.url}/callback?code=${encodeURIComponent(usedCode)}&state=${state}&iss=${encodeURIComponent(iss)}`)).status).toBe(401);

    const text = b.logs.text();
    expect(text).toContain('"code":"iss_not_allowed"');
    expect(text).toContain('"code":"token_exchange_failed"');
    expect(b.logs.find('error.response').map((e) => e.code)).toEqual(['iss_not_allowed', 'token_exchange_failed']);
    expect(b.logs.find('token.response').map((e) => e.error)).toContain('invalid_grant');
    // the callbacks' access-log lines keep their path and lose the code and state
    const callbacks = b.logs.entries().filter((e) => String((e.req as { url?: string } | undefined)?.url).startsWith('/callback'));
    expect(callbacks).toHaveLength(2);
    for (const c of callbacks) expect((c.req as { url: string }).url).toMatch(/^\/callback\?code=%5Bredacted%5D&state=%5Bredacted%5D/);

    const secrets = new Set<string>([CLIENT_SECRET, usedCode, state]);
    for (const r of tokenRequests.slice(captured.requests)) for (const k of ['code', 'code_verifier', 'refresh_token']) if (typeof r[k] === 'string') secrets.add(r[k] as string);
    for (const r of tokenResponses.slice(captured.responses)) for (const k of ['access_token', 'refresh_token', 'id_token']) if (typeof r[k] === 'string') secrets.add(r[k] as string);
    expect(secrets.size).toBeGreaterThanOrEqual(7);
    for (const s of secrets) expect(text.includes(s)).toBe(false);
  });
});

describe('discovery', () => {
  async function variant(alter: (doc: Record<string, unknown>) => Record<string, unknown>) {
    const sb = await startSandbox({
      clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
      redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
      smartConfiguration: alter,
    });
    const b = await startBff({ SMART_ISS: sb.fhirBaseUrl, SMART_CLIENT_ID: 'public-app' });
    bffs.push(b);
    return { sb, b };
  }

  test('a configuration without S256 is refused (502), never downgraded to plain', async () => {
    const { sb, b } = await variant((doc) => ({ ...doc, code_challenge_methods_supported: ['plain'] }));
    try {
      const res = await new Browser().get(`${b.url}/launch?iss=${encodeURIComponent(sb.fhirBaseUrl)}&launch=x`);
      expect(res.status).toBe(502);
      expect(await res.text()).toMatch(/code_challenge_methods_supported does not include S256/);
    } finally { await sb.close(); }
  });

  test('a configuration missing token_endpoint or capabilities is refused', async () => {
    const { sb, b } = await variant(({ token_endpoint: _t, capabilities: _c, ...doc }) => doc);
    try {
      const res = await new Browser().get(`${b.url}/launch?iss=${encodeURIComponent(sb.fhirBaseUrl)}&launch=x`, { accept: 'application/json' });
      expect(res.status).toBe(502);
      expect((await json(res)).message).toMatch(/token_endpoint is missing.*capabilities is missing/);
    } finally { await sb.close(); }
  });

  test('a v1-only server gets v1 scopes; requested and granted scopes are both shown', async () => {
    const { sb, b } = await variant((doc) => ({ ...doc, capabilities: (doc.capabilities as string[]).filter((c) => c !== 'permission-v2') }));
    try {
      const browser = new Browser();
      const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sb.fhirBaseUrl)}&launch=${sb.createLaunch({ patient: sb.patients[0]!.id })}`);
      expect(new URL(start.headers.get('location')!).searchParams.get('scope')!.split(' ')).toContain('patient/*.read');
      await browser.get(await authorize(start.headers.get('location')!));
      const { body } = await sessionJson(b, browser);
      expect(body.requested_scopes).toMatch(/patient\/\*\.read/);
      expect(body.granted_scopes).toMatch(/patient\/\*\.read/);
    } finally { await sb.close(); }
  });

  test('a configuration without issuer still launches (openid left out, the iss response parameter not checked)', async () => {
    const { sb, b } = await variant(({ issuer: _i, ...doc }) => doc);
    try {
      const browser = new Browser();
      const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sb.fhirBaseUrl)}&launch=${sb.createLaunch({ patient: sb.patients[1]!.id })}`);
      const scope = new URL(start.headers.get('location')!).searchParams.get('scope')!.split(' ');
      expect(scope).not.toContain('openid');
      const cb = await authorize(start.headers.get('location')!);
      expect(new URL(cb).searchParams.get('iss')).toBeTruthy(); // the server sends RFC 9207 iss anyway
      expect((await browser.get(cb)).status).toBe(302);
      const { body } = await sessionJson(b, browser);
      expect(body.patient).toBe(sb.patients[1]!.id);
      expect(b.logs.find('launch.scope_dropped')).toHaveLength(1);
    } finally { await sb.close(); }
  });

  test('cached per issuer: a second launch makes no discovery request', async () => {
    const b = await bff();
    await ehrLaunch(b, new Browser());
    const n = b.app.locals.smart.discovery.fetchCount;
    await ehrLaunch(b, new Browser());
    expect(b.app.locals.smart.discovery.fetchCount).toBe(n);
  });

  test('the JWKS that checks id_token signatures is fetched once, not at every callback; launch.complete says where the time went', async () => {
    const b = await bff();
    const config = (await (await fetch(`${sandbox.fhirBaseUrl}/.well-known/smart-configuration`)).json()) as { jwks_uri: string };
    const fetches = jest.spyOn(globalThis, 'fetch');
    try {
      await ehrLaunch(b, new Browser());
      await ehrLaunch(b, new Browser());
      expect(fetches.mock.calls.filter(([url]) => String(url) === config.jwks_uri).length).toBeLessThanOrEqual(1);
    } finally {
      fetches.mockRestore();
    }
    for (const t of b.logs.find('launch.complete').map((e) => e.timing_ms as Record<string, number>)) {
      expect(t).toEqual({
        pending: expect.any(Number), discovery: expect.any(Number), token_request: expect.any(Number), token_response: expect.any(Number),
        id_token_signature: expect.any(Number), token_store: expect.any(Number), session: expect.any(Number), total: expect.any(Number),
      });
      expect(t.total).toBeGreaterThanOrEqual(t.token_request! + t.id_token_signature!);
    }
  });

});
