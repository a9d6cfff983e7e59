/** SMART Backend Services tokens against the sandbox's real authorization server (oidc-provider). */
import { generateKeyPairSync } from 'node:crypto';
import * as jose from 'jose';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { parsePrivateKey, type ClientKey } from '../../../src/keys.js';
import { DiscoveryCache } from '../../../src/smart/discovery.js';
import { BackendTokenClient, BackendTokenError } from '../../../src/backend-services/token-client.js';
import { captureLogs } from '../../helpers/log-capture.js';

let sandbox: Sandbox & { url: string };
let key: ClientKey;
const requests: Record<string, unknown>[] = [];

const pem = (type: 'ec' | 'rsa') => (type === 'ec'
  ? generateKeyPairSync('ec', { namedCurve: 'P-384' })
  : generateKeyPairSync('rsa', { modulusLength: 2048 })).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

beforeAll(async () => {
  key = await parsePrivateKey(pem('ec'));
  sandbox = await startSandbox({
    clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, grant_types: ['client_credentials'] }],
    accessTokenTtlSeconds: 300,
  });
  sandbox.events.on('token-request', (e: Record<string, unknown>) => requests.push(e));
});
afterAll(() => sandbox?.close());

function tokenClient() {
  const logs = captureLogs();
  const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 5000, allowInsecureHttp: true });
  return { client: new BackendTokenClient({ discovery, logger: logs.logger, timeoutMs: 5000, allowInsecureHttp: true }), logs };
}

test('a system token; the real assertion follows SMART exactly; the token reads FHIR', async () => {
  const { client, logs } = tokenClient();
  const before = requests.length;
  const t = await client.getToken({ iss: sandbox.fhirBaseUrl, clientId: 'backend-app', key, scope: 'system/Patient.rs system/Observation.rs' });
  expect(t.scope.split(' ')).toEqual(expect.arrayContaining(['system/Patient.rs', 'system/Observation.rs']));
  expect(t.expiresAt).toBeGreaterThan(Date.now() + 200_000);
  const sent = requests.slice(before).find((r) => r.grant_type === 'client_credentials')!;
  const assertion = String(sent.client_assertion);
  expect(jose.decodeProtectedHeader(assertion)).toEqual({ alg: 'ES384', kid: key.kid, typ: 'JWT' });
  const claims = jose.decodeJwt(assertion);
  expect(claims).toMatchObject({ iss: 'backend-app', sub: 'backend-app', aud: t.tokenEndpoint });
  expect(t.tokenEndpoint).toBe(`${sandbox.issuer}/token`);
  expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(300);
  expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeGreaterThan(0);
  // a second assertion has a fresh jti
  await client.getToken({ iss: sandbox.fhirBaseUrl, clientId: 'backend-app', key, scope: 'system/Patient.rs system/Observation.rs' }, { forceRenew: true });
  const again = requests.filter((r) => r.grant_type === 'client_credentials').at(-1)!;
  expect(jose.decodeJwt(String(again.client_assertion)).jti).not.toBe(claims.jti);
  const res = await fetch(`${sandbox.fhirBaseUrl}/Patient/${sandbox.patients[0]!.id}`, { headers: { authorization: `Bearer ${t.accessToken}` } });
  expect(res.status).toBe(200);
  expect(logs.text()).not.toContain(t.accessToken);
  expect(logs.text()).not.toContain(assertion);
});

test('100 concurrent callers share one token request', async () => {
  const { client } = tokenClient();
  const c = { iss: sandbox.fhirBaseUrl, clientId: 'backend-app', key, scope: 'system/Condition.rs' };
  const tokens = await Promise.all(Array.from({ length: 100 }, () => client.getToken(c)));
  expect(new Set(tokens.map((t) => t.accessToken)).size).toBe(1);
  expect(client.requestCount).toBe(1);
  await client.getToken(c);
  expect(client.requestCount).toBe(1); // reused until shortly before expiry
});

test('an unregistered key: invalid_client, explained (kid not in the registered JWKS), not retried', async () => {
  const { client } = tokenClient();
  const other = await parsePrivateKey(pem('rsa'));
  const err = await client.getToken({ iss: sandbox.fhirBaseUrl, clientId: 'backend-app', key: other, scope: 'system/Patient.rs' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BackendTokenError);
  expect((err as BackendTokenError).code).toBe('invalid_client');
  expect((err as BackendTokenError).retryable).toBe(false);
  expect((err as BackendTokenError).causes.join(' ')).toMatch(new RegExp(`kid ${other.kid} \\(RS384\\); that kid must be in the JWKS registered`));
  expect(client.requestCount).toBe(1);
});

describe('a v1-only server', () => {
  let v1: Sandbox & { url: string };
  const v1Requests: Record<string, unknown>[] = [];
  beforeAll(async () => {
    v1 = await startSandbox({
      clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, grant_types: ['client_credentials'] }],
      smartConfiguration: (doc) => ({ ...doc, capabilities: (doc.capabilities as string[]).filter((c) => c !== 'permission-v2') }),
    });
    v1.events.on('token-request', (e: Record<string, unknown>) => v1Requests.push(e));
  });
  afterAll(() => v1?.close());

  test('gets v1 system scopes', async () => {
    const { client } = tokenClient();
    const t = await client.getToken({ iss: v1.fhirBaseUrl, clientId: 'backend-app', key, scope: 'system/Patient.rs' });
    expect(t.scope).toBe('system/Patient.read');
  });

  test('is never asked for more than configured: scopes v1 cannot express exactly are narrowed or left out, each with a warning', async () => {
    const { client, logs } = tokenClient();
    const before = v1Requests.length;
    const t = await client.getToken({ iss: v1.fhirBaseUrl, clientId: 'backend-app', key, scope: 'system/Patient.rs system/Observation.s system/Condition.rs?category=encounter-diagnosis system/Group.cruds system/Encounter.crs' });
    expect(v1Requests.slice(before).map((r) => r.scope)).toEqual(['system/Patient.read system/Group.* system/Encounter.read']);
    expect(t.scope.split(' ').sort()).toEqual(['system/Encounter.read', 'system/Group.*', 'system/Patient.read']);
    expect(logs.find('backend.token.scope_dropped').map((w) => [w.scope, w.sent_instead])).toEqual([
      ['system/Observation.s', null],
      ['system/Condition.rs?category=encounter-diagnosis', null],
      ['system/Encounter.crs', 'system/Encounter.read'],
    ]);
    expect(logs.text()).toMatch(/not only those matching \?category=encounter-diagnosis/);
  });

  test('when nothing configured can be asked for exactly: a permanent error naming each scope, and no token request', async () => {
    const { client } = tokenClient();
    const before = v1Requests.length;
    const err = await client.getToken({ iss: v1.fhirBaseUrl, clientId: 'backend-app', key, scope: 'system/Observation.s system/Patient.r' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendTokenError);
    expect(err).toMatchObject({ code: 'scope_not_expressible', retry: { kind: 'permanent' } });
    expect((err as BackendTokenError).causes).toEqual([expect.stringMatching(/^system\/Observation\.s: /), expect.stringMatching(/^system\/Patient\.r: /)]);
    expect(v1Requests.length).toBe(before);
  });
});
