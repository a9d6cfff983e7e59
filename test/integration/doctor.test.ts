/**
 * `smart-bff doctor` as users run it (bin/smart-bff.js on the TypeScript source), against real servers: the
 * sandbox EHR (oidc-provider) with its SMART configuration changed per test through its `smartConfiguration`
 * option (no S256, RS256 only, v1 only, no jwks_uri, …), the real server entry point with its sandbox and a
 * backend registration (the server's environment), and small real HTTP servers for what the sandbox cannot be: a
 * JWKS URL without our key, a server whose Date header is ten minutes off. Each checklist is read from `--json`
 * (and the text output once); the exit code is 0, 1 or 2. No secret, token, assertion or private key ever
 * appears in any output.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { generateSigningKey } from '../../src/keys.js';
import { freePort } from '../helpers/net.js';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.js';
import { TEST_SESSION_SECRET } from '../helpers/bff.js';
import { childEnv } from '../helpers/child-env.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Check { id: string; status: 'ok' | 'warning' | 'error'; message: string; fix?: string; details?: string[]; causes?: string[] }
interface Group { registration: string; kind: string; iss: string; clientId: string; status: string; checks: Check[] }
interface Report { status: string; exitCode: number; problems: string[]; notes: string[]; registrations: Group[] }

let sandbox: Sandbox & { url: string };
let variant: (doc: Record<string, unknown>) => Record<string, unknown> = (doc) => doc;
let keysDir: string;
let keyFile: string;
let kid: string;
let publicJwk: Record<string, unknown>;
let otherKeyFile: string;
let otherJwk: Record<string, unknown>;
let fake: http.Server;
let fakeUrl: string;
const outputs: string[] = [];
const issued: string[] = [];
const assertions: string[] = [];
const SECRET = 'Zq8+w/e r%T-9s~ecret';

function run(args: string[], env: Record<string, string> = {}, stdin?: string) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, ['bin/smart-bff.js', ...args], {
      cwd: ROOT, stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: { ...childEnv(), SMART_BFF_FROM_SOURCE: '1', ...env },
    });
    if (stdin !== undefined) child.stdin!.end(stdin);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    child.on('exit', (code) => {
      outputs.push(out, err);
      resolve({ code, out, err });
    });
  });
}

/** doctor --json: the report, and the exit code. */
async function doctor(args: string[], env: Record<string, string> = {}, stdin?: string): Promise<{ code: number | null; report: Report; err: string }> {
  const r = await run(['doctor', '--json', ...args], env, stdin);
  let report: Report;
  try {
    report = JSON.parse(r.out) as Report;
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\n${r.out}\n${r.err}`);
  }
  return { code: r.code, report, err: r.err };
}

const launchArgs = (extra: string[] = []) => ['--iss', sandbox.fhirBaseUrl, '--client-id', 'smart-bff-dev', ...extra];
const backendArgs = (extra: string[] = []) => ['--backend', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', keyFile, ...extra];
const check = (report: Report, id: string, group = 0): Check | undefined => report.registrations[group]!.checks.find((c) => c.id === id);
const statuses = (report: Report, group = 0) => Object.fromEntries(report.registrations[group]!.checks.map((c) => [c.id, c.status]));
const notOk = (report: Report) => report.registrations.flatMap((g) => g.checks.filter((c) => c.status !== 'ok').map((c) => `${g.registration}/${c.id}: ${c.status}: ${c.message}`));

function withVariant(v: (doc: Record<string, unknown>) => Record<string, unknown>): void {
  variant = v;
}
afterEach(() => withVariant((doc) => doc));

beforeAll(async () => {
  keysDir = mkdtempSync(join(tmpdir(), 'doctor-keys-'));
  const gen = await run(['keys', 'generate', '--alg', 'ES384', '--out', keysDir]);
  expect(gen.code).toBe(0);
  keyFile = join(keysDir, readdirSync(keysDir).find((f) => f.endsWith('.private.pem'))!);
  publicJwk = JSON.parse(readFileSync(join(keysDir, readdirSync(keysDir).find((f) => f.endsWith('.jwks.json'))!), 'utf8')).keys[0];
  kid = publicJwk.kid as string;
  // A key the sandbox does not know (not in its keys directory).
  const other = await generateSigningKey('ES384', mkdtempSync(join(tmpdir(), 'doctor-other-')));
  otherKeyFile = other.privateKeyPath;
  otherJwk = other.publicJwk as Record<string, unknown>;

  sandbox = await startSandbox({
    clients: [{ client_id: 'smart-bff-dev', token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1:9/callback'], launch_uri: 'http://127.0.0.1:9/launch' }],
    keysDir,
    smartConfiguration: (doc) => variant(doc),
  });
  sandbox.events.on('token-response', (e: { access_token?: string }) => { if (e.access_token) issued.push(e.access_token); });
  sandbox.events.on('token-request', (e: { client_assertion?: string }) => { if (e.client_assertion) assertions.push(e.client_assertion); });

  // JWKS URLs (ours, another key only, another key under our kid) and a FHIR server whose clock is off.
  fake = http.createServer(async (req, res) => {
    const url = req.url ?? '';
    const json = (body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(200, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (url === '/jwks/ours.json') return json({ keys: [otherJwk, publicJwk] });
    if (url === '/jwks/other.json') return json({ keys: [otherJwk] });
    if (url === '/jwks/impostor.json') return json({ keys: [{ ...otherJwk, kid }] });
    const skew = /^\/skew\/(-?\d+)\/fhir\/\.well-known\/smart-configuration$/.exec(url);
    if (skew) {
      const doc = await (await fetch(`${sandbox.fhirBaseUrl}/.well-known/smart-configuration`)).json();
      // The server's Date header lies by this many seconds.
      return json(doc, { date: new Date(Date.now() + Number(skew[1]) * 1000).toUTCString() });
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
  fakeUrl = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
}, 60000);

afterAll(async () => {
  await sandbox?.close();
  await new Promise((resolve) => fake?.close(resolve));
});

describe('against the sandbox: every check ✓', () => {
  test('a launch registration (the public client smart-bff-dev): exit 0, and the text output says ✓ on every line', async () => {
    const { code, report } = await doctor(launchArgs(['--public-url', 'http://127.0.0.1:3000']));
    expect(notOk(report)).toEqual([]);
    expect(code).toBe(0);
    expect(report).toMatchObject({ status: 'ok', exitCode: 0, registrations: [{ kind: 'launch', iss: sandbox.fhirBaseUrl, clientId: 'smart-bff-dev', status: 'ok' }] });
    expect(Object.keys(statuses(report))).toEqual(['smart_configuration', 'https', 'pkce_s256', 'capabilities', 'auth_method', 'scopes', 'refresh', 'openid', 'clock_skew', 'register_uris']);
    expect(check(report, 'smart_configuration')!.message).toContain(`${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
    expect(check(report, 'https')!.message).toMatch(/^http accepted for a local development EHR \(a FHIR server on this machine/);
    expect(check(report, 'capabilities')!.message).toMatch(/launch-ehr, launch-standalone, client-public, context-ehr-patient/);
    expect(check(report, 'scopes')!.message).toContain('EHR launch: launch openid fhirUser online_access patient/*.rs; standalone launch: launch/patient openid fhirUser online_access patient/*.rs');
    expect(check(report, 'register_uris')!.message).toContain('launch URI http://127.0.0.1:3000/launch, redirect URI http://127.0.0.1:3000/callback');

    const text = await run(['doctor', ...launchArgs(['--public-url', 'http://127.0.0.1:3000'])]);
    expect(text.code).toBe(0);
    const lines = text.out.split('\n').filter((l) => /^ {2}[✓⚠✗] /.test(l));
    expect(lines).toHaveLength(10);
    expect(lines.every((l) => l.startsWith('  ✓ '))).toBe(true);
    expect(text.out).toContain('  ✓ PKCE S256: Supported');
    expect(text.out).not.toContain('\x1b['); // no colour: not a terminal
    expect(text.out).toMatch(/^1 registration checked: ✓ 10 ok, ⚠ 0 warnings, ✗ 0 errors — all good \(exit 0\)\.$/m);
  }, 60000);

  test('backend services (sandbox-backend, a key from `keys generate` in the sandbox\'s keys directory): a real token request, granted; exit 0', async () => {
    const before = issued.length;
    const { code, report } = await doctor(backendArgs(['--scope', 'system/Patient.rs system/Observation.rs', '--jwks-url', `${fakeUrl}/jwks/ours.json`]));
    expect(notOk(report)).toEqual([]);
    expect(code).toBe(0);
    expect(Object.keys(statuses(report))).toEqual(['smart_configuration', 'https', 'capabilities', 'auth_method', 'signing_alg', 'scopes', 'clock_skew', 'jwks_url', 'token_request']);
    expect(issued.length).toBe(before + 1); // one real token request
    expect(check(report, 'token_request')!.message).toMatch(/^A real token request .* at http:\/\/127\.0\.0\.1:\d+\/sandbox\/auth\/token was granted: scope system\/Patient\.rs system\/Observation\.rs, valid for 3\d{3} s\.$/);
    expect(check(report, 'jwks_url')!.message).toContain(`holds our key ${kid} (ES384), the same public key`);
  }, 60000);
});

