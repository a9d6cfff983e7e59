/**
 * The `smart-bff` command as users run it (bin/smart-bff.js), always on the TypeScript source
 * (SMART_BFF_FROM_SOURCE=1: a stale dist/ can never be what these tests exercise): the README's path against
 * the sandbox (keys generate → token → export with sandbox-backend), permanent errors that fail at once, and
 * Ctrl-C during an export. Also the wrapper's choice between dist/ and src/.
 */
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { sampleResources } from '../../../src/sandbox/sample-data.js';
import { startBulkServer, type BulkServer } from '../../fixtures/bulk-server.js';
import { childEnv } from '../../helpers/child-env.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
let sandbox: Sandbox & { url: string };
let bulk: BulkServer;
let keysDir: string;
let keyFile: string;
let kid: string;
let genOut: string;
const tokenRequests: { client_id?: string }[] = [];

function run(bin: string, args: string[], onOutput?: (text: string, child: ReturnType<typeof spawn>) => void, env: Record<string, string> = { SMART_BFF_FROM_SOURCE: '1' }) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...childEnv(), ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; onOutput?.(out + err, child); });
    child.stderr.on('data', (d) => { err += d; onOutput?.(out + err, child); });
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}
const cli = (args: string[], onOutput?: (text: string, child: ReturnType<typeof spawn>) => void) => run('bin/smart-bff.js', args, onOutput);

beforeAll(async () => {
  keysDir = mkdtempSync(join(tmpdir(), 'cli-keys-'));
  const gen = await cli(['keys', 'generate', '--alg', 'RS384', '--out', keysDir]);
  expect(gen.code).toBe(0);
  genOut = gen.out;
  keyFile = join(keysDir, readdirSync(keysDir).find((f) => f.endsWith('.private.pem'))!);
  const jwks = JSON.parse(readFileSync(join(keysDir, readdirSync(keysDir).find((f) => f.endsWith('.jwks.json'))!), 'utf8'));
  kid = jwks.keys[0].kid;
  expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  sandbox = await startSandbox({
    clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks, grant_types: ['client_credentials'] }],
    keysDir, bulkExport: { delayMs: 1000 },
  });
  sandbox.events.on('token-request', (e: { client_id?: string }) => tokenRequests.push({ client_id: e.client_id })); // no secret values in failure output
  bulk = await startBulkServer(sandbox.provider, `${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
}, 60000);
afterAll(async () => {
  await bulk?.close();
  await sandbox?.close();
});

test('keys generate writes <alg>-<kid12>.private.pem (0600) and .jwks.json, and prints the next commands with the real path', () => {
  expect(readdirSync(keysDir).sort()).toEqual([`rs384-${kid.slice(0, 12)}.jwks.json`, `rs384-${kid.slice(0, 12)}.private.pem`]);
  expect(genOut).toContain(`Generated RS384 key ${kid}`);
  expect(genOut).toContain('Paste into the EHR');
  expect(genOut).toContain(`npx smart-bff token  --iss http://localhost:3000/sandbox/fhir --client-id sandbox-backend --key ${keyFile}`);
  expect(genOut).toContain(`npx smart-bff export --iss http://localhost:3000/sandbox/fhir --client-id sandbox-backend --key ${keyFile} --out ./export`);
});

