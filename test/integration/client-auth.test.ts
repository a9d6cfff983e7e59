/**
 * SECURITY-CHECKLIST #48: client_secret_basic credentials that servers which do not form-decode them accept.
 *
 * The token and revocation endpoints here are a strict front (test/helpers/token-front.ts) in front of the
 * sandbox's oidc-provider: it compares the raw Basic credentials with the registered ones WITHOUT decoding them,
 * as the SMART reference launcher and many EHRs do, answers 401 invalid_client with a challenge on a mismatch,
 * and passes matching requests on to oidc-provider, which issues and revokes real tokens. The client id is a
 * hyphenated UUID, as Oracle Health and Epic issue them. Also: the signing-algorithm and method checks against
 * what the SMART configuration advertises (discovery warnings and the invalid_client diagnosis).
 */
import { generateKeyPairSync } from 'node:crypto';
import * as client from 'openid-client';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { parsePrivateKey, type ClientKey } from '../../src/keys.js';
import { DiscoveryCache } from '../../src/smart/discovery.js';
import { BackendTokenClient, BackendTokenError } from '../../src/backend-services/token-client.js';
import { authorize } from '../helpers/authorize.js';
import { json } from '../helpers/json.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { captureLogs } from '../helpers/log-capture.js';
import { startTokenFront, type TokenFront } from '../helpers/token-front.js';

const CSRF = { 'X-CSRF': '1' };
/** A UUID client id (Oracle Health, Epic) and a secret with every RFC 3986 unreserved punctuation mark. */
const UUID_ID = '8c7a1d0e-3b2f-4a6e-9d5c-1f2e3d4c5b6a';
const UUID_SECRET = 'Zk3-v9.q_T~7xW2-mR8.pL_0~nB4-sC6.uY1';
/** A secret that form and raw send differently: '+', '%' and a space (and '/', '=', which both send as they are). */
const ODD_ID = 'f0e1d2c3-b4a5-4697-8879-6a5b4c3d2e1f';
const ODD_SECRET = 'Kq+7/ab%2Fcd ef=9-secret-never-logged';

type SandboxWithUrl = Sandbox & { url: string };
let front: TokenFront;
let fronted: SandboxWithUrl; // its token and revocation endpoints are the strict front
let direct: SandboxWithUrl; // oidc-provider itself (form-decodes Basic credentials)
const bffs: StartedBff[] = [];
const frontedTokens: Record<string, unknown>[] = [];

const symmetric = (client_id: string, client_secret: string) => ({ client_id, client_secret, token_endpoint_auth_method: 'client_secret_basic' as const, redirect_uris: [] });

beforeAll(async () => {
  front = await startTokenFront({ rawBasic: [{ clientId: UUID_ID, secret: UUID_SECRET }, { clientId: ODD_ID, secret: ODD_SECRET }] });
  fronted = await startSandbox({
    clients: [symmetric(UUID_ID, UUID_SECRET), symmetric(ODD_ID, ODD_SECRET)],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    accessTokenTtlSeconds: 60,
    smartConfiguration: (doc) => ({ ...doc, token_endpoint: front.tokenEndpoint, revocation_endpoint: front.revocationEndpoint }),
  });
  front.setUpstream({ token: `${fronted.issuer}/token`, revocation: `${fronted.issuer}/token/revocation` });
  fronted.events.on('token-response', (e: Record<string, unknown>) => frontedTokens.push(e));
  direct = await startSandbox({
    clients: [symmetric(ODD_ID, ODD_SECRET)],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  });
});

afterAll(async () => {
  for (const b of bffs) await b.close();
  await fronted?.close();
  await direct?.close();
  await front?.close();
});

async function bff(sandbox: SandboxWithUrl, env: Record<string, string>): Promise<StartedBff> {
  const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, ...env });
  bffs.push(b);
  return b;
}

