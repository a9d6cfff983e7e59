/**
 * The callback's protections, each against a real authorization server: the sandbox's oidc-provider behind a
 * token endpoint (test/helpers/token-front.ts) that re-issues its real id_tokens signed with its own RSA key,
 * published at its jwks_uri, and that tampers with them on demand. Each negative test ends in a clear error, no
 * session context, and a log line naming the check that failed (never the token).
 *
 * SECURITY-CHECKLIST #17 (the id_token: nonce, iss, aud, exp, signature, alg), #7 (RFC 9207 `iss` of the
 * authorization response) and #5 (state used once: no second token request after the context was evicted or
 * signed out).
 */
import * as jose from 'jose';
import { fingerprint } from '../../src/log.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { authorize } from '../helpers/authorize.js';
import { json } from '../helpers/json.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { startTokenFront, type IdTokenTamper, type TokenFront } from '../helpers/token-front.js';

const CSRF = { 'X-CSRF': '1' };
type SandboxWithUrl = Sandbox & { url: string };

let front: TokenFront;
let sandbox: SandboxWithUrl;
const bffs: StartedBff[] = [];

/** A SMART configuration whose token endpoint and jwks_uri are the front's (it re-signs the id_tokens). */
async function frontedSandbox(f: TokenFront, alter: (doc: Record<string, unknown>) => Record<string, unknown> = (d) => d): Promise<SandboxWithUrl> {
  const sb = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    accessTokenTtlSeconds: 60,
    // This server even advertises `none` for ID tokens (a misconfiguration seen in the wild): only our own
    // signature check stands between it and an unsigned token.
    smartConfiguration: (doc) => alter({ ...doc, token_endpoint: f.tokenEndpoint, jwks_uri: f.jwksUri, id_token_signing_alg_values_supported: ['RS256', 'none'] }),
  });
  f.setUpstream({ token: `${sb.issuer}/token`, revocation: `${sb.issuer}/token/revocation` });
  return sb;
}

beforeAll(async () => {
  front = await startTokenFront({ idTokens: true });
  sandbox = await frontedSandbox(front);
});

afterEach(() => {
  front.tamper = undefined;
  front.inject = undefined;
});

afterAll(async () => {
  for (const b of bffs) await b.close();
  await sandbox?.close();
  await front?.close();
});

