/**
 * Token lifecycle through the proxy: refresh before expiry, after an upstream 401, single flight under
 * concurrency, invalid_grant ending the launch context, an unavailable token endpoint keeping the refresh
 * token, and logout revoking — against the sandbox's real authorization server.
 */
import { generateKeyPairSync } from 'node:crypto';
import * as jose from 'jose';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { parsePrivateKey } from '../../src/keys.js';
import { switchableTokenEndpoint } from '../helpers/discovery.js';
import { startFaultUpstream } from '../helpers/fault-upstream.js';
import { MemoryTokenStore } from '../../src/session/token-store.js';
import { authorize } from '../helpers/authorize.js';
import { json } from '../helpers/json.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';

const CSRF = { 'X-CSRF': '1' };
type SandboxWithUrl = Sandbox & { url: string };
const TTL = 3;

let sandbox: SandboxWithUrl;
let b: StartedBff;
let tokenStore: MemoryTokenStore;
const tokenRequests: Record<string, unknown>[] = [];

const PRIVATE_PEM = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

beforeAll(async () => {
  const key = await parsePrivateKey(PRIVATE_PEM, 'rsa-1');
  sandbox = await startSandbox({
    clients: [
      { client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] },
      { client_id: 'asymmetric-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, redirect_uris: [] },
    ],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    accessTokenTtlSeconds: TTL,
  } as Parameters<typeof startSandbox>[0]);
  sandbox.events.on('token-request', (e: Record<string, unknown>) => tokenRequests.push(e));
  tokenStore = new MemoryTokenStore();
  b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', TOKEN_REFRESH_SKEW_SECONDS: '0' }, { tokenStore });
});

afterAll(async () => {
  await b?.close();
  await sandbox?.close();
});

