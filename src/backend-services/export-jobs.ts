/**
 * Export jobs run by the server for the operators' HTTP API: each job is a directory under BULK_DATA_DIR with
 * job.json (what was asked, its status) and the exporter's own state file and downloaded files, so jobs survive a
 * restart: unfinished ones are resumed at startup, within their original deadline. Each job's record has one
 * writer (job-writer.ts): progress never lands after the final status, and no write replaces a final status already
 * on disk. The map of running jobs is a per-process registry of in-flight work, not a cache of truth: the files on
 * disk are.
 *
 * Several instances sharing BULK_DATA_DIR and Redis: a job is driven by the one instance that holds its lease
 * (job-lease.ts), renewed while it polls and downloads; an instance that loses it (cut off from Redis longer than
 * the lease, or the lease taken after it lapsed) stops at once without writing anything, and `watch` lets every
 * instance take over jobs whose lease lapsed. Without Redis: one instance, as before.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../log.js';
import type { BackendRegistration } from './config.js';
import { BulkExporter, DEFAULT_EXPORT_TIMEOUT_SECONDS, type ExportEvent, type ExportParameters, type ExportState, type ExportSummary } from './bulk-export.js';
import { describeFailure, type FailureDescription } from './export-errors.js';
import { JobWriter } from './job-writer.js';
import { isOwnFileName } from './export-state.js';
import { LocalJobLeases, type JobLeases } from './job-lease.js';
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
  /** The run is over and its lease released. */
  stopped: Promise<void>;
  /** Set when a cancel is under way here (asked here, or handed over by another instance). */
  cancelling?: Promise<{ job: JobRecord; cancelled: boolean }>;
}

/** How long a cancel asked on an instance that does not drive the job waits for the one that does. */
const CANCEL_HANDOVER_WAIT_MS = 10_000;

const JOB_ID = /^[A-Za-z0-9_-]{16}$/;

export class ExportJobs {
  private readonly running = new Map<string, Running>();
  private readonly leases: JobLeases;
  private sweeper: NodeJS.Timeout | undefined;
  /** A cache, bounded: finished jobs (final records never change), so that listing does not read them again. */
  private readonly finished = new LRUCache<string, { job: JobRecord; state: ExportState | undefined }>({ max: 1000 });
  private reads = 0;

  constructor(private readonly o: { dir: string; registrations: readonly BackendRegistration[]; tokens: BackendTokenClient; logger: Logger; leases?: JobLeases }) {
    this.leases = o.leases ?? new LocalJobLeases();
  }