async function bff(env: Record<string, string> = {}, sb: SandboxWithUrl = sandbox): Promise<StartedBff> {
  const b = await startBff({ SMART_ISS: sb.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', ...env });
  bffs.push(b);
  return b;
}

/** An EHR launch up to the callback; `alter` changes the authorization response on its way back (the browser's URL). */
async function launch(b: StartedBff, opts: { browser?: Browser; sb?: SandboxWithUrl; alter?: (callback: URL) => void } = {}) {
  const sb = opts.sb ?? sandbox;
  const browser = opts.browser ?? new Browser();
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sb.fhirBaseUrl)}&launch=${encodeURIComponent(sb.createLaunch({ patient: sb.patients[0]!.id }))}`);
  expect(start.status).toBe(302);
  const scope = new URL(start.headers.get('location')!).searchParams.get('scope')!.split(' ');
  const callback = new URL(await authorize(start.headers.get('location')!));
  opts.alter?.(callback);
  const done = await browser.get(callback.href, { accept: 'application/json' });
  const location = done.headers.get('location');
  return { browser, done, callback, scope, context: location ? new URL(location, b.url).searchParams.get('context') : null };
}

const codeExchanges = (f: TokenFront = front) => f.requests.filter((r) => r.path === '/token' && r.grantType === 'authorization_code').length;

async function expectNoSession(b: StartedBff, browser: Browser) {
  const res = await browser.get(`${b.url}/api/session`, CSRF);
  expect(res.status).toBe(401);
}

describe('#17 the id_token is verified before anything in it is used', () => {
  test('#17 control: the re-signed id_token of a normal launch passes, and fhirUser comes from it', async () => {
    const b = await bff();
    const { done, browser, context, scope } = await launch(b);
    expect(scope).toEqual(expect.arrayContaining(['openid', 'fhirUser']));
    expect(done.status).toBe(302);
    const body = await json(await browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': context! }));
    expect(String(body.fhirUser)).toMatch(/\/Practitioner\//);
  });

  const now = () => Math.floor(Date.now() / 1000);
  const cases: [string, (claims: jose.JWTPayload) => IdTokenTamper, string, RegExp][] = [
    ['a wrong nonce (an ID token from another sign-in)', () => ({ claims: { nonce: 'nonce-of-another-launch' } }), 'nonce', /nonce is not the one sent with this launch/],
    ['a wrong iss', () => ({ claims: { iss: 'https://evil.example/auth' } }), 'iss', /issuer \(iss "https:\/\/evil\.example\/auth"\) is not the SMART configuration's issuer/],
    ['a wrong aud', () => ({ claims: { aud: 'another-app' } }), 'aud', /audience \(aud "another-app"\) is not this app's client id \("public-app"\)/],
    ['an expired id_token', () => ({ claims: { iat: now() - 900, exp: now() - 600 } }), 'exp', /it has expired \(exp .*, 60\d s ago\)/],
    ['a signature by a key that is not in the JWKS (same kid)', () => ({ signWith: 'rogue' }), 'signature', /signature does not verify with the key front-rs256 published at http:\/\/127\.0\.0\.1:\d+\/jwks/],
    ['a key id the JWKS does not have', () => ({ signWith: 'rogue', header: { kid: 'rogue-kid' } }), 'signing_key', /signed with a key \(kid rogue-kid, alg RS256\) that is not among the keys published/],
    ['alg: none (unsigned)', () => ({ signWith: 'none' }), 'alg', /algorithm \(alg "none"\) is not accepted/],
  ];

  test.each(cases)('#17 %s → 502 id_token_invalid, no session, the failed check logged', async (_name, tamper, check, reason) => {
    const b = await bff();
    front.tamper = tamper;
    const issuedBefore = front.issued.length;
    const { done, browser, context } = await launch(b);
    expect(done.status).toBe(502);
    expect(context).toBeNull();
    const body = await json(done);
    expect(body).toMatchObject({ error: 'id_token_invalid' });
    expect(String(body.message)).toMatch(reason);
    await expectNoSession(b, browser);
    const line = b.logs.find('token.response').at(-1)!;
    expect(line).toMatchObject({ level: 'warn', outcome: 'id_token_invalid', id_token_check: check });
    expect(String(line.reason)).toMatch(reason);
    expect(b.logs.find('launch.complete')).toHaveLength(0);
    const issued = front.issued.slice(issuedBefore);
    expect(issued).toHaveLength(1);
    expect(b.logs.text()).not.toContain(issued[0]!.split('.')[1]!.slice(0, 40));
    expect(JSON.stringify(body)).not.toContain(issued[0]!.split('.')[1]!.slice(0, 40));
  });

  test('#17 the error page for people says which check failed', async () => {
    const b = await bff();
    front.tamper = () => ({ claims: { aud: 'another-app' } });
    const browser = new Browser();
    const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(sandbox.createLaunch({ patient: sandbox.patients[0]!.id }))}`);
    const page = await browser.get(await authorize(start.headers.get('location')!));
    expect(page.status).toBe(502);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toMatch(/ID token failed validation: its audience \(aud &#34;another-app&#34;\)/);
  });

  test.each([
    ['a wrong iss', (): IdTokenTamper => ({ claims: { iss: 'https://evil.example/auth' } }), 'iss'],
    ['a signature by a key that is not in the JWKS', (): IdTokenTamper => ({ signWith: 'rogue' }), 'signature'],
  ])('#17 a refreshed id_token is checked too: %s at refresh → 502 id_token_invalid, the refresh is not kept and the launch ends, its tokens revoked', async (_name, tamper, check) => {
    const b = await bff({ TOKEN_REFRESH_SKEW_SECONDS: '3600' }); // every proxied call refreshes first
    const { browser, context } = await launch(b);
    const patient = sandbox.patients[0]!.id;
    expect((await browser.get(`${b.url}/fhir/Patient/${patient}`, { ...CSRF, 'X-SMART-Context': context! })).status).toBe(200);
    const stored = await b.app.locals.smart.tokenStore.get(context!);
    front.tamper = tamper;
    const res = await browser.get(`${b.url}/fhir/Patient/${patient}`, { ...CSRF, 'X-SMART-Context': context! });
    expect(res.status).toBe(502);
    expect((await json(res)).issue?.[0]?.details?.text ?? '').toMatch(/ID token failed validation/);
    expect(b.logs.find('token.refresh.response').at(-1)).toMatchObject({ outcome: 'id_token_invalid', id_token_check: check });
    // nothing of the response is kept, and the launch ends: its stored tokens are revoked at the EHR and, when the
    // response got as far as our signature check, the tokens it carried as well
    await b.app.locals.smart.endings.settled(10_000);
    expect(await b.app.locals.smart.tokenStore.get(context!)).toBeUndefined();
    const ended = b.logs.find('context.ended').filter((r) => r.reason === 'refresh_id_token_invalid');
    expect(ended.map((r) => r.access_fp)).toContain(fingerprint(stored!.accessToken));
    expect(ended).toHaveLength(check === 'signature' ? 2 : 1);
    const revocations = b.logs.find('token.revocation').filter((x) => x.reason === 'refresh_id_token_invalid');
    expect(revocations).toHaveLength(ended.length);
    for (const r of revocations) expect(r).toMatchObject({ access: { outcome: 'revoked' } });
    front.tamper = undefined;
    const after = await browser.get(`${b.url}/fhir/Patient/${patient}`, { ...CSRF, 'X-SMART-Context': context! });
    expect(after.status).toBe(401);
  });

  test('#17 no jwks_uri: openid and fhirUser are not asked for, and an id_token sent anyway is set aside unread', async () => {
    const f = await startTokenFront({ idTokens: true });
    const sb = await frontedSandbox(f, ({ jwks_uri: _j, ...doc }) => doc);
    try {
      const b = await bff({}, sb);
      // the server hands out an id_token nobody asked for, claiming a user
      f.inject = { iss: sb.issuer, aud: 'public-app', sub: 'intruder', fhirUser: `${sb.fhirBaseUrl}/Practitioner/intruder`, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 300 };
      const { done, browser, context, scope } = await launch(b, { sb });
      expect(scope).not.toContain('openid');
      expect(scope).not.toContain('fhirUser');
      expect(b.logs.find('launch.scope_dropped')).toEqual([expect.objectContaining({ scopes: 'openid fhirUser', reason: 'no_jwks_uri' })]);
      expect(f.issued).toHaveLength(1);
      expect(done.status).toBe(302);
      const body = await json(await browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': context! }));
      expect(body.fhirUser ?? null).toBeNull();
      // the token set aside is named by its fingerprint only
      expect(b.logs.find('token.id_token_ignored')).toEqual([expect.objectContaining({ reason: 'openid_not_requested', id_token_fp: expect.stringMatching(/^len:\d+\/sha:/) })]);
      expect(b.logs.text()).not.toContain(f.issued[0]!.split('.')[1]!.slice(0, 40));
      expect((await b.app.locals.smart.tokenStore.get(context!))!.idToken).toBeUndefined();
    } finally {
      await sb.close();
      await f.close();
    }
  });

  test('#17 no jwks_uri: an id_token sent anyway with a refresh is set aside unread too, named by its fingerprint only', async () => {
    const f = await startTokenFront({ idTokens: true });
    const sb = await frontedSandbox(f, ({ jwks_uri: _j, ...doc }) => doc);
    try {
      const b = await bff({ TOKEN_REFRESH_SKEW_SECONDS: '3600' }, sb); // every proxied call refreshes first
      const { done, browser, context, scope } = await launch(b, { sb });
      expect(scope).not.toContain('openid');
      expect(done.status).toBe(302);
      f.inject = { iss: sb.issuer, aud: 'public-app', sub: 'intruder', fhirUser: `${sb.fhirBaseUrl}/Practitioner/intruder`, iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 300 };
      const patient = sb.patients[0]!.id;
      const res = await browser.get(`${b.url}/fhir/Patient/${patient}`, { ...CSRF, 'X-SMART-Context': context! });
      expect(res.status).toBe(200);
      expect(b.logs.find('token.refresh.response').at(-1)).toMatchObject({ status: 200, msg: 'refresh: new access token stored' });
      expect(f.issued).toHaveLength(1); // the refresh response's, the only id_token handed out
      expect(b.logs.find('token.id_token_ignored')).toEqual([expect.objectContaining({ reason: 'openid_not_requested', contextId: context, id_token_fp: expect.stringMatching(/^len:\d+\/sha:/) })]);
      expect(b.logs.find('token.id_token_ignored')[0]!.msg).toMatch(/^refresh:/);
      expect(b.logs.text()).not.toContain(f.issued[0]!.split('.')[1]!.slice(0, 40));
      expect((await b.app.locals.smart.tokenStore.get(context!))!.idToken).toBeUndefined();
      const body = await json(await browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': context! }));
      expect(body.fhirUser ?? null).toBeNull();
    } finally {
      await sb.close();
      await f.close();
    }
  });
});

