/**
 * The Bulk Data client's rules, against the sandbox's real authorization server and the bulk export fixture
 * (with "object storage" on a second local server = another origin):
 * permanent token errors fail at once; 429 waits as asked without using up the retries; an overall deadline;
 * the token only to the FHIR origin and trusted origins; files verified, then the job deleted on the server;
 * resume only the same request.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { nonPublicAddress } from '../../../src/backend-services/file-url-guard.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { parsePrivateKey, type ClientKey } from '../../../src/keys.js';
import { DiscoveryCache } from '../../../src/smart/discovery.js';
import { BackendTokenClient, BackendTokenError } from '../../../src/backend-services/token-client.js';
import { BulkExporter, ExportError, type ExporterOptions, type ExportEvent, type ExportParameters } from '../../../src/backend-services/bulk-export.js';
import { captureLogs } from '../../helpers/log-capture.js';
import { startBulkServer, type BulkServer } from '../../fixtures/bulk-server.js';

const PEM = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
let key: ClientKey;
let sandbox: Sandbox & { url: string };
let bulk: BulkServer;
const tokenRequests: { client_id?: string; status: number }[] = [];

beforeAll(async () => {
  key = await parsePrivateKey(PEM);
  sandbox = await startSandbox({
    clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, grant_types: ['client_credentials'] }],
  });
  sandbox.events.on('token-request', (e: { client_id?: string; status: number }) => tokenRequests.push({ client_id: e.client_id, status: e.status })); // no secret values in failure output
  bulk = await startBulkServer(sandbox.provider, `${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
});
afterAll(async () => {
  await bulk?.close();
  await sandbox?.close();
});
beforeEach(() => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 0, retryAfterSeconds: 1, throttlePolls: 0, throttleRetryAfter: 1, requiresAccessToken: true, filesOnStorage: false });
  bulk.knobs.wrongCount.clear();
  bulk.knobs.failOnce.clear();
  bulk.knobs.slow.clear();
  bulk.knobs.urls.clear();
  bulk.knobs.redirectBase = undefined;
});

function exporter(opts: Partial<ExporterOptions> & { clientId?: string } = {}) {
  const logs = captureLogs();
  const events: ExportEvent[] = [];
  const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 5000, allowInsecureHttp: true });
  const tokens = new BackendTokenClient({ discovery, logger: logs.logger, timeoutMs: 5000, allowInsecureHttp: true });
  const client = { iss: bulk.base, clientId: opts.clientId ?? 'backend-app', key, scope: 'system/*.rs' };
  const outDir = opts.outDir ?? mkdtempSync(join(tmpdir(), 'bulk-safety-'));
  const ex = new BulkExporter({
    fhirBaseUrl: bulk.base, clientId: client.clientId, outDir, logger: logs.logger, concurrency: 2, retryBaseMs: 50, pollDefaultSeconds: 1,
    onEvent: (e) => events.push(e), token: (renew) => tokens.getToken(client, { forceRenew: Boolean(renew) }),
    ...opts,
  });
  return { ex, events, logs, outDir };
}
const jobOf = (ex: BulkExporter) => /jobs\/(.+)$/.exec(ex.statusUrl!)![1]!;
const SYSTEM: ExportParameters = { level: 'system' };

test('regression: an unregistered client (invalid_client) fails at once — one token request, no retry, the causes on the error', async () => {
  const before = tokenRequests.length;
  const requestsBefore = bulk.requests.length;
  const { ex, events } = exporter({ clientId: 'no-such-client' });
  const err = await ex.run(SYSTEM).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(BackendTokenError);
  expect((err as BackendTokenError).code).toBe('invalid_client');
  expect((err as BackendTokenError).causes.join('\n')).toMatch(/Unknown client: is no-such-client the client id registered/);
  expect(events.filter((e) => e.phase === 'retry')).toEqual([]);
  expect(tokenRequests.slice(before)).toHaveLength(1);
  expect(bulk.requests.length).toBe(requestsBefore); // nothing reached the FHIR server
});

test('429 on the status URL waits as long as the server asks and does not use up the error retries', async () => {
  Object.assign(bulk.knobs, { throttlePolls: 4, throttleRetryAfter: 1 });
  const { ex, events } = exporter({ maxRetries: 1 });
  const summary = await ex.run(SYSTEM);
  expect(summary.files).toBe(4);
  const throttled = events.filter((e) => e.phase === 'retry');
  expect(throttled).toHaveLength(4);
  expect(throttled.every((e) => e.phase === 'retry' && e.kind === 'throttled' && e.waitMs === 1000 && e.attempt === 0)).toBe(true);
});

test('past the deadline: a clear error saying so, at once, and the job is deleted on the server (kept with keep)', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 100, retryAfterSeconds: 3600 });
  const { ex, outDir } = exporter({ timeoutSeconds: 30, timeoutLabel: '--timeout 30 s' });
  const err = await ex.run(SYSTEM).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ExportError);
  expect((err as ExportError).code).toBe('export_timeout');
  expect((err as ExportError).message).toMatch(/did not finish within --timeout 30 s\. .*asks to wait 3600 s more, but the deadline \(--timeout 30 s\) is in \d+ s\. The job was deleted on the server/);
  expect(bulk.deleted).toContain(jobOf(ex));
  expect(JSON.parse(readFileSync(join(outDir, '.export-state.json'), 'utf8')).cancelled).toBe(true);

  // The same within a 429's wait, with keep: the job stays on the server for a later run.
  Object.assign(bulk.knobs, { pollsBeforeDone: 100, retryAfterSeconds: 1, throttlePolls: 1, throttleRetryAfter: 3600 });
  const kept = exporter({ timeoutSeconds: 30, keep: true });
  const err2 = await kept.ex.run(SYSTEM).catch((e: unknown) => e);
  expect((err2 as ExportError).code).toBe('export_timeout');
  expect((err2 as ExportError).message).toMatch(/left on the server \(keep\)/);
  expect(bulk.deleted).not.toContain(jobOf(kept.ex));
});

test('a manifest naming another origin for files that need the token stops before any download, naming the origin and the setting', async () => {
  Object.assign(bulk.knobs, { filesOnStorage: true });
  const storageOrigin = new URL(bulk.storageBase).origin;
  const filesBefore = bulk.requests.filter((r) => r.path.startsWith('/fhir/files/')).length;
  const storageBefore = bulk.storageRequests.length;
  const { ex, outDir } = exporter();
  const err = await ex.run(SYSTEM).catch((e: unknown) => e);
  expect((err as ExportError).code).toBe('untrusted_origin');
  expect((err as ExportError).message).toContain(storageOrigin);
  expect((err as ExportError).message).toContain('BULK_DATA_TRUSTED_ORIGINS (CLI: --trusted-origin)');
  expect(bulk.storageRequests.length).toBe(storageBefore); // the other origin never saw a request, let alone the token
  expect(bulk.requests.filter((r) => r.path.startsWith('/fhir/files/')).length).toBe(filesBefore);
  expect(bulk.deleted).not.toContain(jobOf(ex)); // left for a run with the setting fixed
  expect(readdirSync(outDir).filter((f) => f.endsWith('.ndjson'))).toEqual([]);
});

test('a trusted origin gets the token; a redirect to it still does not', async () => {
  Object.assign(bulk.knobs, { filesOnStorage: true });
  const storageOrigin = new URL(bulk.storageBase).origin;
  const storageBefore = bulk.storageRequests.length;
  const { ex } = exporter({ trustedOrigins: [storageOrigin] });
  const summary = await ex.run(SYSTEM);
  expect(summary.resourcesByType).toEqual({ Patient: 5, Observation: 1007, Condition: 3 });
  const seen = bulk.storageRequests.slice(storageBefore);
  const direct = seen.filter((r) => /Condition-1/.test(r.path));
  expect(direct).toHaveLength(1);
  expect(direct.every((r) => r.tokenValid)).toBe(true);
  const redirected = seen.filter((r) => r.path.endsWith('Observation-2.ndjson'));
  expect(redirected).toHaveLength(1);
  expect(redirected[0]!.authorization).toBeUndefined();
});

test('requiresAccessToken: false (pre-signed URLs): files from another origin, and the server\'s own, download without the token', async () => {
  Object.assign(bulk.knobs, { filesOnStorage: true, requiresAccessToken: false });
  const storageBefore = bulk.storageRequests.length;
  const filesBefore = bulk.requests.length;
  const { ex } = exporter();
  const summary = await ex.run(SYSTEM);
  expect(summary.files).toBe(4);
  expect(bulk.storageRequests.slice(storageBefore).length).toBe(2); // Condition-1, and Observation-2 through the 307
  expect(bulk.storageRequests.slice(storageBefore).every((r) => r.authorization === undefined)).toBe(true);
  const files = bulk.requests.slice(filesBefore).filter((r) => r.path.startsWith('/fhir/files/') || r.path.startsWith('/fhir/redirect/'));
  expect(files.length).toBeGreaterThan(0);
  expect(files.every((r) => !r.hasAuth)).toBe(true);
});

test('after every file is downloaded and verified the job is deleted on the server; keep leaves it', async () => {
  const { ex } = exporter();
  const summary = await ex.run(SYSTEM);
  expect(summary.deletedOnServer).toBe(true);
  expect(bulk.deleted).toContain(jobOf(ex));
  const kept = exporter({ keep: true });
  const s2 = await kept.ex.run(SYSTEM);
  expect(s2.deletedOnServer).toBe(false);
  expect(bulk.deleted).not.toContain(jobOf(kept.ex));
});

test('a file whose resources differ from the manifest count is downloaded again once, then the export fails and the job stays on the server', async () => {
  bulk.knobs.wrongCount.set('Patient-1.ndjson', 6);
  const before = bulk.requests.filter((r) => r.path === '/fhir/files/Patient-1.ndjson').length;
  const { ex, outDir } = exporter();
  const err = await ex.run(SYSTEM).catch((e: unknown) => e);
  expect((err as ExportError).code).toBe('verification_failed');
  expect((err as ExportError).message).toMatch(/Patient-1\.ndjson .* failed verification: it holds 5 resources, the manifest says 6/);
  expect(bulk.requests.filter((r) => r.path === '/fhir/files/Patient-1.ndjson').length - before).toBe(2);
  expect(bulk.deleted).not.toContain(jobOf(ex));
  expect(existsSync(join(outDir, 'Patient-1.ndjson'))).toBe(false);
  expect(existsSync(join(outDir, 'Patient-1.ndjson.part'))).toBe(false);
});

test('resume only the same request: another request is refused with how to start fresh; fresh discards the old job and files', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 100 });
  const abort = new AbortController();
  const first = exporter({ signal: abort.signal });
  const running = first.ex.run({ level: 'system', types: ['Patient'] }).catch((e: unknown) => e);
  while (!first.events.some((e) => e.phase === 'polling')) await new Promise((r) => setTimeout(r, 20));
  abort.abort(new Error('killed')); // as if the process died: the state stays in the directory
  await running;
  const oldJob = jobOf(first.ex);

  const other = exporter({ outDir: first.outDir });
  const err = await other.ex.run({ level: 'system', types: ['Observation'], since: '2026-01-01T00:00:00Z' }).catch((e: unknown) => e);
  expect((err as ExportError).code).toBe('resume_mismatch');
  expect((err as ExportError).message).toMatch(/unfinished export of a different request \(types: Patient → Observation; since: \(none\) → 2026-01-01T00:00:00\.000Z\)/);
  expect((err as ExportError).hint).toMatch(/another --out directory, or add --fresh/);
  expect(bulk.deleted).not.toContain(oldJob);

  Object.assign(bulk.knobs, { pollsBeforeDone: 0 });
  const fresh = exporter({ outDir: first.outDir, fresh: true });
  const summary = await fresh.ex.run({ level: 'system', types: ['Observation'] });
  expect(summary.resumed).toBe(false);
  expect(bulk.deleted).toContain(oldJob);
  expect(jobOf(fresh.ex)).not.toBe(oldJob);

  // A complete export in the directory is not silently redone either.
  const again = exporter({ outDir: first.outDir });
  expect(((await again.ex.run({ level: 'system', types: ['Observation'] }).catch((e: unknown) => e)) as ExportError).code).toBe('already_complete');
});

describe('L5 file URLs on non-public addresses or plain http (SSRF)', () => {
  test('a manifest naming a private, link-local or IPv4-mapped address, or plain http, is refused before anything is fetched, naming the origin and the setting', async () => {
    for (const [url, kind] of [
      ['http://10.255.255.1:9/c.ndjson', /private network address \(10\.0\.0\.0\/8\)/],
      ['https://169.254.169.254/latest/meta-data/c.ndjson', /link-local address/],
      ['https://[::ffff:a9fe:a9fe]/c.ndjson', /link-local address/],
      ['https://[fd12::1]/c.ndjson', /private network address \(fc00::\/7\)/],
      ['http://files.example.org/c.ndjson', /plain http/],
    ] as const) {
      Object.assign(bulk.knobs, { requiresAccessToken: false });
      bulk.knobs.urls.set('Condition-1.ndjson', url);
      const before = bulk.requests.filter((r) => r.path.includes('/files/')).length;
      const { ex, logs } = exporter();
      const err = await ex.run(SYSTEM).catch((e: unknown) => e) as ExportError;
      expect([url, err.code]).toEqual([url, 'file_url_refused']);
      expect(err.message).toMatch(kind);
      expect(err.message).toContain(`is on ${new URL(url).origin}`);
      expect(err.message).toContain('BULK_DATA_TRUSTED_ORIGINS');
      expect(bulk.requests.filter((r) => r.path.includes('/files/')).length).toBe(before); // nothing downloaded
      expect(logs.find('bulk.file_url_refused')).toHaveLength(1);
    }
  });

  // A real file host on a non-public address of this machine (a private or reserved interface address), when it has one.
  const own = Object.values(networkInterfaces()).flat().find((i) => i && !i.internal && nonPublicAddress(i.address) && !i.address.startsWith('fe80'));
  (own ? test : test.skip)(`a file host on a non-public address of this machine (${own?.address ?? 'none'}): refused, directly and as a redirect target, unless its origin is trusted`, async () => {
    const host = http.createServer((req, res) => {
      const name = req.url!.replace(/^\/bucket\//, '');
      res.writeHead(200, { 'content-type': 'application/fhir+ndjson' }).end(bulk.files[name]);
    });
    await new Promise<void>((r) => host.listen(0, own!.address, r));
    const origin = `http://${own!.family === 'IPv6' ? `[${own!.address}]` : own!.address}:${(host.address() as AddressInfo).port}`;
    try {
      Object.assign(bulk.knobs, { requiresAccessToken: false });
      bulk.knobs.urls.set('Condition-1.ndjson', `${origin}/bucket/Condition-1.ndjson`);
      const direct = await exporter().ex.run(SYSTEM).catch((e: unknown) => e) as ExportError;
      expect(direct.code).toBe('file_url_refused');
      bulk.knobs.urls.clear();
      bulk.knobs.redirectBase = `${origin}/bucket`; // Observation-2 answers 307 to it
      const redirected = await exporter().ex.run(SYSTEM).catch((e: unknown) => e) as ExportError;
      expect(redirected.code).toBe('file_url_refused');
      expect(redirected.message).toMatch(/^The redirect of .*\/redirect\/Observation-2\.ndjson is on /);
      // trusted: downloaded
      bulk.knobs.urls.set('Condition-1.ndjson', `${origin}/bucket/Condition-1.ndjson`);
      const summary = await exporter({ trustedOrigins: [origin] }).ex.run(SYSTEM);
      expect(summary.resourcesByType).toMatchObject({ Condition: 3, Observation: 1007 });
    } finally {
      host.closeAllConnections();
      await new Promise((r) => host.close(r));
    }
  });

  test('a host name is checked by the addresses it resolves to', async () => {
    Object.assign(bulk.knobs, { requiresAccessToken: false });
    bulk.knobs.urls.set('Condition-1.ndjson', 'https://files.internal.example/c.ndjson');
    const resolved: string[] = [];
    const { ex } = exporter({ lookup: async (h) => { resolved.push(h); return ['93.184.216.34', '10.1.2.3']; } });
    const err = await ex.run(SYSTEM).catch((e: unknown) => e) as ExportError;
    expect(err.code).toBe('file_url_refused');
    expect(err.message).toMatch(/https:\/\/files\.internal\.example, a name for a private network address \(10\.0\.0\.0\/8\) \(10\.1\.2\.3\)/);
    expect(resolved).toContain('files.internal.example');
  });
});