/** An EHR launch through the sign-in pages to the callback's answer (JSON when it fails). */
async function ehrLaunch(b: StartedBff, sandbox: SandboxWithUrl, browser = new Browser()) {
  const patient = sandbox.patients[0]!.id;
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(sandbox.createLaunch({ patient }))}`);
  expect(start.status).toBe(302);
  const done = await browser.get(await authorize(start.headers.get('location')!), { accept: 'application/json' });
  const location = done.headers.get('location');
  const context = location ? new URL(location, b.url).searchParams.get('context') : null;
  return { browser, done, context, patient };
}

const frontSince = (n: number) => front.requests.slice(n);

describe('#48 client_secret_basic against a token endpoint that compares raw credentials', () => {
  test('#48 a confidential symmetric client whose id is a hyphenated UUID launches (form encoding, the default)', async () => {
    const b = await bff(fronted, { SMART_CLIENT_ID: UUID_ID, SMART_CLIENT_SECRET: UUID_SECRET });
    const n = front.requests.length;
    const { browser, done, context, patient } = await ehrLaunch(b, fronted);
    expect(done.status).toBe(302);
    expect(context).toBeTruthy();
    expect(frontSince(n)).toEqual([{ path: '/token', grantType: 'authorization_code', basic: 'accepted', status: 200 }]);
    const session = await browser.get(`${b.url}/api/session`, CSRF);
    expect(await json(session)).toMatchObject({ context, patient });
    expect(b.logs.find('token.request')[0]).toMatchObject({ client_auth: 'client_secret_basic', client_id: UUID_ID });
  });

  test('#48 refresh goes through the same endpoint with the same raw-accepted credentials', async () => {
    // Refresh on the first proxied call: the skew (an hour) is longer than the access token's life (a minute).
    const b = await bff(fronted, { SMART_CLIENT_ID: UUID_ID, SMART_CLIENT_SECRET: UUID_SECRET, TOKEN_REFRESH_SKEW_SECONDS: '3600' });
    const { browser, context, patient } = await ehrLaunch(b, fronted);
    const n = front.requests.length;
    const read = await browser.get(`${b.url}/fhir/Patient/${patient}`, { ...CSRF, 'X-SMART-Context': context! });
    expect(read.status).toBe(200);
    expect(frontSince(n)).toEqual([{ path: '/token', grantType: 'refresh_token', basic: 'accepted', status: 200 }]);
    expect(b.logs.find('token.refresh.response').at(-1)).toMatchObject({ status: 200 });
  });

  test('#48 an invalid_client at refresh gets the same diagnosis (a secret rotated at the EHR, sent raw)', async () => {
    const b = await bff(fronted, { SMART_CLIENT_ID: ODD_ID, SMART_CLIENT_SECRET: ODD_SECRET, SMART_CLIENT_AUTH_ENCODING: 'raw', TOKEN_REFRESH_SKEW_SECONDS: '3600' });
    const { browser, context, patient } = await ehrLaunch(b, fronted);
    const registered = front.rawBasic!.find((c) => c.clientId === ODD_ID)!;
    registered.secret = 'rotated-at-the-ehr';
    try {
      const read = await browser.get(`${b.url}/fhir/Patient/${patient}`, { ...CSRF, 'X-SMART-Context': context! });
      expect(read.status).toBe(502);
      const line = b.logs.find('token.refresh.response').at(-1)!;
      expect(line).toMatchObject({ status: 401, error: 'invalid_client' });
      const causes = (line.likely_causes as string[]).join('\n');
      expect(causes).toMatch(/We send them raw.*SMART_CLIENT_AUTH_ENCODING=form/);
      expect(causes).toMatch(/We sent a client secret: check SMART_CLIENT_SECRET/);
      expect(b.logs.text()).not.toContain(ODD_SECRET);
    } finally {
      registered.secret = ODD_SECRET;
    }
  });

  test('#48 POST /logout revokes through a revocation endpoint that also compares raw credentials', async () => {
    const b = await bff(fronted, { SMART_CLIENT_ID: UUID_ID, SMART_CLIENT_SECRET: UUID_SECRET });
    const issued = frontedTokens.length;
    const { browser } = await ehrLaunch(b, fronted);
    const tokens = frontedTokens.slice(issued).find((t) => t.status === 200)!;
    const n = front.requests.length;
    const out = await browser.request(`${b.url}/logout`, { method: 'POST', headers: CSRF });
    expect(out.status).toBe(200);
    const revocations = frontSince(n).filter((r) => r.path === '/revocation');
    expect(revocations.length).toBeGreaterThanOrEqual(1);
    expect(revocations.every((r) => r.basic === 'accepted' && r.status === 200)).toBe(true);
    // oidc-provider really revoked them: the refresh token no longer works (asked of oidc-provider directly)
    const again = await fetch(`${fronted.issuer}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${encodeURIComponent(UUID_ID)}:${encodeURIComponent(UUID_SECRET)}`).toString('base64')}` },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: String(tokens.refresh_token) }),
    });
    expect(again.status).toBe(400);
    expect((await json(again)).error).toBe('invalid_grant');
  });

  test("#48 the endpoint is as strict as the servers it stands for: openid-client's stock Basic encoding (bff%2Dapp) is refused", async () => {
    const headers = new Headers();
    client.ClientSecretBasic(UUID_SECRET)({ issuer: fronted.issuer } as client.ServerMetadata, { client_id: UUID_ID }, new URLSearchParams(), headers);
    expect(Buffer.from(headers.get('authorization')!.slice(6), 'base64').toString()).toMatch(/^8c7a1d0e%2D3b2f%2D/);
    const res = await fetch(front.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: headers.get('authorization')! },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'x' }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic .*error="invalid_client".*Invalid client_id in the basic auth header/);
  });

  test('#48 raw: a secret with +, % and a space launches against the raw-comparing endpoint', async () => {
    const b = await bff(fronted, { SMART_CLIENT_ID: ODD_ID, SMART_CLIENT_SECRET: ODD_SECRET, SMART_CLIENT_AUTH_ENCODING: 'raw' });
    const n = front.requests.length;
    const { done } = await ehrLaunch(b, fronted);
    expect(done.status).toBe(302);
    expect(frontSince(n)).toEqual([{ path: '/token', grantType: 'authorization_code', basic: 'accepted', status: 200 }]);
  });

  test('#48 form: the same secret is refused there; the page and the log name the characters and SMART_CLIENT_AUTH_ENCODING=raw, never the secret', async () => {
    const b = await bff(fronted, { SMART_CLIENT_ID: ODD_ID, SMART_CLIENT_SECRET: ODD_SECRET });
    const n = front.requests.length;
    const { done, context } = await ehrLaunch(b, fronted);
    expect(done.status).toBe(502);
    expect(context).toBeNull();
    expect(frontSince(n)).toEqual([{ path: '/token', grantType: 'authorization_code', basic: 'refused', status: 401 }]);
    const body = await json(done);
    expect(body).toMatchObject({ error: 'token_exchange_failed', oauth_error: 'invalid_client' });
    const causes = (body.likely_causes as string[]).join('\n');
    expect(causes).toMatch(/the secret contains '%', '\+' and a space/);
    expect(causes).toMatch(/SMART_CLIENT_AUTH_ENCODING=raw/);
    expect(causes).toMatch(/SMART_CLIENT_AUTH_METHOD=client_secret_post/);
    const line = b.logs.find('token.response').find((e) => e.error === 'invalid_client')!;
    expect((line.likely_causes as string[]).join('\n')).toMatch(/SMART_CLIENT_AUTH_ENCODING=raw/);
    for (const text of [JSON.stringify(body), b.logs.text()]) {
      expect(text).not.toContain(ODD_SECRET);
      expect(text).not.toContain('Kq+7');
      expect(text).not.toContain('Kq%2B7');
    }
  });

  test('#48 form: the same secret launches against oidc-provider itself, which form-decodes', async () => {
    const b = await bff(direct, { SMART_CLIENT_ID: ODD_ID, SMART_CLIENT_SECRET: ODD_SECRET });
    const { done } = await ehrLaunch(b, direct);
    expect(done.status).toBe(302);
  });

  test('#48 raw against a server that form-decodes: invalid_client names SMART_CLIENT_AUTH_ENCODING=form', async () => {
    const b = await bff(direct, { SMART_CLIENT_ID: ODD_ID, SMART_CLIENT_SECRET: ODD_SECRET, SMART_CLIENT_AUTH_ENCODING: 'raw' });
    const { done } = await ehrLaunch(b, direct);
    expect(done.status).toBe(502);
    const causes = ((await json(done)).likely_causes as string[]).join('\n');
    expect(causes).toMatch(/We send them raw.*reads '\+' as a space/);
    expect(causes).toMatch(/SMART_CLIENT_AUTH_ENCODING=form/);
  });

  test('#48 a wrong secret made of unreserved characters only: the diagnosis rules the encoding out', async () => {
    const b = await bff(fronted, { SMART_CLIENT_ID: UUID_ID, SMART_CLIENT_SECRET: 'not-the.secret_at~all' });
    const { done } = await ehrLaunch(b, fronted);
    expect(done.status).toBe(502);
    const causes = ((await json(done)).likely_causes as string[]).join('\n');
    expect(causes).toMatch(/sent as the same bytes in both client_secret_basic encodings/);
    expect(causes).not.toMatch(/SMART_CLIENT_AUTH_ENCODING=/);
  });
});