describe('#7 the RFC 9207 iss of the authorization response', () => {
  test('#7 the sandbox advertises authorization_response_iss_parameter_supported and its iss passes', async () => {
    const doc = await json(await fetch(`${sandbox.fhirBaseUrl}/.well-known/smart-configuration`));
    expect(doc.authorization_response_iss_parameter_supported).toBe(true);
    const b = await bff();
    const { done, callback } = await launch(b);
    expect(callback.searchParams.get('iss')).toBe(sandbox.issuer);
    expect(done.status).toBe(302);
  });

  test.each([
    ['another issuer', (cb: URL) => cb.searchParams.set('iss', 'https://evil.example/auth'), 'mismatch', /names another issuer \(iss "https:\/\/evil\.example\/auth"\)/],
    ['no iss although it is advertised', (cb: URL) => cb.searchParams.delete('iss'), 'missing', /has no iss parameter although the server advertises/],
    ['iss twice', (cb: URL) => cb.searchParams.append('iss', cb.searchParams.get('iss')!), 'repeated', /carries the iss parameter more than once/],
  ])('#7 %s → 400 authorization_response_invalid before any token request, no session', async (_name, alter, outcome, message) => {
    const b = await bff();
    const before = codeExchanges();
    const { done, browser, context } = await launch(b, { alter });
    expect(done.status).toBe(400);
    expect(context).toBeNull();
    const body = await json(done);
    expect(body.error).toBe('authorization_response_invalid');
    expect(String(body.message)).toMatch(message);
    expect(codeExchanges()).toBe(before);
    expect(b.logs.find('token.request')).toHaveLength(0);
    expect(b.logs.find('callback.iss')).toEqual([expect.objectContaining({ level: 'warn', outcome, expected: sandbox.issuer })]);
    await expectNoSession(b, browser);
  });
});

