/**
 * The README's backend-services path on the real server entry point (src/server.ts as a child process) with the
 * sandbox and no backend configuration: `smart-bff keys generate --out <keys dir>` → `token`/`export` with the
 * sandbox's client `sandbox-backend`, and `/api/bulk-data` exporting from the sandbox through the backend
 * registration named `sandbox` that the server makes at startup.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sampleResources } from '../../../src/sandbox/sample-data.js';
import { freePort } from '../../helpers/net.js';
import { json } from '../../helpers/json.js';
import { startServerProcess, type ServerProcess } from '../../helpers/server-process.js';
import { childEnv } from '../../helpers/child-env.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const ADMIN = 'admin-token-0123456789-abcdefghij';
let server: ServerProcess;
/** The users' working directory: the README's commands write ./keys and ./export here; the server reads ./keys. */
let workDir: string;
let keysDir: string;

function cli(args: string[]) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, ['bin/smart-bff.js', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...childEnv(), SMART_BFF_FROM_SOURCE: '1' } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'server-work-'));
  keysDir = join(workDir, 'keys');
  const port = await freePort();
  server = await startServerProcess({
    PUBLIC_URL: `http://127.0.0.1:${port}`, ADMIN_TOKEN: ADMIN, BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'server-bulk-')), SANDBOX_KEYS_DIR: keysDir,
  }, port);
}, 60000);
afterAll(() => server?.stop());

const expected = () => {
  const out: Record<string, number> = {};
  for (const r of sampleResources()) out[r.resourceType] = (out[r.resourceType] ?? 0) + 1;
  return out;
};

test('keys generate into the sandbox\'s keys directory, then token and export with sandbox-backend', async () => {
  expect((await cli(['keys', 'generate', '--out', keysDir])).code).toBe(0);
  const key = join(keysDir, readdirSync(keysDir).find((f) => f.endsWith('.private.pem'))!);
  const iss = `${server.url}/sandbox/fhir`;
  const token = await cli(['token', '--iss', iss, '--client-id', 'sandbox-backend', '--key', key]);
  expect([token.code, token.err]).toEqual([0, expect.stringContaining('scope:   system/*.rs')]);
  const out = join(mkdtempSync(join(tmpdir(), 'server-export-')), 'export');
  const exp = await cli(['export', '--iss', iss, '--client-id', 'sandbox-backend', '--key', key, '--group', 'sandbox-cohort', '--type', 'Patient', '--out', out]);
  expect([exp.code, exp.err]).toEqual([0, expect.any(String)]);
  expect(readFileSync(join(out, 'Patient-1.ndjson'), 'utf8').trim().split('\n')).toHaveLength(3);
}, 60000);

test('/api/bulk-data exports from the sandbox out of the box (the registration named sandbox)', async () => {
  const api = (path: string, init: RequestInit = {}) => fetch(`${server.url}/api/bulk-data${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } });
  const res = await api('/exports', { method: 'POST', body: JSON.stringify({ registration: 'sandbox', level: 'system' }) });
  expect(res.status).toBe(202);
  const { id } = await json(res);
  let job: { status: string; summary?: { resourcesByType: Record<string, number>; deletedOnServer: boolean }; files?: { url: string; name: string }[]; error?: unknown } = { status: 'running' };
  for (let i = 0; i < 100 && job.status === 'running'; i++) {
    await new Promise((r) => setTimeout(r, 300));
    job = await json(await api(`/exports/${id}`));
  }
  expect([job.status, job.error]).toEqual(['complete', undefined]);
  expect(job.summary!.resourcesByType).toEqual(expected());
  expect(job.summary!.deletedOnServer).toBe(true);
  const patients = await api(`/exports/${id}/files/Patient-1.ndjson`);
  expect((await patients.text()).trim().split('\n')).toHaveLength(expected().Patient!);

  // The sandbox's pages say how: the home page, and the backend clients (the server's own is registered in-process).
  const home = await (await fetch(`${server.url}/sandbox/`)).text();
  expect(home).toContain('Backend services and Bulk Data');
  expect(home).toContain(`npx smart-bff keys generate --out ${keysDir}`);
  const page = await (await fetch(`${server.url}/sandbox/backend-services`)).text();
  expect(page).toContain('<code>sandbox-backend</code>');
  expect(page).toContain('<code>smart-bff-backend</code>');
}, 60000);

test('the README\'s backend-services commands run as written against the sandbox (npx smart-bff → the CLI, localhost:3000 → this server)', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Backend services and Bulk Data'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  expect(block).toContain('--client-id sandbox-backend');
  const script = block.replaceAll('npx smart-bff', `${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, 'bin', 'smart-bff.js'))}`).replaceAll('http://localhost:3000', server.url);
  const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: workDir, encoding: 'utf8', timeout: 90_000, env: { ...childEnv(), SMART_BFF_FROM_SOURCE: '1' } });
  expect([r.status, r.stderr]).toEqual([0, expect.any(String)]);
  const count = (dir: string, file: string) => readFileSync(join(workDir, dir, file), 'utf8').trim().split('\n').length;
  expect(count('export', 'Patient-1.ndjson')).toBe(expected().Patient);
  expect(count('export-group', 'Patient-1.ndjson')).toBe(3);
}, 120000);
