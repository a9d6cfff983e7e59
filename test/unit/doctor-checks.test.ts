/**
 * The doctor's checks of a SMART configuration (src/doctor/server-checks.ts), as pure functions of a discovery
 * examination: the cases the integration tests against the sandbox do not reach (a server that advertises no
 * scope syntax, no client authentication lists, no Date header; backend scopes with nothing left; clock skew
 * at its thresholds).
 */
import { generateKeyPairSync } from 'node:crypto';
import { parsePrivateKey, type ClientKey } from '../../src/keys.js';
import { clockCheck, serverChecks } from '../../src/doctor/server-checks.js';
import type { BackendTarget, LaunchTarget } from '../../src/doctor/targets.js';
import type { DiscoveryExamination } from '../../src/smart/discovery.js';

const ISS = 'https://ehr.example/r4';
let key: ClientKey;
beforeAll(async () => {
  key = await parsePrivateKey(generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
});

const baseDoc = (): Record<string, unknown> => ({
  issuer: 'https://ehr.example/auth', jwks_uri: 'https://ehr.example/auth/jwks',
  authorization_endpoint: 'https://ehr.example/auth/authorize', token_endpoint: 'https://ehr.example/auth/token',
  grant_types_supported: ['authorization_code', 'client_credentials'], code_challenge_methods_supported: ['S256'],
  token_endpoint_auth_methods_supported: ['private_key_jwt'], token_endpoint_auth_signing_alg_values_supported: ['ES384'],
  capabilities: ['launch-ehr', 'client-public', 'client-confidential-asymmetric', 'context-ehr-patient', 'permission-patient', 'permission-online', 'sso-openid-connect', 'permission-v2'],
});
const exam = (doc: Record<string, unknown>, date: string | null = new Date().toUTCString()) => ({
  url: `${ISS}/.well-known/smart-configuration`, document: doc, problems: [], date, receivedAt: Date.now(),
}) as DiscoveryExamination & { document: Record<string, unknown> };
const ctx = { allowInsecureHttp: false, insecureReason: '', insecureHosts: 'any' as const };

const launch = (scope = 'openid fhirUser online_access patient/*.rs'): LaunchTarget => ({
  kind: 'launch', iss: ISS, modes: ['ehr'], jwksUrls: [], scopeSetting: { ehr: 'SMART_SCOPE', standalone: 'SMART_STANDALONE_SCOPE' },
  registration: { name: 'default', iss: [ISS], clientId: 'app', clientType: 'public', scope, standaloneScope: scope, configuredIn: 'env' },
});
const backend = (scope: string): BackendTarget => ({ kind: 'backend', name: 'default', client: { iss: ISS, clientId: 'svc', key, scope }, scopeSetting: 'SMART_BACKEND_SCOPE', jwksUrls: [] });
const byId = (checks: { id: string }[]) => Object.fromEntries(checks.map((c) => [c.id, c]));

test('the whole checklist of a launch against a conforming https server: every line ok', () => {
  const checks = serverChecks(exam(baseDoc()), launch(), ctx);
  expect(checks.map((c) => [c.id, c.status])).toEqual([
    ['smart_configuration', 'ok'], ['https', 'ok'], ['pkce_s256', 'ok'], ['capabilities', 'ok'], ['auth_method', 'ok'],
    ['scopes', 'ok'], ['refresh', 'ok'], ['openid', 'ok'], ['clock_skew', 'ok'],
  ]);
});

test('neither permission-v1 nor permission-v2 advertised: ⚠, the scopes go as configured', () => {
  const doc = baseDoc();
  doc.capabilities = (doc.capabilities as string[]).filter((c) => c !== 'permission-v2');
  const c = byId(serverChecks(exam(doc), launch(), ctx)).scopes!;
  expect(c).toMatchObject({ status: 'warning', message: expect.stringMatching(/^The server advertises neither permission-v1 nor permission-v2, so the scopes go as configured\./) });
});

test('backend scopes with nothing expressible in v1: ✗ (the request would be refused before it is sent)', () => {
  const doc = { ...baseDoc(), capabilities: ['client-confidential-asymmetric', 'permission-v1'] };
  const c = byId(serverChecks(exam(doc), backend('system/Patient.r system/Observation.s'), ctx)).scopes!;
  expect(c).toMatchObject({ status: 'error', details: [expect.stringMatching(/^system\/Patient\.r is not requested/), expect.stringMatching(/^system\/Observation\.s is not requested/)] });
});

test('no token_endpoint_auth_methods_supported nor signing algorithms advertised: ⚠ (cannot be checked), not ✗', () => {
  const { token_endpoint_auth_methods_supported: _m, token_endpoint_auth_signing_alg_values_supported: _a, ...doc } = baseDoc();
  const checks = byId(serverChecks(exam(doc), backend('system/*.rs'), ctx));
  expect(checks.auth_method).toMatchObject({ status: 'warning', message: expect.stringContaining('does not advertise token_endpoint_auth_methods_supported') });
  expect(checks.signing_alg).toMatchObject({ status: 'warning', fix: expect.stringContaining('ES384 client assertions') });
});

test('http endpoints: ✗ unless allowed; allowed for loopback only, an endpoint elsewhere is still ✗', () => {
  const doc = { ...baseDoc(), token_endpoint: 'http://127.0.0.1:8080/token', revocation_endpoint: 'http://ehr.example/revoke' };
  expect(byId(serverChecks(exam(doc), launch(), ctx)).https).toMatchObject({ status: 'error', message: 'Not https: token_endpoint http://127.0.0.1:8080/token, revocation_endpoint http://ehr.example/revoke.' });
  expect(byId(serverChecks(exam(doc), launch(), { ...ctx, allowInsecureHttp: true, insecureHosts: 'loopback' })).https).toMatchObject({ status: 'error', message: 'Not https: revocation_endpoint http://ehr.example/revoke.' });
  expect(byId(serverChecks(exam(doc), launch(), { ...ctx, allowInsecureHttp: true, insecureReason: 'ALLOW_INSECURE_HTTP' })).https).toMatchObject({ status: 'ok', message: expect.stringMatching(/^http accepted for a local development EHR \(ALLOW_INSECURE_HTTP\): token_endpoint and revocation_endpoint are http\./) });
});

test('clock skew: ok to 60 s, ⚠ to 5 minutes, ✗ beyond; no Date header is ⚠', () => {
  const now = Date.parse('2026-11-26T10:00:00Z');
  const at = (offsetSeconds: number) => clockCheck(new Date(now - offsetSeconds * 1000).toUTCString(), now);
  expect([at(0), at(60), at(-60), at(61), at(300), at(-301), at(600)].map((c) => c.status)).toEqual(['ok', 'ok', 'ok', 'warning', 'warning', 'error', 'error']);
  expect(at(-301).message).toBe('Our clock is 301 s behind the server\'s (its Date header). Over 5 minutes, the server refuses our client assertions (their exp/iat) and ID tokens look expired or not yet valid.');
  expect(clockCheck(null, now).status).toBe('warning');
  expect(clockCheck('yesterday', now).status).toBe('warning');
});