describe('#5 state is used once, also after its context is gone', () => {
  test('#5 a callback replayed after its context was evicted (MAX_CONTEXTS_PER_SESSION) → 400, no second token request', async () => {
    const b = await bff({ MAX_CONTEXTS_PER_SESSION: '1' });
    const browser = new Browser();
    const first = await launch(b, { browser });
    expect(first.done.status).toBe(302);
    const second = await launch(b, { browser }); // evicts the first context
    expect(second.done.status).toBe(302);
    expect((await browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': first.context! })).status).toBe(401);
    const before = codeExchanges();
    const again = await browser.get(first.callback.href, { accept: 'application/json' });
    expect(again.status).toBe(400);
    expect((await json(again)).error).toBe('state_unknown');
    expect(codeExchanges()).toBe(before);
    expect((await browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': first.context! })).status).toBe(401);
  });

  test('#5 a callback replayed after POST /logout → 400, no second token request, no session', async () => {
    const b = await bff();
    const browser = new Browser();
    const first = await launch(b, { browser });
    expect(first.done.status).toBe(302);
    expect((await browser.request(`${b.url}/logout`, { method: 'POST', headers: CSRF })).status).toBe(200);
    const before = codeExchanges();
    const again = await browser.get(first.callback.href, { accept: 'application/json' });
    expect(again.status).toBe(400);
    expect((await json(again)).error).toBe('state_unknown');
    expect(codeExchanges()).toBe(before);
    await expectNoSession(b, browser);
  });
});
