/**
 * Export jobs run by the server for the operators' HTTP API: each job is a directory under BULK_DATA_DIR with
 * job.json (what was asked, its status) and the exporter's own state file and downloaded files, so jobs survive a
 * restart: unfinished ones are resumed at startup, within their original deadline. Each job's record has one
 * writer (job-writer.ts): progress never lands after the final status. The map of running jobs is a per-process
 * registry of in-flight work, not a cache of truth: the files on disk are.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { BackendRegistration } from './config.js';
import { BulkExporter, DEFAULT_EXPORT_TIMEOUT_SECONDS, type ExportEvent, type ExportParameters, type ExportState, type ExportSummary } from './bulk-export.js';
import { describeFailure, type FailureDescription } from './export-errors.js';
import { JobWriter } from './job-writer.js';
import { isOwnFileName } from './export-state.js';
import type { BackendTokenClient } from './token-client.js';

export interface JobOptions {
  /** Leave the job on the FHIR server after the download (no DELETE). */
  keep: boolean;
  timeoutSeconds: number;
  /** The absolute deadline (ISO), fixed at creation: a restart does not extend it. */
  deadline: string;
}

export interface JobRecord {
  id: string;
  registration: string;
  parameters: ExportParameters;
  options?: JobOptions;
  status: 'running' | 'complete' | 'failed' | 'cancelled';
  createdAt: string;
  updatedAt: string;
  progress?: string | null;
  /** Progress of the download, so far: files downloaded and verified of the manifest's, resources and bytes in them. */
  filesDone?: number;
  filesTotal?: number;
  resources?: number;
  bytes?: number;
  /** Why a failed job failed: a stable code, the message, the likely causes (e.g. of invalid_client), a hint. */
  error?: FailureDescription;
  summary?: ExportSummary;
}

interface Running {
  exporter: BulkExporter;
  abort: AbortController;
  writer: JobWriter<JobRecord>;
  done: Promise<void>;
}

const JOB_ID = /^[A-Za-z0-9_-]{16}$/;

export class ExportJobs {
  private readonly running = new Map<string, Running>();

  constructor(private readonly o: { dir: string; registrations: readonly BackendRegistration[]; tokens: BackendTokenClient; logger: Logger }) {}

  get registrations(): readonly BackendRegistration[] {
    return this.o.registrations;
  }

  registration(name: string): BackendRegistration | undefined {
    return this.o.registrations.find((r) => r.name === name);
  }

  async create(registration: BackendRegistration, parameters: ExportParameters, opts: { keep?: boolean; timeoutSeconds?: number } = {}): Promise<JobRecord> {
    const now = new Date();
    const timeoutSeconds = opts.timeoutSeconds ?? DEFAULT_EXPORT_TIMEOUT_SECONDS;
    const job: JobRecord = {
      id: randomBytes(12).toString('base64url'), registration: registration.name, parameters,
      options: { keep: Boolean(opts.keep), timeoutSeconds, deadline: new Date(now.getTime() + timeoutSeconds * 1000).toISOString() },
      status: 'running', createdAt: now.toISOString(), updatedAt: now.toISOString(),
    };
    await mkdir(this.jobDir(job.id), { recursive: true });
    await this.write(job);
    this.start(job);
    return job;
  }

  async get(id: string): Promise<{ job: JobRecord; state: ExportState | undefined } | undefined> {
    if (!JOB_ID.test(id)) return undefined;
    try {
      const job = this.running.get(id)?.writer.current ?? JSON.parse(await readFile(join(this.jobDir(id), 'job.json'), 'utf8')) as JobRecord;
      const state = await readFile(join(this.jobDir(id), 'files', '.export-state.json'), 'utf8').then((t) => JSON.parse(t) as ExportState, () => undefined);
      return { job, state };
    } catch {
      return undefined;
    }
  }

  filePath(id: string, name: string): string {
    return join(this.jobDir(id), 'files', name);
  }

  /** A downloaded file of a job (an exporter's own file name only), with its size; undefined when there is none (yet). */
  async file(id: string, name: string): Promise<{ path: string; size: number } | undefined> {
    if (!isOwnFileName(name) || !(await this.get(id))) return undefined;
    const path = this.filePath(id, name);
    const info = await stat(path).catch(() => undefined);
    return info?.isFile() ? { path, size: info.size } : undefined;
  }

  /** The most recent jobs (newest first), at most `limit`: each job's record and its exporter's state. */
  async list(limit = 50): Promise<{ job: JobRecord; state: ExportState | undefined }[]> {
    const ids = (await readdir(this.o.dir).catch(() => [] as string[])).filter((id) => JOB_ID.test(id));
    const found = (await Promise.all(ids.map((id) => this.get(id)))).filter((f): f is NonNullable<typeof f> => f !== undefined);
    return found.sort((a, b) => b.job.createdAt.localeCompare(a.job.createdAt)).slice(0, limit);
  }