test('smart-bff token with sandbox-backend and the generated key: a token that reads FHIR', async () => {
  const r = await cli(['token', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', keyFile, '--scope', 'system/Patient.rs', '--json']);
  expect(r.code).toBe(0);
  const body = JSON.parse(r.out);
  expect(body).toMatchObject({ token_type: expect.stringMatching(/bearer/i), scope: 'system/Patient.rs' });
  const res = await fetch(`${sandbox.fhirBaseUrl}/Patient/${sandbox.patients[0]!.id}`, { headers: { authorization: `Bearer ${body.access_token}` } });
  expect(res.status).toBe(200);
}, 30000);

test('smart-bff export against the sandbox: files on disk with the right resource counts, then the job deleted on the server', async () => {
  const out = join(mkdtempSync(join(tmpdir(), 'cli-export-')), 'export');
  const r = await cli(['export', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', keyFile, '--out', out]);
  expect([r.code, r.err]).toEqual([0, expect.stringMatching(/server working: \d+% done/)]);
  const expected: Record<string, number> = {};
  for (const res of sampleResources()) expected[res.resourceType] = (expected[res.resourceType] ?? 0) + 1;
  const onDisk: Record<string, number> = {};
  for (const f of readdirSync(out).filter((n) => n.endsWith('.ndjson'))) {
    for (const line of readFileSync(join(out, f), 'utf8').trim().split('\n')) {
      const type = JSON.parse(line).resourceType as string;
      expect(f.startsWith(`${type}-`)).toBe(true);
      onDisk[type] = (onDisk[type] ?? 0) + 1;
    }
  }
  expect(onDisk).toEqual(expected);
  expect(r.out).toMatch(new RegExp(`Observation\\s+${expected.Observation}`));
  expect(r.out).toContain('The job was deleted on the server');
  const statusUrl = /export started: (\S+)/.exec(r.err)![1]!;
  const token = JSON.parse((await cli(['token', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', keyFile, '--json'])).out).access_token;
  expect((await fetch(statusUrl, { headers: { authorization: `Bearer ${token}` } })).status).toBe(404);
}, 60000);

test('a key generated after the sandbox started is accepted at once (the keys directory is read at each token request)', async () => {
  const gen = await cli(['keys', 'generate', '--alg', 'ES384', '--out', keysDir]);
  expect(gen.code).toBe(0);
  const es = join(keysDir, readdirSync(keysDir).find((f) => f.startsWith('es384-') && f.endsWith('.private.pem'))!);
  const r = await cli(['token', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', es]);
  expect(r.code).toBe(0);
  expect(r.out.trim()).toMatch(/^\S{20,}$/);
}, 30000);

test('smart-bff token explains invalid_client and exits 1', async () => {
  const r = await cli(['token', '--iss', sandbox.fhirBaseUrl, '--client-id', 'no-such-client', '--key', keyFile]);
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/invalid_client/);
  expect(r.err).toMatch(/Unknown client: is no-such-client the client id registered/);
}, 30000);

test('regression: smart-bff export with an unregistered client fails at once with the likely causes (one token request, no retry)', async () => {
  const before = tokenRequests.length;
  const out = mkdtempSync(join(tmpdir(), 'cli-export-'));
  const r = await cli(['export', '--iss', sandbox.fhirBaseUrl, '--client-id', 'no-such-client', '--key', keyFile, '--out', out]);
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/^error: The token endpoint refused the request: invalid_client/m);
  expect(r.err).toMatch(/likely causes:\n {2}- Unknown client: is no-such-client/);
  expect(r.err).not.toMatch(/retrying/);
  expect(tokenRequests.slice(before)).toHaveLength(1);
}, 30000);

test('a key the sandbox does not know: the sandbox says which keys it has, and the CLI shows it', async () => {
  const other = mkdtempSync(join(tmpdir(), 'cli-other-'));
  expect((await cli(['keys', 'generate', '--out', other])).code).toBe(0);
  const r = await cli(['token', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', join(other, readdirSync(other).find((f) => f.endsWith('.pem'))!)]);
  expect(r.code).toBe(1);
  expect(r.err).toContain(`The server says: The assertion's kid`);
  expect(r.err).toContain(`is not among the public keys in ${keysDir} (`);
  expect(r.err).toContain(kid);
}, 30000);

test('--trusted-origin must be an origin', async () => {
  const r = await cli(['export', '--iss', sandbox.fhirBaseUrl, '--client-id', 'sandbox-backend', '--key', keyFile, '--out', mkdtempSync(join(tmpdir(), 'cli-')), '--trusted-origin', 'https://files.example.org/bucket']);
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/--trusted-origin \(or BULK_DATA_TRUSTED_ORIGINS\): an origin is scheme:\/\/host\[:port\] with no path.*\(use https:\/\/files\.example\.org\)/);
}, 30000);

test('Ctrl-C during an export deletes the job on the server', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 100, retryAfterSeconds: 1 });
  const out = mkdtempSync(join(tmpdir(), 'cli-export-'));
  let sent = false;
  const r = await cli(['export', '--iss', bulk.base, '--client-id', 'backend-app', '--key', keyFile, '--out', out], (text, child) => {
    if (!sent && text.includes('server working')) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  expect(r.code).toBe(130);
  expect(r.err).toMatch(/cancelling: deleting the export job on the server/);
  expect(bulk.deleted.length).toBe(1);
}, 30000);

test('bin/smart-bff.js: dist/ when it is current, src/ when dist/ is older than src/ in a git checkout, src/ with SMART_BFF_FROM_SOURCE=1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-bin-'));
  cpSync(join(ROOT, 'bin'), join(dir, 'bin'), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  mkdirSync(join(dir, '.git'));
  mkdirSync(join(dir, 'src', 'cli'), { recursive: true });
  mkdirSync(join(dir, 'dist', 'cli'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
  writeFileSync(join(dir, 'src', 'cli', 'main.ts'), 'const from: string = "source"; console.log(`ran the ${from}`);\n');
  writeFileSync(join(dir, 'dist', 'cli', 'main.js'), 'console.log("ran dist");\n');
  const bin = join(dir, 'bin', 'smart-bff.js');
  const at = (path: string, seconds: number) => utimesSync(path, seconds, seconds);
  at(join(dir, 'src', 'cli', 'main.ts'), 1_000_000);
  at(join(dir, 'dist', 'cli', 'main.js'), 2_000_000);
  expect((await run(bin, [], undefined, {})).out.trim()).toBe('ran dist');
  expect((await run(bin, [], undefined, { SMART_BFF_FROM_SOURCE: '1' })).out.trim()).toBe('ran the source');
  at(join(dir, 'src', 'cli', 'main.ts'), 3_000_000); // an edit after the last build
  const stale = await run(bin, [], undefined, {});
  expect(stale.out.trim()).toBe('ran the source');
  expect(stale.err).toMatch(/dist\/ is older than src\/ \(run `npm run build`\); running the source instead/);
}, 30000);
