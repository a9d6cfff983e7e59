/** The JWKS endpoint and the operators' Bulk Data API of the real app, against the sandbox and the bulk fixture. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { ConfigError } from '../../../src/config.js';
import { parsePrivateKey, type ClientKey } from '../../../src/keys.js';
import { startBff, type StartedBff } from '../../helpers/bff.js';
import { json } from '../../helpers/json.js';
import { startBulkServer, type BulkServer } from '../../fixtures/bulk-server.js';
import { captureLogs } from '../../helpers/log-capture.js';
import { DiscoveryCache } from '../../../src/smart/discovery.js';
import { BackendTokenClient } from '../../../src/backend-services/token-client.js';
import { ExportJobs } from '../../../src/backend-services/export-jobs.js';

const ADMIN = 'admin-token-0123456789-abcdefghij';
const PEM = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const dir = mkdtempSync(join(tmpdir(), 'bulk-api-'));
const keyFile = join(dir, 'backend.pem');
writeFileSync(keyFile, PEM, { mode: 0o600 });
let key: ClientKey;
let sandbox: Sandbox & { url: string };
let bulk: BulkServer;
const apps: StartedBff[] = [];
const tokenRequests: { client_id?: string }[] = [];

beforeAll(async () => {
  key = await parsePrivateKey(PEM);
  sandbox = await startSandbox({ clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, grant_types: ['client_credentials'] }] });
  sandbox.events.on('token-request', (e: { client_id?: string }) => tokenRequests.push({ client_id: e.client_id })); // no secret values in failure output
  bulk = await startBulkServer(sandbox.provider, `${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
});
beforeEach(() => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 0, retryAfterSeconds: 1, throttlePolls: 0, requiresAccessToken: true, filesOnStorage: false, presigned: false });
  bulk.knobs.refuseSignature.clear();
});
afterAll(async () => {
  for (const a of apps) await a.app.locals.exportJobs?.stopAll();
  for (const a of apps) await a.close();
  await bulk?.close();
  await sandbox?.close();
});

async function app(env: Record<string, string> = {}, bulkDir = mkdtempSync(join(tmpdir(), 'bulk-data-'))) {
  const a = await startBff({
    SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'x', SMART_BACKEND_ISS: bulk.base, SMART_BACKEND_CLIENT_ID: 'backend-app',
    SMART_BACKEND_KEY_FILE: keyFile, ADMIN_TOKEN: ADMIN, BULK_DATA_DIR: bulkDir, ...env,
  });
  apps.push(a);
  return a;
}

const api = (a: StartedBff, path: string, init: RequestInit = {}, token = ADMIN) =>
  fetch(`${a.url}/api/bulk-data${path}`, { ...init, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers as Record<string, string> ?? {}) } });

async function waitFor(a: StartedBff, id: string, status: string) {
  for (let i = 0; i < 100; i++) {
    const job = await json(await api(a, `/exports/${id}`));
    if (job.status === status) return job;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`job ${id} did not reach ${status}`);
}

test('/.well-known/jwks.json: the signing keys and extra (rotation) keys, public members only, cacheable', async () => {
  const next = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const extra = join(dir, 'extra.json');
  writeFileSync(extra, JSON.stringify({ keys: [{ ...next, kid: 'next-key', alg: 'RS384' }] })); // even a private JWK here
  const a = await app({ JWKS_EXTRA_KEYS_FILE: extra });
  const res = await fetch(`${a.url}/.well-known/jwks.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toMatch(/max-age=\d+/);
  const jwks = await json(res);
  expect(jwks.keys.map((k: { kid: string }) => k.kid)).toEqual([key.kid, 'next-key']);
  for (const m of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(JSON.stringify(jwks)).not.toContain(`"${m}":`);
});

test('a backend key of the wrong type or size stops startup with a clear message', async () => {
  const bad = join(dir, 'bad.pem');
  writeFileSync(bad, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
  const err = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'x', SMART_BACKEND_ISS: bulk.base, SMART_BACKEND_CLIENT_ID: 'b', SMART_BACKEND_KEY_FILE: bad }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).problems.join()).toMatch(/bad\.pem: EC key is on curve prime256v1; ES384 requires P-384/);
});

test('the API is off without ADMIN_TOKEN and needs the bearer token with it', async () => {
  const off = await app({ ADMIN_TOKEN: '' });
  expect((await api(off, '/exports', { method: 'POST', body: '{}' })).status).toBe(404);
  const on = await app();
  expect((await api(on, '/exports', { method: 'POST', body: '{}' }, 'wrong-token-0123456789-abcdefghij')).status).toBe(401);
  const withKey = await api(on, '/exports', { method: 'POST', body: JSON.stringify({ registration: 'default', privateKey: PEM }) });
  expect(withKey.status).toBe(400);
  expect((await json(withKey)).message).toMatch(/never accepted in a request/);
});

test('POST → 202, GET polls to complete with the files, a file downloads, DELETE cancels a running job', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 1, retryAfterSeconds: 1, throttlePolls: 0 });
  const a = await app();
  const res = await api(a, '/exports', { method: 'POST', body: JSON.stringify({ registration: 'default', level: 'system', types: ['Patient', 'Observation'] }) });
  expect(res.status).toBe(202);
  const { id } = await json(res);
  const job = await waitFor(a, id, 'complete');
  expect(job.summary.resourcesByType).toMatchObject({ Patient: 5, Observation: 1007 });
  expect(job.files.filter((f: { done: boolean }) => f.done)).toHaveLength(5);
  const file = await api(a, `/exports/${id}/files/Patient-1.ndjson`);
  expect(await file.text()).toBe(bulk.files['Patient-1.ndjson']);

  Object.assign(bulk.knobs, { pollsBeforeDone: 100 });
  const slow = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ level: 'patient' }) }));
  await waitFor(a, slow.id, 'running');
  await new Promise((r) => setTimeout(r, 300));
  const del = await api(a, `/exports/${slow.id}`, { method: 'DELETE' });
  expect((await json(del)).status).toBe('cancelled');
  expect(bulk.deleted.length).toBeGreaterThan(0);
}, 30000);

test('jobs survive a restart of the server: an unfinished job resumes', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 3, retryAfterSeconds: 1 });
  const bulkDir = mkdtempSync(join(tmpdir(), 'bulk-data-'));
  const first = await app({}, bulkDir);
  const { id } = await json(await api(first, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system' }) }));
  await new Promise((r) => setTimeout(r, 500));
  await first.app.locals.exportJobs!.stopAll(); // the process stops mid-export
  await first.close();
  const second = await app({}, bulkDir);
  expect(await second.app.locals.exportJobs!.resumeUnfinished()).toBe(1);
  const job = await waitFor(second, id, 'complete');
  expect(job.summary.files).toBe(4);
}, 30000);

test('regression: a job whose token request is refused (invalid_client) fails at once, with the code and the likely causes in its JSON', async () => {
  const a = await app({ SMART_BACKEND_CLIENT_ID: 'unregistered-client' });
  const before = tokenRequests.length;
  const { id } = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system' }) }));
  const job = await waitFor(a, id, 'failed');
  expect(job.error.code).toBe('invalid_client');
  expect(job.error.message).toMatch(/The token endpoint refused the request: invalid_client/);
  expect(job.error.causes.join('\n')).toMatch(/Unknown client: is unregistered-client the client id registered/);
  expect(tokenRequests.slice(before).filter((r) => r.client_id === undefined || r.client_id === 'unregistered-client')).toHaveLength(1);
}, 30000);

test('a finished job cannot be cancelled: 409, and it stays complete; the job was deleted on the FHIR server unless keep', async () => {
  const a = await app();
  const { id } = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system' }) }));
  const done = await waitFor(a, id, 'complete');
  expect(done.summary.deletedOnServer).toBe(true);
  const del = await api(a, `/exports/${id}`, { method: 'DELETE' });
  expect(del.status).toBe(409);
  expect(await json(del)).toMatchObject({ error: 'job_not_running', message: 'The export job is already complete; there is nothing to cancel.' });
  expect((await json(await api(a, `/exports/${id}`))).status).toBe('complete');

  const deletedBefore = bulk.deleted.length;
  const kept = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system', keep: true }) }));
  expect((await waitFor(a, kept.id, 'complete')).summary.deletedOnServer).toBe(false);
  expect(bulk.deleted.length).toBe(deletedBefore);
}, 30000);

test('timeoutSeconds: past it the job fails with export_timeout and is deleted on the FHIR server', async () => {
  Object.assign(bulk.knobs, { pollsBeforeDone: 100, retryAfterSeconds: 3600 });
  const a = await app();
  const deletedBefore = bulk.deleted.length;
  const { id } = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system', timeoutSeconds: 60 }) }));
  const job = await waitFor(a, id, 'failed');
  expect(job.error.code).toBe('export_timeout');
  expect(job.error.message).toMatch(/did not finish within timeoutSeconds 60\..*The job was deleted on the server/);
  expect(bulk.deleted.length).toBe(deletedBefore + 1);
  const bad = await api(a, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system', timeoutSeconds: 0 }) });
  expect(bad.status).toBe(400);
}, 30000);

test('BULK_DATA_TRUSTED_ORIGINS: validated at startup; a manifest naming another origin fails the job unless that origin is trusted', async () => {
  const err = await app({ BULK_DATA_TRUSTED_ORIGINS: 'https://ok.example.org, https://files.example.org/bucket,not a url' }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ConfigError);
  const problems = (err as ConfigError).problems.filter((p) => p.startsWith('BULK_DATA_TRUSTED_ORIGINS'));
  expect(problems).toHaveLength(2);
  expect(problems[0]).toMatch(/files\.example\.org\/bucket.*use https:\/\/files\.example\.org/);

  Object.assign(bulk.knobs, { filesOnStorage: true });
  const storageOrigin = new URL(bulk.storageBase).origin;
  const strict = await app();
  const refused = await waitFor(strict, (await json(await api(strict, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system' }) }))).id, 'failed');
  expect(refused.error.code).toBe('untrusted_origin');
  expect(refused.error.message).toContain(storageOrigin);
  expect(refused.error.message).toContain('BULK_DATA_TRUSTED_ORIGINS');

  const storageBefore = bulk.storageRequests.length;
  const trusting = await app({ BULK_DATA_TRUSTED_ORIGINS: storageOrigin });
  const ok = await waitFor(trusting, (await json(await api(trusting, '/exports', { method: 'POST', body: JSON.stringify({ level: 'system' }) }))).id, 'complete');
  expect(ok.summary.files).toBe(4);
  expect(bulk.storageRequests.slice(storageBefore).filter((r) => /Condition-1/.test(r.path)).map((r) => r.tokenValid)).toEqual([true]);
}, 30000);

test('M2 presigned file URLs: downloaded with their full query, but shown (job JSON, console, log) as origin and path only', async () => {
  Object.assign(bulk.knobs, { presigned: true, requiresAccessToken: false });
  const a = await app();
  const signatures = ['Patient-1.ndjson', 'Observation-1.ndjson', 'Observation-2.ndjson', 'Condition-1.ndjson'].map((n) => bulk.signature(n));
  const before = bulk.storageRequests.length;
  const ok = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({}) }));
  const done = await waitFor(a, ok.id, 'complete');
  expect(done.summary.resourcesByType).toMatchObject({ Patient: 5, Observation: 1007, Condition: 3 });
  // the downloads used the whole presigned URL (the storage checks the signature)
  expect(bulk.storageRequests.slice(before).map((r) => new URL(r.path, 'http://x').searchParams.get('X-Amz-Signature')).sort()).toEqual([...signatures].sort());

  bulk.knobs.refuseSignature.add('Observation-1.ndjson');
  const bad = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({}) }));
  const failed = await waitFor(a, bad.id, 'failed');
  expect(failed.error.code).toBe('download_failed');
  expect(failed.error.message).toContain(`(${bulk.storageBase}/Observation-1.ndjson?(query hidden: len:`);
  expect(failed.error.message).toMatch(/answered 403: <Error><Code>SignatureDoesNotMatch<\/Code><SignatureProvided>\(hidden\)<\/SignatureProvided>/);

  const signIn = await fetch(`${a.url}/admin/api/sign-in`, { method: 'POST', headers: { 'x-csrf': '1', 'content-type': 'application/json' }, body: JSON.stringify({ token: ADMIN }) });
  const cookie = signIn.headers.getSetCookie()[0]!.split(';')[0]!;
  const consoleJobs = await (await fetch(`${a.url}/admin/api/exports`, { headers: { cookie } })).text();
  expect(consoleJobs).toContain('Observation-1.ndjson?(query hidden');
  const shown = [JSON.stringify(failed), JSON.stringify(done), consoleJobs, a.logs.text()];
  for (const text of shown) {
    for (const sig of signatures) expect(text).not.toContain(sig);
    expect(text).not.toContain('X-Amz-Signature');
    expect(text).not.toContain('X-Amz-Credential');
  }
});

test('L1 one job that cannot start never stops the others: recorded failed with a code, at creation and when resuming', async () => {
  const a = await app();
  const good = a.config.backend.registrations[0]!;
  const broken = { ...good, name: 'broken', iss: 'fhir.example.org/r4' }; // as a registration added past the startup checks could be
  const logs = captureLogs();
  const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 5000, allowInsecureHttp: true });
  const tokens = new BackendTokenClient({ discovery, logger: logs.logger, timeoutMs: 5000, allowInsecureHttp: true });
  const dir = mkdtempSync(join(tmpdir(), 'bulk-perjob-'));
  const jobs = new ExportJobs({ dir, registrations: [good, broken], tokens, logger: logs.logger });
  const bad = await jobs.create(broken, { level: 'system' });
  const ok = await jobs.create(good, { level: 'system', types: ['Patient'] });
  const settle = async (j: ExportJobs, id: string) => {
    for (let i = 0; i < 100; i++) {
      const f = await j.get(id);
      if (f && f.job.status !== 'running') return f.job;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`${id} still running`);
  };
  expect((await settle(jobs, bad.id)).error).toMatchObject({ code: 'job_start_failed', message: expect.stringMatching(/could not start/) });
  expect((await settle(jobs, ok.id)).status).toBe('complete');

  // after a restart: both recorded as running; the broken one fails, the other resumes and completes
  const now = new Date().toISOString();
  const running = (id: string, registration: string) => writeFileSync(join(dir, id, 'job.json'), JSON.stringify({ id, registration, parameters: { level: 'system', types: ['Patient'] }, status: 'running', createdAt: now, updatedAt: now }));
  for (const [id, reg] of [['BBBBBBBBBBBBBBBB', 'broken'], ['GGGGGGGGGGGGGGGG', 'default'], ['bbbbbbbbbbbbbbbb', 'broken']] as const) {
    mkdirSync(join(dir, id), { recursive: true });
    running(id, reg);
  }
  const restarted = new ExportJobs({ dir, registrations: [good, broken], tokens, logger: logs.logger });
  expect(await restarted.resumeUnfinished()).toBe(3);
  expect((await settle(restarted, 'GGGGGGGGGGGGGGGG')).status).toBe('complete');
  for (const id of ['BBBBBBBBBBBBBBBB', 'bbbbbbbbbbbbbbbb']) expect((await settle(restarted, id)).error?.code).toBe('job_start_failed');
  await restarted.stopAll();
}, 60000);

test('L3 a file gone between its listing and its opening is a clean 404 (both download routes), and the server goes on', async () => {
  const a = await app();
  const { id } = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ types: ['Patient'] }) }));
  await waitFor(a, id, 'complete');
  const jobs = a.app.locals.exportJobs!;
  const original = jobs.file.bind(jobs);
  // the race made certain: the file is removed right after it was found
  jobs.file = async (jobId: string, name: string) => {
    const found = await original(jobId, name);
    if (found) rmSync(found.path);
    return found;
  };
  const res = await api(a, `/exports/${id}/files/Patient-1.ndjson`);
  expect(res.status).toBe(404);
  expect(res.headers.get('content-type')).toMatch(/json/);
  expect((await json(res)).error).toBe('not_found');
  // the console's download too (its file is gone now for good: removed by the first request)
  writeFileSync(jobs.filePath(id, 'Patient-1.ndjson'), bulk.files['Patient-1.ndjson']!);
  const signIn = await fetch(`${a.url}/admin/api/sign-in`, { method: 'POST', headers: { 'x-csrf': '1', 'content-type': 'application/json' }, body: JSON.stringify({ token: ADMIN }) });
  const cookie = signIn.headers.getSetCookie()[0]!.split(';')[0]!;
  const page = await fetch(`${a.url}/admin/exports/${id}/files/Patient-1.ndjson`, { headers: { cookie, accept: 'application/json' } });
  expect(page.status).toBe(404);
  expect(page.headers.get('content-disposition')).toBeNull();
  await page.text();
  expect(a.logs.find('bulk.file_stream_failed').map((e) => e.code)).toEqual(['ENOENT', 'ENOENT']);
  jobs.file = original;
  expect((await api(a, `/exports/${id}`)).status).toBe(200);
});

describe('ExportJobs: cancel against a concurrent writer, and listing without reading every job', () => {
  const jobsOn = (dir: string) => {
    const logs = captureLogs();
    const discovery = new DiscoveryCache({ purpose: 'backend', ttlSeconds: 3600, timeoutMs: 5000, allowInsecureHttp: true });
    const tokens = new BackendTokenClient({ discovery, logger: logs.logger, timeoutMs: 5000, allowInsecureHttp: true });
    return { jobs: new ExportJobs({ dir, registrations: apps[0]!.config.backend.registrations, tokens, logger: logs.logger }), logs };
  };

  test('a cancel written while another process still drives the job is final: the driver\'s later writes never revive it', async () => {
    if (!apps.length) await app();
    // the server deletes the job at once but answers the DELETE late: the driver's next poll meets the deleted job
    // while the cancel is still under way, so the cancel must be on disk before the DELETE is sent
    Object.assign(bulk.knobs, { pollsBeforeDone: 3, retryAfterSeconds: 1, deleteAnswerDelayMs: 2500 });
    const dir = mkdtempSync(join(tmpdir(), 'bulk-race-'));
    const x = jobsOn(dir); // drives the job
    const y = jobsOn(dir); // another process on the same directory, without Redis: it cancels
    const before = bulk.requests.length; // earlier tests' requests do not count
    const job = await x.jobs.create(apps[0]!.config.backend.registrations[0]!, { level: 'system', types: ['Patient'] });
    for (let i = 0; i < 250 && !bulk.requests.slice(before).some((r) => r.method === 'GET' && r.path.startsWith('/fhir/jobs/')); i++) await new Promise((r) => setTimeout(r, 20));
    const cancelled = await y.jobs.cancel(job.id);
    expect(cancelled).toMatchObject({ cancelled: true, job: { status: 'cancelled' } });
    // x goes on (its next poll finds the job deleted on the server and fails): its final write is dropped
    for (let i = 0; i < 100 && x.jobs.driving.length; i++) await new Promise((r) => setTimeout(r, 100));
    expect(x.jobs.driving).toEqual([]);
    expect(x.logs.find('bulk.job.write_dropped').map((e) => e.on_disk)).toContain('cancelled');
    expect((await y.jobs.get(job.id))!.job.status).toBe('cancelled');
    expect((await jobsOn(dir).jobs.get(job.id))!.job.status).toBe('cancelled');
    bulk.knobs.deleteAnswerDelayMs = 0;
  }, 60000);

  test('listing reads a finished job once (a bounded cache of final records), a running one each time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bulk-list-'));
    const at = (i: number) => new Date(Date.UTC(2026, 0, 1, 0, i)).toISOString();
    for (let i = 0; i < 30; i++) {
      const id = `done${String(i).padStart(12, '0')}`;
      mkdirSync(join(dir, id));
      writeFileSync(join(dir, id, 'job.json'), JSON.stringify({ id, registration: 'default', parameters: { level: 'system' }, status: i % 3 ? 'complete' : 'failed', createdAt: at(i), updatedAt: at(i) }));
    }
    const runningId = 'runningjob000000';
    mkdirSync(join(dir, runningId));
    const running = (progress: string) => writeFileSync(join(dir, runningId, 'job.json'), JSON.stringify({ id: runningId, registration: 'default', parameters: { level: 'system' }, status: 'running', progress, createdAt: at(40), updatedAt: at(40) }));
    running('10% done');
    const { jobs } = jobsOn(dir);
    const first = await jobs.list(50);
    expect(first).toHaveLength(31);
    const afterFirst = jobs.recordReads;
    expect(afterFirst).toBe(31);
    running('55% done'); // written by the instance that drives it
    const second = await jobs.list(50);
    expect(jobs.recordReads - afterFirst).toBe(1);
    expect(second[0]!.job.progress).toBe('55% done');
    expect(second.map((j) => j.job.id)).toEqual(first.map((j) => j.job.id));
  });
});
