/**
 * Bulk Data export end to end: the sandbox's real authorization server issues system tokens, a bulk export
 * server fixture checks them, and the client runs kick-off, polling, downloads, retries, token renewal, the
 * cross-origin redirect, cancel, and resume after the CLI process is killed mid-download.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { parsePrivateKey, type ClientKey } from '../../../src/keys.js';
import { DiscoveryCache } from '../../../src/smart/discovery.js';
import { BackendTokenClient } from '../../../src/backend-services/token-client.js';
import { BulkExporter, type ExportEvent } from '../../../src/backend-services/bulk-export.js';
import { captureLogs } from '../../helpers/log-capture.js';
import { startBulkServer, type BulkServer } from '../../fixtures/bulk-server.js';
import { childEnv } from '../../helpers/child-env.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const PEM = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
let key: ClientKey;
let sandbox: Sandbox & { url: string };
let bulk: BulkServer;
const tokenRequests: Record<string, unknown>[] = [];

beforeAll(async () => {
  key = await parsePrivateKey(PEM);
  sandbox = await startSandbox({
    clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, grant_types: ['client_credentials'] }],
    accessTokenTtlSeconds: 2, // expires during the export
  });
  sandbox.events.on('token-request', (e: Record<string, unknown>) => tokenRequests.push(e));
  bulk = await startBulkServer(sandbox.provider, `${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
});
afterAll(async () => {
  await bulk?.close();
  await sandbox?.close();
});

function exporter(outDir: string, events: ExportEvent[] = [], signal?: AbortSignal) {
  const logs = captureLogs();
  const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 5000, allowInsecureHttp: true });
  const tokens = new BackendTokenClient({ discovery, logger: logs.logger, timeoutMs: 5000, allowInsecureHttp: true, skewSeconds: 1 });
  const client = { iss: bulk.base, clientId: 'backend-app', key, scope: 'system/*.rs' };
  const ex = new BulkExporter({
    fhirBaseUrl: bulk.base, outDir, logger: logs.logger, concurrency: 2, retryBaseMs: 100, pollDefaultSeconds: 1, ...(signal ? { signal } : {}),
    onEvent: (e) => events.push(e), token: (renew) => tokens.getToken(client, { forceRenew: Boolean(renew) }),
  });
  return { ex, logs };
}

test('a full export: slow server, an error file, a transient 5xx, a token that expires mid-export, a cross-origin 307', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 3, retryAfterSeconds: 1 });
  bulk.knobs.failOnce.add('Observation-1.ndjson');
  const out = mkdtempSync(join(tmpdir(), 'bulk-'));
  const events: ExportEvent[] = [];
  const tokensBefore = tokenRequests.length;
  const { ex, logs } = exporter(out, events);
  const summary = await ex.run({ level: 'system', types: ['Patient', 'Observation', 'Condition'], since: '2020-01-01T00:00:00Z' });

  expect(summary).toMatchObject({ files: 4, errorFiles: 1, errors: 1, resourcesByType: { Patient: 5, Observation: 1007, Condition: 3 }, resumed: false });
  expect(readdirSync(out).filter((f) => f.endsWith('.ndjson')).sort()).toEqual(['Condition-1.ndjson', 'Observation-1.ndjson', 'Observation-2.ndjson', 'Patient-1.ndjson', 'error-OperationOutcome-1.ndjson']);
  expect(readFileSync(join(out, 'Observation-1.ndjson'), 'utf8')).toBe(bulk.files['Observation-1.ndjson']);
  // kick-off parameters and headers
  const kick = bulk.requests.find((r) => r.path.endsWith('/$export'))!;
  expect(kick.status).toBe(202);
  // polling honoured Retry-After and showed X-Progress
  const polls = events.filter((e) => e.phase === 'polling');
  expect(polls).toHaveLength(3);
  expect(polls[0]).toMatchObject({ retryAfterSeconds: 1, progress: '25% done' });
  // the transient 503 was retried
  expect(events.some((e) => e.phase === 'retry' && e.what === 'download Observation-1.ndjson' && e.reason === 'status 503')).toBe(true);
  // the token (2 s) expired mid-export and was renewed in time: every request the server saw carried a valid one
  expect(tokenRequests.length - tokensBefore).toBeGreaterThanOrEqual(2);
  expect(bulk.requests.filter((r) => !r.tokenValid)).toEqual([]);
  // the redirect to another origin never carried the token
  expect(bulk.storageRequests).toHaveLength(1);
  expect(bulk.storageRequests[0]!.authorization).toBeUndefined();
  expect(logs.text()).not.toMatch(/Bearer [A-Za-z0-9_-]{20,}/);
}, 30000);

test('a token the server no longer accepts (401) is renewed once and the request repeated', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 1, retryAfterSeconds: 1, throttlePolls: 0 });
  const out = mkdtempSync(join(tmpdir(), 'bulk-'));
  const logs = captureLogs();
  const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 5000, allowInsecureHttp: true });
  const tokens = new BackendTokenClient({ discovery, logger: logs.logger, timeoutMs: 5000, allowInsecureHttp: true, skewSeconds: 0 });
  const client = { iss: bulk.base, clientId: 'backend-app', key, scope: 'system/*.rs' };
  let revoked = false;
  const ex = new BulkExporter({
    fhirBaseUrl: bulk.base, outDir: out, logger: logs.logger, pollDefaultSeconds: 1,
    onEvent: async (e) => {
      if (e.phase === 'polling' && !revoked) {
        revoked = true; // the EHR revokes the token while the export runs
        const t = await tokens.getToken(client);
        await (await sandbox.provider.ClientCredentials.find(t.accessToken))?.destroy();
      }
    },
    token: (renew) => tokens.getToken(client, { forceRenew: Boolean(renew) }),
  });
  const summary = await ex.run({ level: 'system' });
  expect(summary.files).toBe(4);
  expect(bulk.requests.some((r) => r.hasAuth && !r.tokenValid && r.status === 401)).toBe(true);
  expect(logs.find('bulk.token_renew').length).toBeGreaterThanOrEqual(1);
}, 20000);

test('cancel deletes the job on the server', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 100, retryAfterSeconds: 1 });
  const out = mkdtempSync(join(tmpdir(), 'bulk-'));
  const abort = new AbortController();
  const events: ExportEvent[] = [];
  const { ex } = exporter(out, events, abort.signal);
  const running = ex.run({ level: 'group', groupId: 'g1' }).catch((e: unknown) => e);
  while (!events.some((e) => e.phase === 'polling')) await new Promise((r) => setTimeout(r, 50));
  abort.abort(new Error('cancelled'));
  expect(await ex.cancel()).toBe(true);
  await running;
  const job = /jobs\/(.+)$/.exec(ex.statusUrl!)![1]!;
  expect(bulk.deleted).toContain(job);
  expect(bulk.requests.some((r) => r.path === '/fhir/Group/g1/$export')).toBe(true);
}, 20000);

test('429s on the status URL are respected, not hammered', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 0, throttlePolls: 2 });
  const out = mkdtempSync(join(tmpdir(), 'bulk-'));
  const events: ExportEvent[] = [];
  const started = Date.now();
  const { ex } = exporter(out, events);
  await ex.run({ level: 'patient' });
  const retries = events.filter((e) => e.phase === 'retry' && e.reason === 'status 429');
  expect(retries).toHaveLength(2);
  expect(retries.every((e) => e.phase === 'retry' && e.waitMs >= 1000)).toBe(true);
  expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
}, 20000);

test('the CLI: killed mid-download, then resumed without downloading complete files again', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 0, throttlePolls: 0 });
  bulk.knobs.slow.set('Observation-1.ndjson', 4000); // ~3 s for ~110 KB
  const out = mkdtempSync(join(tmpdir(), 'bulk-'));
  const keyFile = join(out, '..', `key-${Date.now()}.pem`);
  writeFileSync(keyFile, PEM, { mode: 0o600 });
  const args = ['--import', 'tsx', 'src/cli/main.ts', 'export', '--iss', bulk.base, '--client-id', 'backend-app', '--key', keyFile, '--out', out, '--concurrency', '1'];
  const runCli = (onLine?: (l: string, kill: () => void) => void) => new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv() });
    let text = '';
    const on = (d: Buffer) => {
      text += d;
      for (const l of d.toString().split('\n')) onLine?.(l, () => child.kill('SIGKILL'));
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => resolve({ code, out: text }));
  });
  const first = await runCli((l, kill) => { if (l.includes('downloaded Patient-1.ndjson')) setTimeout(kill, 500); });
  expect(first.code).toBeNull(); // killed
  expect(readdirSync(out)).toContain('Patient-1.ndjson');
  expect(readdirSync(out)).not.toContain('Observation-1.ndjson');
  bulk.knobs.slow.clear();
  const downloadsBefore = bulk.requests.filter((r) => r.path === '/fhir/files/Patient-1.ndjson').length;
  const second = await runCli();
  expect(second.code).toBe(0);
  expect(second.out).toMatch(/Export complete \(resumed\)/);
  expect(second.out).toMatch(/Observation\s+1007/);
  expect(bulk.requests.filter((r) => r.path === '/fhir/files/Patient-1.ndjson').length).toBe(downloadsBefore);
  expect(statSync(join(out, 'Observation-1.ndjson')).size).toBe(Buffer.byteLength(bulk.files['Observation-1.ndjson']!));
}, 60000);