async function launch(patient = sandbox.patients[0]!.id, bff: StartedBff = b) {
  const browser = new Browser();
  const start = await browser.get(`${bff.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(sandbox.createLaunch({ patient }))}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  const context = new URL(done.headers.get('location')!, bff.url).searchParams.get('context')!;
  return { browser, context, patient, bff };
}

const read = (l: Awaited<ReturnType<typeof launch>>) => l.browser.get(`${l.bff.url}/fhir/Patient/${l.patient}`, { ...CSRF, 'X-SMART-Context': l.context });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const refreshRequests = () => tokenRequests.filter((r) => r.grant_type === 'refresh_token');

test('refresh before expiry: a new access token and a rotated refresh token; the old one is never sent again', async () => {
  const l = await launch();
  expect((await read(l)).status).toBe(200);
  const before = (await tokenStore.get(l.context))!;
  const sentBefore = refreshRequests().length;
  await sleep(TTL * 1000 + 300);
  expect((await read(l)).status).toBe(200);
  const after = (await tokenStore.get(l.context))!;
  expect(after.accessToken).not.toBe(before.accessToken);
  expect(after.refreshToken).not.toBe(before.refreshToken);
  expect(refreshRequests().length - sentBefore).toBe(1);
  await sleep(TTL * 1000 + 300);
  expect((await read(l)).status).toBe(200);
  const sent = refreshRequests().map((r) => r.refresh_token);
  expect(new Set(sent).size).toBe(sent.length); // no refresh token was ever sent twice
  expect(sent).toContain(before.refreshToken);
});

test('20 parallel requests with an expired token cause exactly one refresh, and all succeed', async () => {
  const l = await launch();
  await sleep(TTL * 1000 + 300);
  const sentBefore = refreshRequests().length;
  const results = await Promise.all(Array.from({ length: 20 }, () => read(l)));
  expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
  expect(refreshRequests().length - sentBefore).toBe(1);
});

test('an upstream 401 causes one refresh and one retry of the safe request', async () => {
  const l = await launch();
  const tokens = (await tokenStore.get(l.context))!;
  // the EHR revokes the access token before it expires
  const at = await sandbox.provider.AccessToken.find(tokens.accessToken);
  await at!.destroy();
  const sentBefore = refreshRequests().length;
  const res = await read(l);
  expect(res.status).toBe(200);
  expect(refreshRequests().length - sentBefore).toBe(1);
  expect((await tokenStore.get(l.context))!.accessToken).not.toBe(tokens.accessToken);
});

test('refresh answered invalid_grant ends the launch context: 401 session_expired, then unknown', async () => {
  const l = await launch();
  const tokens = (await tokenStore.get(l.context))!;
  const rt = await sandbox.provider.RefreshToken.find(tokens.refreshToken!);
  await rt!.destroy();
  await sleep(TTL * 1000 + 300);
  const res = await read(l);
  expect(res.status).toBe(401);
  const oo = await json(res);
  expect(oo.issue[0].details.coding[0].code).toBe('session_expired');
  expect(oo.issue[0].diagnostics).toMatch(/Launch the app again/);
  expect(await tokenStore.get(l.context)).toBeUndefined();
  const session = await l.browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': l.context });
  expect(session.status).toBe(401);
});

test('logout revokes the tokens at the EHR and ends the session', async () => {
  const l = await launch();
  const tokens = (await tokenStore.get(l.context))!;
  const out = await l.browser.request(`${b.url}/logout`, { method: 'POST', headers: CSRF });
  expect(out.status).toBe(200);
  expect((await json(out)).revoked).toBe(1);
  expect(await sandbox.provider.AccessToken.find(tokens.accessToken)).toBeUndefined();
  expect(await sandbox.provider.RefreshToken.find(tokens.refreshToken!)).toBeUndefined();
  expect((await l.browser.get(`${b.url}/api/session`, CSRF)).status).toBe(401);
});

test('token endpoint unreachable during refresh → 503 and the refresh token is kept', async () => {
  const other = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
    accessTokenTtlSeconds: 1,
  } as Parameters<typeof startSandbox>[0]);
  const store = new MemoryTokenStore();
  const bff = await startBff({ SMART_ISS: other.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', TOKEN_REFRESH_SKEW_SECONDS: '0', SMART_HTTP_TIMEOUT_MS: '3000' }, { tokenStore: store });
  try {
    const browser = new Browser();
    const start = await browser.get(`${bff.url}/launch?iss=${encodeURIComponent(other.fhirBaseUrl)}&launch=${encodeURIComponent(other.createLaunch({ patient: other.patients[0]!.id }))}`);
    const done = await browser.get(await authorize(start.headers.get('location')!));
    const context = new URL(done.headers.get('location')!, bff.url).searchParams.get('context')!;
    const before = (await store.get(context))!;
    await other.close();
    await sleep(1300);
    const res = await browser.get(`${bff.url}/fhir/Patient/${other.patients[0]!.id}`, { ...CSRF, 'X-SMART-Context': context });
    expect(res.status).toBe(503);
    expect((await store.get(context))!.refreshToken).toBe(before.refreshToken);
  } finally {
    await bff.close();
  }
});

test('an asymmetric client refreshes with a fresh private_key_jwt assertion', async () => {
  const asym = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'asymmetric-app', SMART_PRIVATE_KEY: PRIVATE_PEM, SMART_KEY_ID: 'rsa-1', TOKEN_REFRESH_SKEW_SECONDS: '0' });
  try {
    const l = await launch(sandbox.patients[1]!.id, asym);
    await sleep(TTL * 1000 + 300);
    expect((await read(l)).status).toBe(200);
    const mine = tokenRequests.filter((r) => r.client_id === 'asymmetric-app');
    const exchange = mine.find((r) => r.grant_type === 'authorization_code')!;
    const refresh = mine.find((r) => r.grant_type === 'refresh_token')!;
    expect(refresh).toBeDefined();
    const a = jose.decodeJwt(String(exchange.client_assertion));
    const r = jose.decodeJwt(String(refresh.client_assertion));
    expect(jose.decodeProtectedHeader(String(refresh.client_assertion))).toMatchObject({ alg: 'RS384', kid: 'rsa-1', typ: 'JWT' });
    expect(r).toMatchObject({ iss: 'asymmetric-app', sub: 'asymmetric-app', aud: a.aud });
    expect(r.jti).not.toBe(a.jti);
  } finally {
    await asym.close();
  }
});

test('refresh answered 5xx → 503 and the refresh token is kept for the next try', async () => {
  const fault = await startFaultUpstream('/token');
  fault.mode = { kind: 'status', status: 500, body: '<html>upstream error</html>' };
  const { discovery, useFaulty } = switchableTokenEndpoint(fault.base);
  const store = new MemoryTokenStore();
  const bff = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', TOKEN_REFRESH_SKEW_SECONDS: '0' }, { tokenStore: store, discovery });
  try {
    const l = await launch(sandbox.patients[2]!.id, bff);
    const before = (await store.get(l.context))!;
    useFaulty(true);
    await sleep(TTL * 1000 + 300);
    const res = await read(l);
    expect(res.status).toBe(503);
    expect(fault.received.at(-1)!.body).toMatch(/grant_type=refresh_token/);
    expect((await store.get(l.context))!.refreshToken).toBe(before.refreshToken);
    // the EHR recovers: the kept refresh token works
    useFaulty(false);
    expect((await read(l)).status).toBe(200);
  } finally {
    await bff.close();
    await fault.close();
  }
});

test('refresh at a token endpoint that never answers → 503 within the timeout, logged as a timeout; the refresh token is kept', async () => {
  const fault = await startFaultUpstream('/token');
  fault.mode = { kind: 'hang' };
  const { discovery, useFaulty } = switchableTokenEndpoint(fault.base);
  const store = new MemoryTokenStore();
  const bff = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', TOKEN_REFRESH_SKEW_SECONDS: '0', SMART_HTTP_TIMEOUT_MS: '3000' }, { tokenStore: store, discovery });
  try {
    const l = await launch(sandbox.patients[3]!.id, bff);
    const before = (await store.get(l.context))!;
    useFaulty(true);
    await sleep(TTL * 1000 + 300);
    const res = await read(l);
    expect(res.status).toBe(503);
    expect(JSON.stringify(await json(res))).toMatch(/did not answer in time/);
    // openid-client wraps the timeout (ClientError OAUTH_TIMEOUT): still read as one
    expect(bff.logs.find('token.refresh.response').at(-1)).toMatchObject({ outcome: 'unavailable', reason: 'timeout' });
    expect((await store.get(l.context))!.refreshToken).toBe(before.refreshToken);
  } finally {
    await bff.close();
    await fault.close();
  }
});