describe('the server\'s environment', () => {
  let server: ServerProcess;
  let env: Record<string, string>;
  beforeAll(async () => {
    const port = await freePort();
    env = {
      NODE_ENV: 'test', PORT: String(port), HOST: '127.0.0.1', PUBLIC_URL: `http://127.0.0.1:${port}`, SESSION_SECRET: TEST_SESSION_SECRET,
      ALLOW_INSECURE_HTTP: '1', SANDBOX_KEYS_DIR: keysDir,
      SMART_BACKEND_ISS: `http://127.0.0.1:${port}/sandbox/fhir`, SMART_BACKEND_CLIENT_ID: 'sandbox-backend', SMART_BACKEND_KEY_FILE: keyFile,
    };
    server = await startServerProcess(env, port);
  }, 60000);
  afterAll(async () => {
    await server?.stop();
  });

  test('loaded as the server loads it: the sandbox\'s launch registration and the backend registration, every check ✓ (the key at PUBLIC_URL/.well-known/jwks.json, a real token); exit 0', async () => {
    const { code, report } = await doctor([], env);
    expect(notOk(report)).toEqual([]);
    expect(code).toBe(0);
    expect(report.registrations.map((g) => [g.kind, g.registration, g.clientId, g.iss])).toEqual([
      ['launch', 'sandbox', 'smart-bff-dev', `${server.url}/sandbox/fhir`],
      ['backend', 'default', 'sandbox-backend', `${server.url}/sandbox/fhir`],
    ]);
    expect(check(report, 'https')!.message).toContain('(the built-in sandbox, development only)');
    expect(check(report, 'register_uris')!.message).toContain(`launch URI ${server.url}/launch, redirect URI ${server.url}/callback`);
    expect(check(report, 'jwks_url', 1)!.message).toContain(`This server's JWKS (PUBLIC_URL/.well-known/jwks.json, where an EHR registered with the JWKS URL fetches our keys), ${server.url}/.well-known/jwks.json: holds our key ${kid}`);
    expect(check(report, 'token_request', 1)!.status).toBe('ok');
  }, 60000);

  test('--registration picks one; a configuration the server would refuse is exit 2 with every problem, nothing else checked', async () => {
    const one = await doctor(['--registration', 'default'], env);
    expect(one.report.registrations.map((g) => g.registration)).toEqual(['default']);
    const none = await doctor(['--iss', 'https://ehr.example/r4'], env);
    expect(none.code).toBe(2); // nothing checked fails a pipeline
    expect(none.report.notes).toEqual(expect.arrayContaining([expect.stringMatching(/^No registration serves https:\/\/ehr\.example\/r4/)]));
    const refused = await doctor([], { NODE_ENV: 'production', PUBLIC_URL: 'http://app.example', SMART_ISS: 'https://ehr.example/r4' });
    expect(refused.code).toBe(2);
    expect(refused.report.registrations).toEqual([]);
    expect(refused.report.problems).toEqual(expect.arrayContaining([
      expect.stringMatching(/^PUBLIC_URL: must be https in production/),
      expect.stringMatching(/^SESSION_SECRET: required in production/),
      expect.stringMatching(/^SMART_CLIENT_ID: required when SMART_ISS is set/),
    ]));
  }, 60000);
});