describe('#48 our method and signing algorithm against what the server advertises', () => {
  let strict: SandboxWithUrl;
  let es384: ClientKey;
  let es384Pem: string;

  beforeAll(async () => {
    es384Pem = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    es384 = await parsePrivateKey(es384Pem, 'es384-key');
    strict = await startSandbox({
      clients: [
        // this server takes RS256 client assertions only, and says so
        { client_id: 'rs256-only', token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'RS256', jwks: { keys: [{ ...es384.publicJwk }] }, redirect_uris: [] },
        symmetric('basic-app', UUID_SECRET),
        { client_id: 'backend-rs256-only', token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'RS256', jwks: { keys: [{ ...es384.publicJwk }] }, grant_types: ['client_credentials'] },
      ],
      redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
      smartConfiguration: (doc) => ({ ...doc, token_endpoint_auth_signing_alg_values_supported: ['RS256'], token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_post'] }),
    });
  });
  afterAll(() => strict?.close());

  test('#48 an assertion algorithm the server does not advertise: one discovery warning per issuer and registration, and the invalid_client names it', async () => {
    const b = await bff(strict, { SMART_CLIENT_ID: 'rs256-only', SMART_PRIVATE_KEY: es384Pem, SMART_KEY_ID: 'es384-key' });
    const first = await ehrLaunch(b, strict);
    const second = await ehrLaunch(b, strict);
    const warnings = b.logs.find('discovery').filter((e) => e.warning);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn', warning: 'signing_alg_not_advertised', advertised: ['RS256'], ours: 'ES384', registration: 'default', iss: strict.fhirBaseUrl });
    expect(String(warnings[0]!.msg)).toMatch(/signed with ES384.*token_endpoint_auth_signing_alg_values_supported: RS256/);
    for (const { done } of [first, second]) {
      expect(done.status).toBe(502);
      const body = await json(done);
      expect(body.oauth_error).toBe('invalid_client');
      expect((body.likely_causes as string[])[0]).toMatch(/signed with ES384 \(key es384-key\).*RS256\)\. The server advertises none of SMART's algorithms/);
    }
  });

  test('#48 a method the server does not advertise: a discovery warning naming SMART_CLIENT_AUTH_METHOD=client_secret_post', async () => {
    const b = await bff(strict, { SMART_CLIENT_ID: 'basic-app', SMART_CLIENT_SECRET: UUID_SECRET });
    const { done } = await ehrLaunch(b, strict);
    expect(done.status).toBe(302); // this server happens to take Basic anyway: a warning, not a refusal
    const [warning] = b.logs.find('discovery').filter((e) => e.warning);
    expect(warning).toMatchObject({ warning: 'auth_method_not_advertised', advertised: ['private_key_jwt', 'client_secret_post'], ours: 'client_secret_basic' });
    expect(String(warning!.fix)).toMatch(/SMART_CLIENT_AUTH_METHOD=client_secret_post/);
  });

  test('#48 backend services: the same warning once per issuer and client, and the algorithm among the causes of invalid_client', async () => {
    const logs = captureLogs();
    const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 5000, allowInsecureHttp: true });
    const tokens = new BackendTokenClient({ discovery, logger: logs.logger, timeoutMs: 5000, allowInsecureHttp: true });
    const c = { iss: strict.fhirBaseUrl, clientId: 'backend-rs256-only', key: es384, scope: 'system/Patient.rs' };
    for (let i = 0; i < 2; i++) {
      const err = await tokens.getToken(c, { forceRenew: true }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(BackendTokenError);
      expect((err as BackendTokenError).code).toBe('invalid_client');
      expect((err as BackendTokenError).causes.join('\n')).toMatch(/signed with ES384.*RS256/);
    }
    const warnings = logs.find('discovery').filter((e) => e.warning);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ warning: 'signing_alg_not_advertised', advertised: ['RS256'], ours: 'ES384', clientId: 'backend-rs256-only' });
  });
});