  /** The jobs this instance drives now. */
  get driving(): string[] {
    return [...this.running.keys()];
  }

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
    if (await this.leases.acquire(job.id)) this.start(job);
    return job;
  }

  async get(id: string): Promise<{ job: JobRecord; state: ExportState | undefined } | undefined> {
    if (!JOB_ID.test(id)) return undefined;
    try {
      const job = this.running.get(id)?.writer.current ?? await this.readRecord(id);
      const state = await readFile(join(this.jobDir(id), 'files', '.export-state.json'), 'utf8').then((t) => JSON.parse(t) as ExportState, () => undefined);
      return { job, state };
    } catch {
      return undefined;
    }
  }

  private async readRecord(id: string): Promise<JobRecord> {
    this.reads++;
    return JSON.parse(await readFile(join(this.jobDir(id), 'job.json'), 'utf8')) as JobRecord;
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

  /**
   * The most recent jobs (newest first), at most `limit`: each job's record and its exporter's state. The console
   * polls this every few seconds, so it reads no more than it must: one directory listing, then only what may have
   * changed. A finished job never changes (its record is final, see write), so it is read once and kept in a
   * bounded cache (`finished`); jobs still running (here or on another instance) are read again each time, and
   * jobs this process drives come from memory.
   */
  async list(limit = 50): Promise<{ job: JobRecord; state: ExportState | undefined }[]> {
    const ids = (await readdir(this.o.dir).catch(() => [] as string[])).filter((id) => JOB_ID.test(id));
    const found = (await Promise.all(ids.map((id) => this.finished.get(id) ?? this.read(id)))).filter((f): f is NonNullable<typeof f> => f !== undefined);
    return found.sort((a, b) => b.job.createdAt.localeCompare(a.job.createdAt)).slice(0, limit);
  }

  /** How many times a job's record was read from disk (for the operators' metrics and tests of the cache). */
  get recordReads(): number {
    return this.reads;
  }

  private async read(id: string): Promise<{ job: JobRecord; state: ExportState | undefined } | undefined> {
    const found = await this.get(id);
    if (found && found.job.status !== 'running' && !this.running.has(id)) this.finished.set(id, found);
    return found;
  }

  /**
   * Cancels a running job: the exporter stops, the job is deleted on the FHIR server, the record says cancelled.
   * A job that is already complete, failed or cancelled is left exactly as it is (`cancelled: false`). A job driven
   * by another instance is cancelled by that instance (asked through Redis); `pending` when it has not done so
   * within a few seconds (it will, at its next lease renewal, or whoever takes the job over will).
   */
  async cancel(id: string): Promise<{ job: JobRecord; cancelled: boolean; pending?: boolean } | undefined> {
    const found = await this.get(id);
    if (!found) return undefined;
    const run = this.running.get(id);
    if (run) return this.cancelRunning(id, run);
    if (found.job.status !== 'running') return { job: found.job, cancelled: false };
    if (await this.leases.acquire(id)) {
      try {
        return await this.cancelStopped(id);
      } finally {
        await this.leases.release(id).catch(() => undefined);
      }
    }
    // Another instance drives it: only it writes the record, so it is asked to cancel, and this waits for it.
    await this.leases.requestCancel(id);
    const until = Date.now() + CANCEL_HANDOVER_WAIT_MS;
    for (;;) {
      const now = await this.get(id);
      if (!now) return undefined;
      if (now.job.status !== 'running') return { job: now.job, cancelled: now.job.status === 'cancelled' };
      if (Date.now() > until) return { job: now.job, cancelled: true, pending: true };
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private cancelRunning(id: string, run: Running): Promise<{ job: JobRecord; cancelled: boolean }> {
    run.cancelling ??= (async () => {
      if (run.writer.isFinal) return { job: run.writer.current, cancelled: false };
      run.abort.abort(new Error('cancelled'));
      await run.done;
      // The export may have completed between the check and the abort: its final status stands.
      if (run.writer.isFinal) return { job: run.writer.current, cancelled: false };
      await run.exporter.cancel().catch(() => false);
      const cancelled = await run.writer.finish({ status: 'cancelled', progress: null, updatedAt: new Date().toISOString() });
      this.o.logger.info({ event: 'bulk.job.cancelled', jobId: id }, 'bulk export job: cancelled');
      return { job: run.writer.current, cancelled };
    })();
    return run.cancelling;
  }

  /** A job recorded as running that no instance drives (this one holds its lease): deleted on the server too. */
  private async cancelStopped(id: string): Promise<{ job: JobRecord; cancelled: boolean } | undefined> {
    const found = await this.get(id); // read again under the lease
    if (!found) return undefined;
    if (found.job.status !== 'running') return { job: found.job, cancelled: false };
    // The cancelled record first, then the server's DELETE: a process still driving the job (another instance on
    // this directory without Redis) that meets the deleted job afterwards finds the record final, and its write
    // is dropped. The other way round, its `failed` could land first and the cancel be the write dropped.
    const job: JobRecord = { ...found.job, status: 'cancelled', progress: null, updatedAt: new Date().toISOString() };
    const onDisk = await this.write(job);
    if (onDisk.status !== 'cancelled') return { job: onDisk, cancelled: false }; // it finished meanwhile: that stands
    const registration = this.registration(found.job.registration);
    if (registration) await this.exporterFor(found.job, registration, new AbortController().signal, this.o.logger).cancel().catch(() => false);
    this.o.logger.info({ event: 'bulk.job.cancelled', jobId: id }, 'bulk export job: cancelled');
    return { job, cancelled: true };
  }

  /**
   * Starts every job recorded as running that no instance drives: at startup (jobs interrupted by a restart), and
   * from `watch` (jobs whose driver's lease lapsed). A job whose cancel was asked meanwhile is cancelled instead.
   */
  async resumeUnfinished(): Promise<number> {
    let n = 0;
    for (const id of await readdir(this.o.dir).catch(() => [] as string[])) {
      if (!JOB_ID.test(id) || this.running.has(id)) continue;
      try {
        if (await this.resumeOne(id)) n++;
      } catch (err) {
        // one job that cannot be resumed (its lease unreachable, its record unwritable) never stops the others
        this.o.logger.warn({ event: 'bulk.job.resume_failed', jobId: id, reason: describeFailure(err).message }, 'bulk export job: could not be resumed; the others go on');
      }
    }
    return n;
  }

  private async resumeOne(id: string): Promise<boolean> {
    const found = await this.get(id);
    if (found?.job.status !== 'running' || !(await this.leases.acquire(id))) return false;
    if (await this.leases.cancelRequested(id).catch(() => false)) {
      await this.cancelStopped(id).finally(() => this.leases.release(id).catch(() => undefined));
      return false;
    }
    const current = await this.get(id); // read again under the lease: it may have finished meanwhile
    if (current?.job.status !== 'running') {
      await this.leases.release(id).catch(() => undefined);
      return false;
    }
    this.o.logger.info({ event: 'bulk.job.resume', jobId: id }, 'bulk export job: resuming (after a restart, or taken over from an instance whose lease lapsed)');
    this.start(current.job);
    return true;
  }

  /**
   * Resumes unfinished jobs now and, when other instances may drive jobs (Redis), looks again every lease period
   * to take over jobs whose lease lapsed. stopAll ends it.
   */
  watch(): Promise<number> {
    if (this.leases.shared && !this.sweeper) {
      this.sweeper = setInterval(() => {
        void this.resumeUnfinished().catch((err: Error) => this.o.logger.warn({ event: 'bulk.job.sweep_failed', reason: err.message }, 'bulk export jobs: looking for jobs to take over failed'));
      }, this.leases.ttlMs);
      this.sweeper.unref();
    }
    return this.resumeUnfinished();
  }

  /** Stops every job this instance drives (shutdown), and hands them over: their leases are released. */
  async stopAll(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const run of this.running.values()) run.abort.abort(new Error('shutting down'));
    await Promise.all([...this.running.values()].map((r) => r.stopped));
  }

  private start(job: JobRecord): void {
    const registration = this.registration(job.registration);
    const log = this.o.logger.child({ jobId: job.id });
    const writer = new JobWriter(job, async (r) => { await this.write(r); });
    if (!registration) {
      void writer.finish({
        status: 'failed', updatedAt: new Date().toISOString(),
        error: { code: 'registration_missing', message: `Registration ${job.registration} is no longer configured on the server.`, causes: [] },
      }).finally(() => this.leases.release(job.id).catch(() => undefined));
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
    let exporter: BulkExporter;
    try {
      exporter = this.exporterFor(job, registration, abort.signal, log, onEvent);
    } catch (err) {
      // this job only: the others run on
      const error = { code: 'job_start_failed', message: `The export job could not start: ${describeFailure(err).message}`, causes: [] };
      log.warn({ event: 'bulk.job.failed', code: error.code, reason: error.message }, 'bulk export job failed');
      void writer.finish({ status: 'failed', error, progress: null, updatedAt: new Date().toISOString() })
        .finally(() => this.leases.release(job.id).catch(() => undefined));
      return;
    }
    const renewal = this.leases.shared ? this.keepLease(job.id, writer, abort, log) : undefined;
    const done = exporter.run(job.parameters).then(
      async (summary) => { await writer.finish({ status: 'complete', summary, progress: null, updatedAt: new Date().toISOString() }); },
      async (err: unknown) => {
        if (abort.signal.aborted) return; // cancelled or shutting down: the job stays as cancel()/restart decides
        const error = describeFailure(err);
        log.warn({ event: 'bulk.job.failed', code: error.code, reason: error.message }, 'bulk export job failed');
        await writer.finish({ status: 'failed', error, progress: null, updatedAt: new Date().toISOString() });
      },
    );
    const run: Running = { exporter, abort, writer, done, stopped: Promise.resolve() };
    // Handed over (the lease released) only once every write of this run, a cancel's included, has landed.
    run.stopped = done.then(async () => {
      if (renewal) clearInterval(renewal);
      await run.cancelling?.catch(() => undefined);
      await writer.settled().catch(() => undefined);
      this.running.delete(job.id);
      await this.leases.release(job.id).catch(() => undefined);
    });
    this.running.set(job.id, run);
  }

  /**
   * Renews the job's lease while it runs. Lost (taken by another instance after it lapsed), or not renewed for a
   * whole lease period (Redis unreachable: another instance may take it over now): the job stops here at once and
   * nothing more is written. A cancel asked on another instance is carried out here.
   */
  private keepLease(id: string, writer: JobWriter<JobRecord>, abort: AbortController, log: Logger): NodeJS.Timeout {
    let renewedAt = Date.now();
    let busy = false;
    const lose = (reason: string) => {
      if (abort.signal.aborted) return;
      log.warn({ event: 'bulk.job.lease_lost', reason }, 'bulk export job: this instance no longer holds the job\'s lease; stopping here (another instance drives it)');
      writer.abandon();
      abort.abort(new Error('lease lost'));
    };
    const timer = setInterval(() => {
      if (busy || abort.signal.aborted) return;
      busy = true;
      void this.leases.renew(id).then(
        (r) => {
          if (r === 'lost') return lose('taken');
          renewedAt = Date.now();
          const run = this.running.get(id);
          if (r === 'cancel' && run) void this.cancelRunning(id, run).catch(() => undefined);
        },
        () => { if (Date.now() - renewedAt >= this.leases.ttlMs) lose('not renewed'); },
      ).finally(() => { busy = false; });
    }, this.leases.renewMs);
    timer.unref();
    return timer;
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

  /**
   * Writes a job's record, unless the record on disk is already final: a late write never revives a finished or
   * cancelled job. Resolves to the record on disk afterwards (this one, or the final one that stood).
   */
  private async write(job: JobRecord): Promise<JobRecord> {
    const path = join(this.jobDir(job.id), 'job.json');
    const onDisk = await readFile(path, 'utf8').then((t) => JSON.parse(t) as JobRecord, () => undefined);
    if (onDisk && onDisk.status !== 'running') {
      this.o.logger.info({ event: 'bulk.job.write_dropped', jobId: job.id, on_disk: onDisk.status, dropped: job.status }, 'bulk export job: the record is already final; a later write is dropped');
      return onDisk;
    }
    const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, JSON.stringify(job, null, 2));
    await rename(tmp, path);
    return job;
  }
}
