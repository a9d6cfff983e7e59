/** The JWKS endpoint and the operators' Bulk Data API of the real app, against the sandbox and the bulk fixture. */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { ConfigError, parsePrivateKey, type ClientKey } from '../../../src/config.js';
import { startBff, type StartedBff } from '../../helpers/bff.js';
import { json } from '../../helpers/json.js';
import { startBulkServer, type BulkServer } from '../../fixtures/bulk-server.js';

const ADMIN = 'admin-token-0123456789-abcdefghij';
const PEM = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const dir = mkdtempSync(join(tmpdir(), 'bulk-api-'));
const keyFile = join(dir, 'backend.pem');
writeFileSync(keyFile, PEM, { mode: 0o600 });
let key: ClientKey;
let sandbox: Sandbox & { url: string };
let bulk: BulkServer;
const apps: StartedBff[] = [];

beforeAll(async () => {
  key = await parsePrivateKey(PEM);
  sandbox = await startSandbox({ clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, grant_types: ['client_credentials'] }] });
  bulk = await startBulkServer(sandbox.provider, `${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
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