describe('what the EHR advertises', () => {
  test('no S256 in code_challenge_methods_supported: ✗ PKCE with the fix, exit 2', async () => {
    withVariant((doc) => ({ ...doc, code_challenge_methods_supported: ['plain'] }));
    const { code, report } = await doctor(launchArgs());
    expect(code).toBe(2);
    expect(check(report, 'pkce_s256')).toEqual({
      id: 'pkce_s256', status: 'error', message: 'code_challenge_methods_supported does not include S256 (it lists: plain).',
      fix: expect.stringMatching(/^SMART App Launch 2 requires PKCE with S256, and smart-bff never falls back to plain/),
    });
    // Its own line: the configuration is otherwise found.
    expect(check(report, 'smart_configuration')!.status).toBe('ok');
  }, 60000);

  test('only RS256 advertised for client assertions, our key is ES384: ✗ signing algorithm (with the fix), exit 2', async () => {
    withVariant((doc) => ({ ...doc, token_endpoint_auth_signing_alg_values_supported: ['RS256'] }));
    const { code, report } = await doctor(backendArgs());
    expect(code).toBe(2);
    expect(check(report, 'signing_alg')).toMatchObject({
      status: 'error',
      message: expect.stringMatching(/^Our client assertions are signed with ES384 \(key .*\), which is not among the algorithms the server advertises for them \(token_endpoint_auth_signing_alg_values_supported: RS256\)\.$/),
      fix: expect.stringContaining('The server advertises none of SMART\'s algorithms (RS384, ES384)'),
    });
  }, 60000);

  test('client authentication not advertised: client_secret_basic where only client_secret_post is: ✗ with the setting to use', async () => {
    withVariant((doc) => ({ ...doc, token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_post'] }));
    const { code, report } = await doctor(launchArgs(['--secret-env', 'DOCTOR_SECRET', '--launch-mode', 'ehr']), { DOCTOR_SECRET: SECRET });
    expect(code).toBe(2);
    expect(check(report, 'auth_method')).toMatchObject({ status: 'error', fix: 'Set SMART_CLIENT_AUTH_METHOD=client_secret_post, or check the client type registered at the EHR.' });
  }, 60000);

  test('permission-v1 only: ⚠ scopes, listing what is converted, narrowed and left out; exit 1', async () => {
    withVariant((doc) => ({ ...doc, capabilities: (doc.capabilities as string[]).filter((c) => c !== 'permission-v2') }));
    const scope = 'openid fhirUser online_access patient/*.rs patient/Observation.crs user/Practitioner.r patient/Condition.rs?category=problem-list-item';
    const { code, report } = await doctor(launchArgs(['--scope', scope, '--launch-mode', 'ehr']));
    expect(notOk(report)).toEqual([expect.stringMatching(/^command line\/scopes: warning: /)]);
    expect(code).toBe(1);
    const c = check(report, 'scopes')!;
    expect(c.message).toMatch(/^The server speaks SMART v1 scopes only \(permission-v1, not permission-v2\): 3 configured scopes are narrowed or left out \(never widened\)\. Asked for: EHR launch: launch openid fhirUser online_access patient\/\*\.read patient\/Observation\.read\.$/);
    expect(c.details).toEqual([
      'converted exactly: patient/*.rs → patient/*.read',
      expect.stringMatching(/^patient\/Observation\.crs is narrowed to patient\/Observation\.read: /),
      expect.stringMatching(/^user\/Practitioner\.r is not requested: /),
      expect.stringMatching(/^patient\/Condition\.rs\?category=problem-list-item is not requested: .*no filters/),
    ]);
    expect(c.fix).toMatch(/ask the EHR to enable SMART v2 scopes \(permission-v2\)/);
  }, 60000);

  test('no jwks_uri while openid is asked for: ⚠ openid fhirUser will be dropped; exit 1', async () => {
    withVariant(({ jwks_uri: _jwks, ...doc }) => doc);
    const { code, report } = await doctor(launchArgs());
    expect(notOk(report)).toEqual([expect.stringMatching(/^command line\/openid: warning: The SMART configuration has no jwks_uri, so openid and fhirUser will be dropped/)]);
    expect(code).toBe(1);
    expect(check(report, 'scopes')!.message).toContain('EHR launch: launch online_access patient/*.rs;');
  }, 60000);

  test('neither online_access nor offline_access: ⚠ no refresh token; exit 1', async () => {
    const { code, report } = await doctor(launchArgs(['--scope', 'openid fhirUser patient/*.rs']));
    expect(notOk(report)).toEqual([expect.stringMatching(/^command line\/refresh: warning: Neither online_access nor offline_access is requested \(EHR launch, standalone launch\): no refresh token.*Oracle Health/)]);
    expect(code).toBe(1);
    expect(check(report, 'refresh')!.fix).toMatch(/^Add online_access \(or offline_access\) to --scope/);
  }, 60000);

  test('a capability of the launch modes we use not advertised: ⚠ naming it; --launch-mode ehr no longer needs it', async () => {
    withVariant((doc) => ({ ...doc, capabilities: (doc.capabilities as string[]).filter((c) => c !== 'launch-standalone' && c !== 'context-standalone-patient') }));
    const both = await doctor(launchArgs());
    expect(both.code).toBe(1);
    expect(check(both.report, 'capabilities')).toMatchObject({
      status: 'warning',
      message: 'The server does not advertise launch-standalone (standalone launch (/login)), context-standalone-patient (the patient context of a standalone launch (patient/ scopes)).',
      fix: expect.stringContaining('--launch-mode ehr if the app is never started with a standalone launch'),
    });
    const ehr = await doctor(launchArgs(['--launch-mode', 'ehr']));
    expect(notOk(ehr.report)).toEqual([]);
    expect(ehr.code).toBe(0);
  }, 60000);

  test('an endpoint on another machine over http: ✗ https; a missing token_endpoint: ✗ SMART configuration naming it', async () => {
    withVariant((doc) => ({ ...doc, revocation_endpoint: 'http://ehr.example.invalid/revoke' }));
    const insecure = await doctor(launchArgs());
    expect(insecure.code).toBe(2);
    expect(check(insecure.report, 'https')).toMatchObject({ status: 'error', message: 'Not https: revocation_endpoint http://ehr.example.invalid/revoke.' });
    withVariant(({ token_endpoint: _t, ...doc }) => doc);
    const missing = await doctor(launchArgs());
    expect(missing.code).toBe(2);
    expect(check(missing.report, 'smart_configuration')).toMatchObject({
      status: 'error', message: `The SMART configuration at ${sandbox.fhirBaseUrl}/.well-known/smart-configuration cannot be used: token_endpoint is missing.`,
    });
    const nowhere = await doctor(['--iss', `${sandbox.url}/no-fhir-here`, '--client-id', 'smart-bff-dev']);
    expect(nowhere.code).toBe(2);
    expect(check(nowhere.report, 'smart_configuration')).toMatchObject({ status: 'error', message: expect.stringMatching(/answered 404/), fix: expect.stringMatching(/tenant or version segment/) });
  }, 60000);
});

describe('our keys, our clock, our client', () => {
  test('a JWKS URL without our kid: ✗; one with another public key under our kid: ✗; exit 2', async () => {
    const missing = await doctor(backendArgs(['--jwks-url', `${fakeUrl}/jwks/other.json`]));
    expect(missing.code).toBe(2);
    expect(check(missing.report, 'jwks_url')).toMatchObject({
      status: 'error', message: `The JWKS URL registered at the EHR (--jwks-url), ${fakeUrl}/jwks/other.json: does not hold our key ${kid} (ES384); it holds ${otherJwk.kid as string}.`,
    });
    const impostor = await doctor(backendArgs(['--jwks-url', `${fakeUrl}/jwks/impostor.json`]));
    expect(check(impostor.report, 'jwks_url')).toMatchObject({ status: 'error', message: expect.stringContaining(`holds a key with our kid ${kid}, but another public key`) });
    const unreachable = await doctor(backendArgs(['--jwks-url', `${fakeUrl}/jwks/gone.json`]));
    expect(check(unreachable.report, 'jwks_url')).toMatchObject({ status: 'error', message: expect.stringContaining('answered 404') });
  }, 60000);

  test('a server whose clock is 10 minutes off (its Date header): ✗ clock skew, exit 2; 2 minutes: ⚠', async () => {
    const ten = await doctor(['--iss', `${fakeUrl}/skew/600/fhir`, '--client-id', 'smart-bff-dev']);
    expect(notOk(ten.report)).toEqual([expect.stringMatching(/^command line\/clock_skew: error: Our clock is (599|600|601) s behind the server's \(its Date header\)\. Over 5 minutes, the server refuses our client assertions/)]);
    expect(ten.code).toBe(2);
    const two = await doctor(['--iss', `${fakeUrl}/skew/-120/fhir`, '--client-id', 'smart-bff-dev']);
    expect(notOk(two.report)).toEqual([expect.stringMatching(/^command line\/clock_skew: warning: Our clock is (119|120|121) s ahead of the server's/)]);
    expect(two.code).toBe(1);
  }, 60000);

  test('the URIs to register: a PUBLIC_URL on another machine over http is ✗ (EHRs refuse it); --skip leaves checks out, and the token request is not made', async () => {
    const http = await doctor(launchArgs(['--public-url', 'http://my-app.example']));
    expect(http.code).toBe(2);
    expect(check(http.report, 'register_uris')).toMatchObject({ status: 'error', message: expect.stringMatching(/^PUBLIC_URL is not https \(http:\/\/my-app\.example\)/) });
    const https = await doctor(launchArgs(['--public-url', 'https://my-app.example/']));
    expect(check(https.report, 'register_uris')).toEqual({ id: 'register_uris', status: 'ok', message: 'Register at the EHR, exactly: launch URI https://my-app.example/launch, redirect URI https://my-app.example/callback.' });
    const before = assertions.length;
    const skipped = await doctor(['--backend', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', otherKeyFile, '--skip', 'token_request', 'clock_skew']);
    expect(skipped.code).toBe(0);
    expect(Object.keys(statuses(skipped.report))).not.toEqual(expect.arrayContaining(['token_request']));
    expect(Object.keys(statuses(skipped.report))).not.toEqual(expect.arrayContaining(['clock_skew']));
    expect(skipped.report.notes).toContain('Not checked (--skip): token_request, clock_skew.');
    expect(assertions.length).toBe(before);
  }, 60000);

  test('a backend client the server refuses (invalid_client: a key it does not know): ✗ token request with the likely causes, exit 2', async () => {
    const { code, report } = await doctor(['--backend', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', otherKeyFile]);
    expect(code).toBe(2);
    expect(notOk(report)).toEqual([expect.stringMatching(/^command line\/token_request: error: The token endpoint refused the request: invalid_client \(status 401\)$/)]);
    const c = check(report, 'token_request')!;
    expect(c.causes).toEqual(expect.arrayContaining([
      expect.stringMatching(/^Unknown client: is sandbox-backend the client id registered/),
      `Key not registered: the assertion is signed with kid ${otherJwk.kid as string} (ES384); that kid must be in the JWKS registered with the EHR or served at its registered JWKS URL.`,
      expect.stringMatching(new RegExp(`^The server says: The assertion's kid ${otherJwk.kid as string} is not among the public keys in`)),
    ]));
    expect(c.fix).toMatch(/invalid_client: what to check first/);
    const text = await run(['doctor', '--backend', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', otherKeyFile]);
    expect(text.code).toBe(2);
    expect(text.out).toMatch(/ {2}✗ token request: The token endpoint refused the request: invalid_client \(status 401\)\n {6}likely causes:\n {8}- /);
  }, 60000);

  test('a confidential symmetric client: the secret from --secret-env is never shown; its Basic encoding is described by kinds of character', async () => {
    const { code, report } = await doctor(launchArgs(['--secret-env', 'DOCTOR_SECRET', '--launch-mode', 'ehr']), { DOCTOR_SECRET: SECRET });
    expect(code).toBe(1);
    expect(notOk(report)).toEqual([expect.stringMatching(/^command line\/basic_encoding: warning: The client_secret_basic encoding may not be the one this server expects: the secret contains '%', '\+' and a space\./)]);
    expect(check(report, 'basic_encoding')!.fix).toBe('Try SMART_CLIENT_AUTH_ENCODING=raw, or SMART_CLIENT_AUTH_METHOD=client_secret_post.');
    expect(report.registrations[0]!.status).toBe('warning');
    // From a pipe: the same secret (its line break is not part of it); a secret of ordinary characters cannot be
    // encoded differently, and the line says so.
    const piped = await doctor(launchArgs(['--secret-stdin', '--launch-mode', 'ehr']), {}, `${SECRET}\n`);
    expect(check(piped.report, 'basic_encoding')!.message).toBe(check(report, 'basic_encoding')!.message);
    const plain = await doctor(launchArgs(['--secret-stdin', '--launch-mode', 'ehr']), {}, 'plainSecret-123_abc.~\n');
    expect(check(plain.report, 'basic_encoding')).toMatchObject({ status: 'ok', message: expect.stringMatching(/^The client id and secret are sent as the same bytes in both client_secret_basic encodings/) });
    expect(plain.code).toBe(0);
  }, 60000);

  test('colour on a terminal only, and not with NO_COLOR or --no-color (the symbols and words read the same without it)', async () => {
    // `script` (util-linux) gives the command a real pseudo-terminal.
    const runScript = (args: string[], env: Record<string, string>) => new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn('script', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...childEnv(), TERM: 'xterm', SMART_BFF_FROM_SOURCE: '1', ...env } });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (out += d));
      child.on('exit', (code) => { outputs.push(out); resolve({ code, out }); });
    });
    const cmd = (extra = '') => ['-e', '-q', '-c', `${process.execPath} bin/smart-bff.js doctor --iss ${sandbox.fhirBaseUrl} --client-id smart-bff-dev --scope 'openid fhirUser patient/*.rs' ${extra}`, '/dev/null'];
    const tty = await runScript(cmd(), {});
    expect(tty.code).toBe(1);
    expect(tty.out).toContain('\x1b[32m✓\x1b[0m SMART configuration: Found at');
    expect(tty.out).toContain('\x1b[33m⚠\x1b[0m refresh token: Neither online_access nor offline_access');
    for (const plain of [await runScript(cmd(), { NO_COLOR: '1' }), await runScript(cmd('--no-color'), {})]) {
      expect(plain.code).toBe(1);
      expect(plain.out).not.toContain('\x1b[');
      expect(plain.out).toContain('⚠ refresh token: Neither online_access nor offline_access');
    }
  }, 60000);

  test('bad usage is exit 2 with one line on stderr', async () => {
    const noIss = await run(['doctor', '--client-id', 'x']);
    expect([noIss.code, noIss.err]).toEqual([2, 'error: --client-id needs --iss (the FHIR base URL of the EHR)\n']);
    const unset = await run(['doctor', ...launchArgs(['--secret-env', 'NOT_SET_ANYWHERE'])]);
    expect([unset.code, unset.err]).toEqual([2, 'error: --secret-env NOT_SET_ANYWHERE: that environment variable is not set (or empty)\n']);
    const unknownCheck = await run(['doctor', '--skip', 'nothing']);
    expect(unknownCheck.code).toBe(2);
  }, 60000);
});

test('no secret, token, client assertion or private key in any output (stdout and stderr of every run above)', () => {
  expect(outputs.length).toBeGreaterThan(20);
  expect(issued.length).toBeGreaterThan(1);
  expect(assertions.length).toBeGreaterThan(1);
  const all = outputs.join('\n');
  const privateKeyBody = readFileSync(keyFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'));
  const otherBody = readFileSync(otherKeyFile, 'utf8').split('\n').filter((l) => l && !l.startsWith('-----'));
  for (const secret of [SECRET, 'plainSecret-123_abc.~', encodeURIComponent(SECRET), ...issued, ...assertions, ...privateKeyBody, ...otherBody]) expect(all).not.toContain(secret);
  expect(all).not.toContain('PRIVATE KEY');
});
