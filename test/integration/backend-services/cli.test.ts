/** The `smart-bff` command as users run it (bin/smart-bff.js): keys generate, token, and Ctrl-C during an export. */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { startBulkServer, type BulkServer } from '../../fixtures/bulk-server.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
let sandbox: Sandbox & { url: string };
let bulk: BulkServer;
let keyFile: string;
let kid: string;

function cli(args: string[], onOutput?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/smart-bff.js', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; onOutput?.(out + err, child); });
    child.stderr.on('data', (d) => { err += d; onOutput?.(out + err, child); });
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cli-keys-'));
  const gen = await cli(['keys', 'generate', '--alg', 'RS384', '--out', dir]);
  expect(gen.code).toBe(0);
  keyFile = join(dir, readdirSync(dir).find((f) => f.endsWith('.private.pem'))!);
  const jwks = JSON.parse(readFileSync(join(dir, readdirSync(dir).find((f) => f.endsWith('.jwks.json'))!), 'utf8'));
  kid = jwks.keys[0].kid;
  expect(gen.out).toContain(`Generated RS384 key ${kid}`);
  expect(gen.out).toContain('Paste into the EHR');
  expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  sandbox = await startSandbox({ clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks, grant_types: ['client_credentials'] }] });
  bulk = await startBulkServer(sandbox.provider, `${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
}, 60000);
afterAll(async () => {
  await bulk?.close();
  await sandbox?.close();
});

test('smart-bff token prints a token, its expiry and scope', async () => {
  const r = await cli(['token', '--iss', sandbox.fhirBaseUrl, '--client-id', 'backend-app', '--key', keyFile, '--scope', 'system/Patient.rs', '--json']);
  expect(r.code).toBe(0);
  const body = JSON.parse(r.out);
  expect(body).toMatchObject({ token_type: expect.stringMatching(/bearer/i), scope: 'system/Patient.rs' });
  const res = await fetch(`${sandbox.fhirBaseUrl}/Patient/${sandbox.patients[0]!.id}`, { headers: { authorization: `Bearer ${body.access_token}` } });
  expect(res.status).toBe(200);
}, 30000);

test('smart-bff token explains invalid_client and exits 1', async () => {
  const r = await cli(['token', '--iss', sandbox.fhirBaseUrl, '--client-id', 'no-such-client', '--key', keyFile]);
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/invalid_client/);
  expect(r.err).toMatch(/Unknown client: is no-such-client the client id registered/);
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
