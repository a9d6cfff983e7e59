/**
 * Export jobs with several instances (review M3): two real app instances share BULK_DATA_DIR and a real Redis.
 * A job is driven by the instance holding its lease; the other never drives it while the lease is renewed, takes
 * it over when the lease lapses (its driver cut off from Redis), and a cancel asked on the other instance is carried
 * out by the driver, never racing its writes.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSandbox, type Sandbox } from '../../../src/sandbox/index.js';
import { parsePrivateKey } from '../../../src/keys.js';
import { loadConfig } from '../../../src/config.js';
import { RedisConnection } from '../../../src/session/redis-client.js';
import { startBff, TEST_SESSION_SECRET, type StartedBff } from '../../helpers/bff.js';
import { json } from '../../helpers/json.js';
import { captureLogs } from '../../helpers/log-capture.js';
import { redisAvailable, startRedis, type TestRedis } from '../../helpers/redis.js';
import { startBulkServer, type BulkServer } from '../../fixtures/bulk-server.js';

const ADMIN = 'admin-token-0123456789-abcdefghij';
const PEM = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const dir = mkdtempSync(join(tmpdir(), 'bulk-leases-'));
const keyFile = join(dir, 'backend.pem');
writeFileSync(keyFile, PEM, { mode: 0o600 });

const withRedis = redisAvailable() ? describe : describe.skip;

withRedis('export jobs on two instances sharing BULK_DATA_DIR and Redis', () => {
  let sandbox: Sandbox & { url: string };
  let bulk: BulkServer;
  let redis: TestRedis;
  const started: { bff: StartedBff; conn: RedisConnection }[] = [];

  beforeAll(async () => {
    const key = await parsePrivateKey(PEM);
    sandbox = await startSandbox({ clients: [{ client_id: 'backend-app', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...key.publicJwk }] }, grant_types: ['client_credentials'] }] });
    bulk = await startBulkServer(sandbox.provider, `${sandbox.fhirBaseUrl}/.well-known/smart-configuration`);
    redis = await startRedis();
  }, 60000);
  afterAll(async () => {
    for (const s of started) await s.bff.app.locals.exportJobs?.stopAll();
    for (const s of started) {
      await s.bff.close();
      await s.conn.close().catch(() => undefined);
    }
    await bulk?.close();
    await sandbox?.close();
    await redis?.stop();
  });

  /** Two instances on one BULK_DATA_DIR, each with its own Redis connection, both watching for jobs to take over. */
  async function pair(): Promise<[StartedBff, StartedBff]> {
    const bulkDir = mkdtempSync(join(tmpdir(), 'bulk-shared-'));
    const out: StartedBff[] = [];
    for (let i = 0; i < 2; i++) {
      const env = {
        SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'x', SMART_BACKEND_ISS: bulk.base, SMART_BACKEND_CLIENT_ID: 'backend-app',
        SMART_BACKEND_KEY_FILE: keyFile, ADMIN_TOKEN: ADMIN, BULK_DATA_DIR: bulkDir, REDIS_URL: redis.url, BULK_DATA_LEASE_SECONDS: '1',
      };
      const config = await loadConfig({ NODE_ENV: 'test', PUBLIC_URL: 'http://127.0.0.1:1', SESSION_SECRET: TEST_SESSION_SECRET, ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', ...env });
      const conn = new RedisConnection(config.redis!, captureLogs('warn').logger);
      await conn.start();
      const bff = await startBff(env, { redis: conn });
      await bff.app.locals.exportJobs!.watch();
      started.push({ bff, conn });
      out.push(bff);
    }
    return out as [StartedBff, StartedBff];
  }

  const api = (a: StartedBff, path: string, init: RequestInit = {}) =>
    fetch(`${a.url}/api/bulk-data${path}`, { ...init, headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' } });

  /** Samples who drives `id` until the job is no longer running; the record at the end. */
  async function follow(a: StartedBff, b: StartedBff, id: string, timeoutMs = 30_000) {
    const drivers = new Set<string>();
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (a.app.locals.exportJobs!.driving.includes(id)) drivers.add('a');
      if (b.app.locals.exportJobs!.driving.includes(id)) drivers.add('b');
      if (a.app.locals.exportJobs!.driving.includes(id) && b.app.locals.exportJobs!.driving.includes(id)) drivers.add('both at once');
      const job = await json(await api(a, `/exports/${id}`));
      if (job.status !== 'running' && !a.app.locals.exportJobs!.driving.includes(id) && !b.app.locals.exportJobs!.driving.includes(id)) return { job, drivers: [...drivers].sort() };
      if (Date.now() > end) throw new Error(`job ${id} still ${job.status}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  test('one instance drives a job: the other, looking for jobs to take over every lease period, never does while the lease is renewed', async () => {
    Object.assign(bulk.knobs, { pollsBeforeDone: 3, retryAfterSeconds: 1 });
    const [a, b] = await pair();
    const { id } = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ types: ['Patient'] }) }));
    const { job, drivers } = await follow(a, b, id);
    expect(job.status).toBe('complete');
    expect(drivers).toEqual(['a']);
    // the job was polled by one driver: the kick-off once, each status poll once
    const polls = bulk.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/fhir/jobs/'));
    const jobPath = polls.at(-1)!.path;
    expect(polls.filter((r) => r.path === jobPath)).toHaveLength(4);
  }, 60000);

  test('a cancel asked on the other instance is carried out by the driver: cancelled once, deleted on the server, never revived', async () => {
    Object.assign(bulk.knobs, { pollsBeforeDone: 100, retryAfterSeconds: 1 });
    const [a, b] = await pair();
    const { id } = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({ types: ['Patient'] }) }));
    for (let i = 0; i < 100 && !a.app.locals.exportJobs!.driving.includes(id); i++) await new Promise((r) => setTimeout(r, 20));
    expect([a.app.locals.exportJobs!.driving, b.app.locals.exportJobs!.driving]).toEqual([[id], []]);
    const deletedBefore = bulk.deleted.length;
    const del = await api(b, `/exports/${id}`, { method: 'DELETE' });
    expect([del.status, (await json(del)).status]).toEqual([200, 'cancelled']);
    const { job, drivers } = await follow(a, b, id);
    expect(job.status).toBe('cancelled');
    expect(drivers).not.toContain('b');
    expect(bulk.deleted.length).toBe(deletedBefore + 1);
    expect(a.logs.find('bulk.job.cancelled')).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 2500)); // two lease periods: nobody takes it up again
    expect((await json(await api(b, `/exports/${id}`))).status).toBe('cancelled');
    expect([...a.app.locals.exportJobs!.driving, ...b.app.locals.exportJobs!.driving]).toEqual([]);
  }, 60000);

  test('the driver cut off from Redis stops once its lease could have lapsed, and the other instance takes the job over and finishes it', async () => {
    Object.assign(bulk.knobs, { pollsBeforeDone: 6, retryAfterSeconds: 1 });
    const [a, b] = await pair();
    const { id } = await json(await api(a, '/exports', { method: 'POST', body: JSON.stringify({}) }));
    for (let i = 0; i < 100 && !a.app.locals.exportJobs!.driving.includes(id); i++) await new Promise((r) => setTimeout(r, 20));
    expect(a.app.locals.exportJobs!.driving).toEqual([id]);
    await started.find((s) => s.bff === a)!.conn.close(); // a loses Redis: its lease is no longer renewed
    const { job, drivers } = await follow(b, a, id);
    expect(job.status).toBe('complete');
    expect(job.summary.resourcesByType).toMatchObject({ Patient: 5, Observation: 1007, Condition: 3 });
    expect(drivers).toEqual(['a', 'b']); // 'both at once' never
    expect(a.logs.find('bulk.job.lease_lost').map((e) => e.reason)).toEqual(['not renewed']);
    expect(b.logs.find('bulk.job.resume').map((e) => e.jobId)).toEqual([id]);
    const file = await api(b, `/exports/${id}/files/Patient-1.ndjson`);
    expect(await file.text()).toBe(bulk.files['Patient-1.ndjson']);
  }, 60000);
});