  /**
   * Cancels a running job: the exporter stops, the job is deleted on the FHIR server, the record says cancelled.
   * A job that is already complete, failed or cancelled is left exactly as it is (`cancelled: false`).
   */
  async cancel(id: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined> {
    const found = await this.get(id);
    if (!found) return undefined;
    const run = this.running.get(id);
    if (run) {
      if (run.writer.isFinal) return { job: run.writer.current, cancelled: false };
      run.abort.abort(new Error('cancelled'));
      await run.done;
      // The export may have completed between the check and the abort: its final status stands.
      if (run.writer.isFinal) return { job: run.writer.current, cancelled: false };
      await run.exporter.cancel().catch(() => false);
      const cancelled = await run.writer.finish({ status: 'cancelled', progress: null, updatedAt: new Date().toISOString() });
      return { job: run.writer.current, cancelled };
    }
    if (found.job.status !== 'running') return { job: found.job, cancelled: false };
    // Recorded as running but not running here (stopped before a restart resumed it): delete it on the server too.
    const registration = this.registration(found.job.registration);
    if (registration) await this.exporterFor(found.job, registration, new AbortController().signal, this.o.logger).cancel().catch(() => false);
    const job: JobRecord = { ...found.job, status: 'cancelled', progress: null, updatedAt: new Date().toISOString() };
    await this.write(job);
    return { job, cancelled: true };
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
    await Promise.all([...this.running.values()].map((r) => r.done.then(() => r.writer.settled())));
  }

  private start(job: JobRecord): void {
    const registration = this.registration(job.registration);
    const log = this.o.logger.child({ jobId: job.id });
    const writer = new JobWriter(job, (r) => this.write(r));
    if (!registration) {
      void writer.finish({
        status: 'failed', updatedAt: new Date().toISOString(),
        error: { code: 'registration_missing', message: `Registration ${job.registration} is no longer configured on the server.`, causes: [] },
      });
      return;
    }
    const abort = new AbortController();
    // Progress goes through the job's one writer (after the final status it is dropped), at most once a second,
    // except the moments that matter: the manifest, and the last file.
    let last = 0;
    const onEvent = (e: ExportEvent) => {
      const now = Date.now();
      if (e.phase === 'polling' && now - last > 1000) {
        last = now;
        void writer.progress({ progress: e.progress, updatedAt: new Date(now).toISOString() });
      } else if (e.phase === 'manifest' || (e.phase === 'resumed' && e.filesTotal > 0)) {
        last = now;
        const total = e.phase === 'manifest' ? e.files : e.filesTotal;
        void writer.progress({ progress: null, filesTotal: total, filesDone: e.phase === 'manifest' ? 0 : e.filesDone, updatedAt: new Date(now).toISOString() });
      } else if (e.phase === 'file' && (now - last > 1000 || e.filesDone === e.filesTotal)) {
        last = now;
        void writer.progress({ filesDone: e.filesDone, filesTotal: e.filesTotal, resources: e.resources, bytes: e.bytes, updatedAt: new Date(now).toISOString() });
      }
    };
    const exporter = this.exporterFor(job, registration, abort.signal, log, onEvent);
    const done = exporter.run(job.parameters).then(
      async (summary) => { await writer.finish({ status: 'complete', summary, progress: null, updatedAt: new Date().toISOString() }); },
      async (err: unknown) => {
        if (abort.signal.aborted) return; // cancelled or shutting down: the job stays as cancel()/restart decides
        const error = describeFailure(err);
        log.warn({ event: 'bulk.job.failed', code: error.code, reason: error.message }, 'bulk export job failed');
        await writer.finish({ status: 'failed', error, progress: null, updatedAt: new Date().toISOString() });
      },
    ).finally(() => this.running.delete(job.id));
    this.running.set(job.id, { exporter, abort, writer, done });
  }

  private exporterFor(job: JobRecord, registration: BackendRegistration, signal: AbortSignal, logger: Logger, onEvent?: (e: ExportEvent) => void): BulkExporter {
    const client = { iss: registration.iss, clientId: registration.clientId, key: registration.key, scope: registration.scope, ...(registration.jku ? { jku: registration.jku } : {}) };
    const options = job.options;
    return new BulkExporter({
      fhirBaseUrl: registration.iss, clientId: registration.clientId, outDir: join(this.jobDir(job.id), 'files'), logger, signal,
      trustedOrigins: registration.trustedOrigins,
      keep: options?.keep ?? false,
      ...(options ? { deadlineAt: Date.parse(options.deadline), timeoutLabel: `timeoutSeconds ${options.timeoutSeconds}` } : {}),
      ...(onEvent ? { onEvent } : {}),
      token: (renew) => this.o.tokens.getToken(client, { forceRenew: Boolean(renew) }),
    });
  }

  private jobDir(id: string): string {
    return join(this.o.dir, id);
  }

  private async write(job: JobRecord): Promise<void> {
    const path = join(this.jobDir(job.id), 'job.json');
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(job, null, 2));
    await rename(tmp, path);
  }
}
