/**
 * Export jobs run by the server for the operators' HTTP API: each job is a directory under BULK_DATA_DIR with
 * job.json (what was asked, its status) and the exporter's own state file and downloaded files, so jobs survive a
 * restart: unfinished ones are resumed at startup. The map of running jobs is a per-process registry of
 * in-flight work, not a cache of truth: the files on disk are.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { BackendRegistration } from './config.js';
import { BulkExporter, type ExportEvent, type ExportParameters, type ExportState, type ExportSummary } from './bulk-export.js';
import type { BackendTokenClient } from './token-client.js';

export interface JobRecord {
  id: string;
  registration: string;
  parameters: ExportParameters;
  status: 'running' | 'complete' | 'failed' | 'cancelled';
  createdAt: string;
  updatedAt: string;
  progress?: string | null;
  error?: string;
  summary?: ExportSummary;
}

export class ExportJobs {
  private readonly running = new Map<string, { exporter: BulkExporter; abort: AbortController; done: Promise<void> }>();

  constructor(private readonly o: { dir: string; registrations: readonly BackendRegistration[]; tokens: BackendTokenClient; logger: Logger }) {}

  registration(name: string): BackendRegistration | undefined {
    return this.o.registrations.find((r) => r.name === name);
  }

  async create(registration: BackendRegistration, parameters: ExportParameters): Promise<JobRecord> {
    const now = new Date().toISOString();
    const job: JobRecord = { id: randomBytes(12).toString('base64url'), registration: registration.name, parameters, status: 'running', createdAt: now, updatedAt: now };
    await mkdir(this.jobDir(job.id), { recursive: true });
    await this.save(job);
    this.start(job);
    return job;
  }

  async get(id: string): Promise<{ job: JobRecord; state: ExportState | undefined } | undefined> {
    if (!/^[A-Za-z0-9_-]{16}$/.test(id)) return undefined;
    try {
      const job = JSON.parse(await readFile(join(this.jobDir(id), 'job.json'), 'utf8')) as JobRecord;
      const state = await readFile(join(this.jobDir(id), 'files', '.export-state.json'), 'utf8').then((t) => JSON.parse(t) as ExportState, () => undefined);
      return { job, state };
    } catch {
      return undefined;
    }
  }

  filePath(id: string, name: string): string {
    return join(this.jobDir(id), 'files', name);
  }

  async cancel(id: string): Promise<JobRecord | undefined> {
    const found = await this.get(id);
    if (!found) return undefined;
    const run = this.running.get(id);
    if (run) {
      run.abort.abort(new Error('cancelled'));
      await run.exporter.cancel().catch(() => false);
      await run.done;
    }
    const job = { ...found.job, status: 'cancelled' as const, updatedAt: new Date().toISOString() };
    await this.save(job);
    return job;
  }

  /** At startup: resume every job that was running when the process stopped. */
  async resumeUnfinished(): Promise<number> {
    let n = 0;
    for (const id of await readdir(this.o.dir).catch(() => [] as string[])) {
      const found = await this.get(id);
      if (found?.job.status === 'running' && !this.running.has(id)) {
        this.o.logger.info({ event: 'bulk.job.resume', jobId: id }, 'bulk export job: resuming after restart');
        this.start(found.job);
        n++;
      }
    }
    return n;
  }

  async stopAll(): Promise<void> {
    for (const run of this.running.values()) run.abort.abort(new Error('shutting down'));
    await Promise.all([...this.running.values()].map((r) => r.done));
  }

  private start(job: JobRecord): void {
    const registration = this.registration(job.registration);
    const log = this.o.logger.child({ jobId: job.id });
    if (!registration) {
      void this.save({ ...job, status: 'failed', error: `registration ${job.registration} is no longer configured`, updatedAt: new Date().toISOString() });
      return;
    }
    const abort = new AbortController();
    const client = { iss: registration.iss, clientId: registration.clientId, key: registration.key, scope: registration.scope, ...(registration.jku ? { jku: registration.jku } : {}) };
    let last = 0;
    const onEvent = (e: ExportEvent) => {
      if (e.phase === 'polling' && Date.now() - last > 1000) {
        last = Date.now();
        void this.save({ ...job, progress: e.progress, updatedAt: new Date().toISOString() });
      }
    };
    const exporter = new BulkExporter({
      fhirBaseUrl: registration.iss, outDir: join(this.jobDir(job.id), 'files'), logger: log, signal: abort.signal, onEvent,
      token: (renew) => this.o.tokens.getToken(client, { forceRenew: Boolean(renew) }),
    });
    const done = exporter.run(job.parameters).then(
      (summary) => this.save({ ...job, status: 'complete', summary, progress: null, updatedAt: new Date().toISOString() }),
      async (err: Error) => {
        if (abort.signal.aborted) return; // cancelled or shutting down: the job stays as cancel()/restart decides
        log.warn({ event: 'bulk.job.failed', reason: err.message }, 'bulk export job failed');
        await this.save({ ...job, status: 'failed', error: err.message, updatedAt: new Date().toISOString() });
      },
    ).finally(() => this.running.delete(job.id));
    this.running.set(job.id, { exporter, abort, done });
  }

  private jobDir(id: string): string {
    return join(this.o.dir, id);
  }

  private async save(job: JobRecord): Promise<void> {
    const path = join(this.jobDir(job.id), 'job.json');
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(job, null, 2));
    await rename(tmp, path);
  }
}
