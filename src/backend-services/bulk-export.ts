/**
 * A FHIR Bulk Data Access 2.0 export client: kick-off (system, Patient, Group), status polling that waits as long
 * as the server asks (Retry-After, 429) within an overall deadline, then the manifest's files downloaded several
 * at a time, streamed to disk (`.part`, then renamed) and verified (bytes received, the manifest's `count`), and
 * finally a DELETE of the job on the server so it can free the files (unless `keep`).
 *
 * The access token goes only to the FHIR server's origin and to trusted origins (token-origins.ts): a manifest
 * that names another origin for files that need the token is refused before anything is downloaded, files with
 * `requiresAccessToken: false` are fetched without it, and a redirect never carries it to another origin.
 * Failures are classified once (retry.ts): token errors such as invalid_client fail at once; network errors and
 * 5xx are retried with backoff; 429 waits as asked without using up the retries.
 *
 * State is kept in the output directory: an interrupted export resumes without downloading complete files
 * again, but only when the new request is the same request.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../log.js';
import type { SystemToken } from './token-client.js';
import { ExportError, ExportErrorCode } from './export-errors.js';
import { ExportStateFile, requestDifferences, type ExportParameters, type ExportState, type FileState, type Manifest, type ManifestEntry } from './export-state.js';
import { Deadline, DeadlineExceededError, PERMANENT, decideStatus, parseRetryAfter, sleep, withRetries, type RetryDecision, type RetryEvent } from './retry.js';
import { TokenOrigins } from './token-origins.js';
import { displayUrl, scrubQueryValues } from './display-url.js';
import { FileUrlGuard } from './file-url-guard.js';

export type { ExportParameters, ExportState, FileState, Manifest, ManifestEntry };
export { ExportError, ExportErrorCode };

/** Default overall deadline for an export (CLI --timeout, API timeoutSeconds): six hours. */
export const DEFAULT_EXPORT_TIMEOUT_SECONDS = 6 * 3600;

export type ExportEvent =
  | { phase: 'kickoff'; statusUrl: string }
  | { phase: 'resumed'; statusUrl: string | undefined; filesDone: number; filesTotal: number }
  | { phase: 'polling'; progress: string | null; retryAfterSeconds: number }
  | { phase: 'manifest'; files: number }
  | { phase: 'file'; file: FileState; filesDone: number; filesTotal: number; bytes: number; resources: number }
  | ({ phase: 'retry' } & RetryEvent)
  | { phase: 'deleted'; ok: boolean; status: number | null };

export interface ExportSummary {
  outDir: string;
  files: number;
  errorFiles: number;
  resourcesByType: Record<string, number>;
  errors: number;
  bytes: number;
  seconds: number;
  resumed: boolean;
  transactionTime: string | undefined;
  /** The job was deleted on the server after the download (false with `keep`, or when the DELETE failed). */
  deletedOnServer: boolean;
}

export interface ExporterOptions {
  fhirBaseUrl: string;
  outDir: string;
  /** A valid token; `forceRenew` after a 401. */
  token: (forceRenew?: boolean) => Promise<SystemToken>;
  logger: Logger;
  /** Recorded with the state: an export started by another client is not resumed. */
  clientId?: string;
  /** Origins besides the FHIR server's that may receive the token (a file host of the FHIR server). */
  trustedOrigins?: readonly string[];
  /** How file URLs' host names are resolved for the address check (file-url-guard.ts); the system resolver by default. */
  lookup?: (hostname: string) => Promise<string[]>;
  /** Overall deadline in seconds from now (default six hours). */
  timeoutSeconds?: number;
  /** An absolute deadline (epoch ms), for jobs that outlive a restart; wins over timeoutSeconds. */
  deadlineAt?: number;
  /** How messages name the deadline, e.g. "--timeout 600 s". */
  timeoutLabel?: string;
  /** Leave the job on the server: no DELETE after the download, nor when the deadline passes. */
  keep?: boolean;
  /** Discard an earlier export found in outDir (its unfinished job is deleted on the server) instead of refusing. */
  fresh?: boolean;
  concurrency?: number;
  /** Wait between status polls when a 202 has no Retry-After (default 5 s; never less than 1 s). */
  pollDefaultSeconds?: number;
  /** Transient failures retried per request (default 5). */
  maxRetries?: number;
  retryBaseMs?: number;
  /** Time to wait for response headers, and the longest pause in a file's body (default 60 s). */
  requestTimeoutMs?: number;
  signal?: AbortSignal;
  onEvent?: (e: ExportEvent) => void;
}

const FILE_URL_HINT = 'Nothing more was downloaded and the job is still on the server: if the origin is the FHIR server\'s own file host, trust it and run the same export again.';

export function kickoffUrl(base: string, p: ExportParameters): URL {
  const root = base.replace(/\/+$/, '');
  const path = p.level === 'system' ? '$export' : p.level === 'patient' ? 'Patient/$export' : `Group/${encodeURIComponent(p.groupId ?? '')}/$export`;
  const url = new URL(`${root}/${path}`);
  if (p.outputFormat) url.searchParams.set('_outputFormat', p.outputFormat);
  if (p.types?.length) url.searchParams.set('_type', p.types.join(','));
  if (p.since) url.searchParams.set('_since', p.since);
  for (const f of p.typeFilters ?? []) url.searchParams.append('_typeFilter', f);
  return url;
}

const responseDecision = (res: Response): RetryDecision | undefined => decideStatus(res.status, res.headers.get('retry-after'));

export class BulkExporter {
  private state: ExportState | undefined;
  private readonly file: ExportStateFile;
  private readonly origins: TokenOrigins;
  private readonly guard: FileUrlGuard;
  private readonly concurrency: number;
  private readonly requestTimeoutMs: number;
  private deadline: Deadline | undefined;

  constructor(private readonly o: ExporterOptions) {
    this.concurrency = Math.max(1, Math.min(16, o.concurrency ?? 4));
    this.requestTimeoutMs = o.requestTimeoutMs ?? 60_000;
    this.file = new ExportStateFile(o.outDir);
    this.origins = new TokenOrigins(o.fhirBaseUrl, o.trustedOrigins ?? []);
    this.guard = new FileUrlGuard(o.fhirBaseUrl, o.trustedOrigins ?? [], o.lookup);
  }

  get statusUrl(): string | undefined {
    return this.state?.statusUrl;
  }

  async run(parameters: ExportParameters): Promise<ExportSummary> {
    const started = Date.now();
    const seconds = this.o.deadlineAt !== undefined ? Math.max(0, (this.o.deadlineAt - started) / 1000) : this.o.timeoutSeconds ?? DEFAULT_EXPORT_TIMEOUT_SECONDS;
    const deadline = new Deadline(seconds, this.o.timeoutLabel ?? `timeout ${Math.round(seconds)} s`, started);
    this.deadline = deadline;
    const deadlineSignal = AbortSignal.timeout(Math.max(1, deadline.remainingMs()));
    const signal = this.o.signal ? AbortSignal.any([this.o.signal, deadlineSignal]) : deadlineSignal;
    try {
      return await this.runWithin(parameters, started, signal);
    } catch (err) {
      if (this.o.signal?.aborted) throw err;
      if (err instanceof DeadlineExceededError || deadlineSignal.aborted) throw await this.timedOut(err as Error, deadline);
      throw err;
    }
  }

  /** Deletes the job on the server (Ctrl-C, or a cancel request) and marks the local state cancelled. */
  async cancel(): Promise<boolean> {
    const state = this.state ?? (await this.file.load());
    const statusUrl = state?.statusUrl;
    if (!state || !statusUrl) return false;
    const status = await this.deleteOnServer(statusUrl, this.shortSignal());
    state.cancelled = true;
    this.state = state;
    await this.file.save(state).catch(() => undefined);
    this.o.logger.info({ event: 'bulk.cancel', status }, 'bulk export: job deleted on the server');
    return status !== null && (status < 300 || status === 404);
  }

  private async runWithin(parameters: ExportParameters, started: number, signal: AbortSignal): Promise<ExportSummary> {
    await mkdir(this.o.outDir, { recursive: true });
    let previous = await this.file.load();
    if (previous && (this.o.fresh || previous.cancelled)) {
      await this.discard(previous, signal);
      previous = undefined;
    }
    if (previous?.finishedAt) {
      throw new ExportError(ExportErrorCode.ALREADY_COMPLETE, `${this.o.outDir} already holds a complete export (finished ${previous.finishedAt}).`, {
        hint: 'Add --fresh to replace it, or choose another --out directory.',
      });
    }
    const request = { fhirBaseUrl: this.o.fhirBaseUrl, clientId: this.o.clientId, parameters };
    if (previous) {
      const differences = requestDifferences(previous, request);
      if (differences.length) {
        throw new ExportError(ExportErrorCode.RESUME_MISMATCH, `${this.o.outDir} holds an unfinished export of a different request (${differences.join('; ')}); resuming it would mix two exports.`, {
          hint: 'Choose another --out directory, or add --fresh to discard the unfinished export (its job is deleted on the server and its files removed).',
        });
      }
    }
    const resumed = Boolean(previous);
    const state: ExportState = previous ?? {
      version: 1, fhirBaseUrl: this.o.fhirBaseUrl, ...(this.o.clientId ? { clientId: this.o.clientId } : {}), parameters, startedAt: new Date().toISOString(), files: [],
    };
    this.state = state;
    if (resumed) {
      this.o.logger.info({ event: 'bulk.resume', files_done: state.files.filter((f) => f.done).length, files: state.files.length }, 'bulk export: resuming');
      this.o.onEvent?.({ phase: 'resumed', statusUrl: state.statusUrl, filesDone: state.files.filter((f) => f.done).length, filesTotal: state.files.length });
    }
    if (!state.statusUrl) {
      state.statusUrl = await this.kickoff(parameters, signal);
      await this.file.save(state);
    }
    if (!state.manifest) {
      const manifest = await this.poll(state.statusUrl, signal);
      state.manifest = this.checkManifest(manifest, state.statusUrl);
      state.files = filesFor(state.manifest);
      await this.file.save(state);
      this.o.onEvent?.({ phase: 'manifest', files: state.files.length });
    } else {
      this.checkManifest(state.manifest, state.statusUrl); // the trusted origins may have changed since the last run
    }
    await this.downloadAll(signal);
    state.finishedAt = new Date().toISOString();
    await this.file.save(state);
    if (!this.o.keep) {
      const status = await this.deleteOnServer(state.statusUrl, this.requestSignal(signal));
      state.deletedOnServer = status !== null && (status < 300 || status === 404);
      this.o.onEvent?.({ phase: 'deleted', ok: state.deletedOnServer, status });
      await this.file.save(state);
    }
    return this.summary(started, resumed);
  }

  private async kickoff(p: ExportParameters, signal: AbortSignal): Promise<string> {
    const url = kickoffUrl(this.o.fhirBaseUrl, p);
    const res = await this.retrying('kick-off', () => this.authorized(url.href, 'The kick-off URL', { headers: { accept: 'application/fhir+json', prefer: 'respond-async' } }, signal), signal, responseDecision);
    if (res.status !== 202) {
      const text = await outcomeText(res);
      const causes = res.status === 403 || res.status === 401
        ? ['The token\'s scopes may not cover the export: ask for system/<Type>.rs (v1: system/<Type>.read) for each exported type, or system/*.rs.']
        : [];
      throw new ExportError(ExportErrorCode.KICKOFF_FAILED, `The kick-off (${url.href}) answered ${res.status}${text ? `: ${text}` : ''}`, { status: res.status, causes });
    }
    await res.body?.cancel();
    const location = res.headers.get('content-location');
    if (!location) throw new ExportError(ExportErrorCode.KICKOFF_FAILED, 'The kick-off answered 202 without a Content-Location (the status URL).');
    const statusUrl = new URL(location, url).href;
    this.o.logger.info({ event: 'bulk.kickoff', level: p.level, types: p.types ?? null, since: p.since ?? null }, 'bulk export: started');
    this.o.onEvent?.({ phase: 'kickoff', statusUrl });
    return statusUrl;
  }

  private async poll(statusUrl: string, signal: AbortSignal): Promise<Manifest> {
    const fallbackMs = Math.max(1, this.o.pollDefaultSeconds ?? 5) * 1000;
    for (;;) {
      const res = await this.retrying('status', () => this.authorized(statusUrl, 'The status URL', { headers: { accept: 'application/json' } }, signal), signal, responseDecision);
      if (res.status === 202) {
        await res.body?.cancel();
        const waitMs = Math.max(1000, parseRetryAfter(res.headers.get('retry-after')) ?? fallbackMs);
        this.o.onEvent?.({ phase: 'polling', progress: res.headers.get('x-progress'), retryAfterSeconds: waitMs / 1000 });
        this.deadline!.assertRoomFor(waitMs, 'The export is still running on the server');
        await sleep(waitMs, signal);
        continue;
      }
      if (res.status === 200) {
        try {
          return (await res.json()) as Manifest;
        } catch {
          throw new ExportError(ExportErrorCode.MANIFEST_INVALID, 'The completed export\'s manifest is not JSON.');
        }
      }
      const text = await outcomeText(res);
      throw new ExportError(ExportErrorCode.EXPORT_FAILED, `The export failed: the status URL answered ${res.status}${text ? `: ${text}` : ''}`, { status: res.status });
    }
  }

  /** The manifest's shape, and the token rule: files that need the token must be on an origin allowed to get it. */
  private checkManifest(m: Manifest, statusUrl: string): Manifest {
    if (!m || typeof m !== 'object' || !Array.isArray(m.output)) throw new ExportError(ExportErrorCode.MANIFEST_INVALID, 'The completed export has no output list.');
    const entries = (list: unknown, kind: string): ManifestEntry[] => (Array.isArray(list) ? list : []).map((e: Partial<ManifestEntry>, i) => {
      if (!e || typeof e.type !== 'string' || typeof e.url !== 'string') throw new ExportError(ExportErrorCode.MANIFEST_INVALID, `The manifest's ${kind}[${i}] has no type or url.`);
      let url: URL;
      try {
        url = new URL(e.url, statusUrl);
      } catch {
        throw new ExportError(ExportErrorCode.MANIFEST_INVALID, `The manifest's ${kind}[${i}].url is not a URL.`);
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ExportError(ExportErrorCode.MANIFEST_INVALID, `The manifest's ${kind}[${i}].url is not an http(s) URL.`);
      const unsafe = this.guard.problem(url);
      if (unsafe) throw this.refused(url, `The manifest's ${kind}[${i}].url`, unsafe);
      return { type: e.type, url: url.href, ...(typeof e.count === 'number' && Number.isInteger(e.count) && e.count >= 0 ? { count: e.count } : {}) };
    });
    const manifest: Manifest = {
      transactionTime: m.transactionTime, request: m.request, requiresAccessToken: m.requiresAccessToken !== false,
      output: entries(m.output, 'output'), error: entries(m.error, 'error'),
    };
    if (manifest.requiresAccessToken) {
      const refused = [...new Set([...manifest.output, ...manifest.error].map((e) => new URL(e.url)).filter((u) => !this.origins.allows(u)).map((u) => u.origin))];
      if (refused.length) {
        this.o.logger.warn({ event: 'bulk.untrusted_origin', origins: refused }, 'bulk export: the manifest names files on an origin that may not receive the token');
        throw new ExportError(ExportErrorCode.UNTRUSTED_ORIGIN,
          `The export's manifest says its files need the access token, and lists files on ${refused.join(', ')}. ${this.origins.refusal(`${refused[0]}/`, 'That')}`,
          { hint: 'Nothing was downloaded and the job is still on the server: fix the setting and run the same export again to pick it up.' });
      }
    }
    return manifest;
  }

  private async downloadAll(signal: AbortSignal): Promise<void> {
    const files = this.state!.files;
    const stop = new AbortController();
    const within = AbortSignal.any([signal, stop.signal]);
    let next = 0;
    let failure: { error: unknown } | undefined;
    const worker = async () => {
      while (!within.aborted && next < files.length) {
        const file = files[next++]!;
        if (file.done && (await exists(join(this.o.outDir, file.path), file.bytes))) continue;
        file.done = false;
        try {
          await this.download(file, within);
        } catch (error) {
          failure ??= { error };
          stop.abort(error);
          return;
        }
        await this.file.save(this.state!);
        this.o.onEvent?.({
          phase: 'file', file, filesDone: files.filter((f) => f.done).length, filesTotal: files.length,
          bytes: files.reduce((s, f) => s + f.bytes, 0), resources: files.filter((f) => f.done && f.kind === 'output').reduce((s, f) => s + f.resources, 0),
        });
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, worker));
    if (failure) throw failure.error;
    if (signal.aborted) throw signal.reason;
  }

  private async download(file: FileState, signal: AbortSignal): Promise<void> {
    const withToken = this.state!.manifest!.requiresAccessToken;
    let countMismatches = 0;
    await this.retrying(`download ${file.path}`, async () => {
      // One controller per attempt: the time to the response headers, then the longest pause in the body.
      const attempt = new AbortController();
      const attemptSignal = AbortSignal.any([signal, attempt.signal]);
      const res = await this.fetchFile(file.url, withToken, attemptSignal);
      if (res.status !== 200 || !res.body) {
        const text = scrubQueryValues(await outcomeText(res), file.url);
        throw new ExportError(ExportErrorCode.DOWNLOAD_FAILED, `Downloading ${file.path} (${displayUrl(file.url)}) answered ${res.status}${text ? `: ${text}` : ''}`, {
          status: res.status, retry: responseDecision(res) ?? PERMANENT,
        });
      }
      try {
        await this.receive(file, res, attempt, attemptSignal, () => ++countMismatches);
      } catch (err) {
        if (attempt.signal.aborted && !signal.aborted) {
          throw new ExportError(ExportErrorCode.DOWNLOAD_FAILED, `Downloading ${file.path}: no data for ${this.requestTimeoutMs / 1000} s`, { retry: { kind: 'transient', reason: 'stalled' } });
        }
        throw err;
      }
    }, signal);
  }

  /** Streams a file to `<name>.part`, counts bytes and NDJSON lines, verifies them, then renames it into place. */
  private async receive(file: FileState, res: Response, attempt: AbortController, signal: AbortSignal, countMismatch: () => number): Promise<void> {
    const target = join(this.o.outDir, file.path);
    const part = `${target}.part`;
    let bytes = 0;
    let lines = 0;
    let lineHasContent = false;
    const idleMs = this.requestTimeoutMs;
    let idle = setTimeout(() => attempt.abort(), idleMs);
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        clearTimeout(idle);
        idle = setTimeout(() => attempt.abort(), idleMs);
        bytes += chunk.length;
        let from = 0;
        for (let nl = chunk.indexOf(10); nl !== -1; from = nl + 1, nl = chunk.indexOf(10, from)) {
          if (lineHasContent || hasContent(chunk, from, nl)) lines++;
          lineHasContent = false;
        }
        if (hasContent(chunk, from, chunk.length)) lineHasContent = true;
        cb(null, chunk);
      },
      flush(cb) {
        if (lineHasContent) lines++;
        cb();
      },
    });
    try {
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), counter, createWriteStream(part), { signal });
    } finally {
      clearTimeout(idle);
    }
    const problem = await verify(part, bytes, lines, res, file.expectedCount);
    if (problem) {
      await rm(part, { force: true });
      const isCount = problem.startsWith('count');
      // A short body is a broken transfer: retried. A count that differs from the manifest's is retried once (a
      // cut on a line boundary looks like that), then reported: the server's data and its manifest disagree.
      const retry: RetryDecision = !isCount || countMismatch() === 1 ? { kind: 'transient', reason: 'verification failed' } : PERMANENT;
      this.o.logger.warn({ event: 'bulk.verify_failed', file: file.path, problem }, `bulk export: ${file.path} failed verification`);
      throw new ExportError(ExportErrorCode.VERIFICATION_FAILED, `${file.path} (${displayUrl(file.url)}) failed verification: ${problem.replace(/^count: /, '')}.`, {
        retry,
        hint: 'The files verified so far are kept and the job is still on the server: run the same export again to download the rest.',
      });
    }
    await rename(part, target);
    Object.assign(file, { done: true, bytes, resources: lines });
    this.o.logger.info({ event: 'bulk.file', file: file.path, type: file.type, kind: file.kind, bytes, resources: lines }, 'bulk export: file downloaded');
  }

  /** GET a file, following redirects by hand: the token only to the file URL's own origin, never to another. */
  private async fetchFile(url: string, withToken: boolean, signal: AbortSignal): Promise<Response> {
    let current = new URL(url);
    const origin = current.origin;
    for (let hop = 0; hop < 5; hop++) {
      const refusal = await this.guard.check(current, hop === 0 ? 'A file URL' : `The redirect of ${displayUrl(url)}`);
      if (refusal) {
        this.o.logger.warn({ event: 'bulk.file_url_refused', origin: current.origin, hop }, 'bulk export: a file URL on a non-public address or plain http was refused');
        throw new ExportError(ExportErrorCode.FILE_URL_REFUSED, refusal, { hint: FILE_URL_HINT });
      }
      const res = withToken && current.origin === origin
        ? await this.authorized(current.href, 'A file URL', { headers: { accept: 'application/fhir+ndjson' } }, signal)
        : await this.http(current.href, { headers: { accept: 'application/fhir+ndjson' } }, signal);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        current = new URL(location, current);
        if (current.protocol !== 'https:' && current.protocol !== 'http:') throw new ExportError(ExportErrorCode.DOWNLOAD_FAILED, `Downloading ${displayUrl(url)} redirects to a non-http URL.`);
        continue;
      }
      return res;
    }
    throw new ExportError(ExportErrorCode.TOO_MANY_REDIRECTS, `Too many redirects downloading ${displayUrl(url)}`);
  }

  private refused(url: URL, what: string, why: string): ExportError {
    this.o.logger.warn({ event: 'bulk.file_url_refused', origin: url.origin }, 'bulk export: a file URL on a non-public address or plain http was refused');
    return new ExportError(ExportErrorCode.FILE_URL_REFUSED, this.guard.refusal(url, what, why), { hint: FILE_URL_HINT });
  }

  /** A request with the bearer token, only to an origin allowed to get it; a 401 renews the token once and tries again. */
  private async authorized(url: string, what: string, init: RequestInit & { headers?: Record<string, string> }, signal: AbortSignal): Promise<Response> {
    if (!this.origins.allows(url)) {
      throw new ExportError(ExportErrorCode.UNTRUSTED_ORIGIN, this.origins.refusal(url, `${what} (${displayUrl(url)})`));
    }
    const send = async (renew: boolean) => {
      const token = await this.o.token(renew);
      return this.http(url, { ...init, headers: { ...(init.headers ?? {}), authorization: `Bearer ${token.accessToken}` } }, signal);
    };
    const res = await send(false);
    if (res.status !== 401) return res;
    await res.body?.cancel();
    this.o.logger.info({ event: 'bulk.token_renew' }, 'bulk export: 401; renewing the token');
    return send(true);
  }

  /** fetch with no automatic redirects and a limit on the wait for the response headers. */
  private async http(url: string, init: RequestInit, signal: AbortSignal): Promise<Response> {
    const headers = new AbortController();
    const timer = setTimeout(() => headers.abort(new DOMException(`no answer within ${this.requestTimeoutMs} ms`, 'TimeoutError')), this.requestTimeoutMs);
    try {
      return await fetch(url, { ...init, redirect: 'manual', signal: AbortSignal.any([signal, headers.signal]) });
    } catch (err) {
      if (headers.signal.aborted && !signal.aborted) throw headers.signal.reason;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private requestSignal(signal?: AbortSignal): AbortSignal {
    const timeout = AbortSignal.timeout(this.requestTimeoutMs);
    return signal && !signal.aborted ? AbortSignal.any([signal, timeout]) : timeout;
  }

  /** For a DELETE after the run's own signal has fired (deadline): the user's signal and a request timeout. */
  private shortSignal(): AbortSignal {
    return this.requestSignal(this.o.signal);
  }

  private retrying<T>(what: string, attempt: () => Promise<T>, signal: AbortSignal, classify?: (v: T) => RetryDecision | undefined): Promise<T> {
    return withRetries(what, attempt, {
      maxRetries: this.o.maxRetries ?? 5,
      baseMs: this.o.retryBaseMs ?? 500,
      ...(this.deadline ? { deadline: this.deadline } : {}),
      signal,
      onRetry: (e) => {
        this.o.logger.warn({ event: 'bulk.retry', what: e.what, attempt: e.attempt, kind: e.kind, wait_ms: e.waitMs, reason: e.reason }, `bulk export: ${e.what}: ${e.reason}; retrying`);
        this.o.onEvent?.({ phase: 'retry', ...e });
      },
    }, classify);
  }

  /** DELETE on the status URL; the status, or null when the request failed. Never throws. */
  private async deleteOnServer(statusUrl: string, signal: AbortSignal): Promise<number | null> {
    try {
      const res = await this.authorized(statusUrl, 'The status URL', { method: 'DELETE' }, signal);
      await res.body?.cancel();
      this.o.logger.info({ event: 'bulk.delete', status: res.status }, 'bulk export: job deleted on the server');
      return res.status;
    } catch (err) {
      this.o.logger.warn({ event: 'bulk.delete', outcome: 'failed', reason: (err as Error).message }, 'bulk export: deleting the job on the server failed');
      return null;
    }
  }

  /** A fresh start: the earlier export's unfinished job is deleted on the server (when it may get our token), its files removed. */
  private async discard(previous: ExportState, signal: AbortSignal): Promise<void> {
    if (previous.statusUrl && !previous.finishedAt && !previous.cancelled && this.origins.allows(previous.statusUrl)) {
      await this.deleteOnServer(previous.statusUrl, this.requestSignal(signal));
    }
    await this.file.discard(previous);
    this.o.logger.info({ event: 'bulk.discard', files: previous.files.length }, 'bulk export: earlier export discarded');
  }

  /** Past the deadline: the job is deleted on the server (unless keep) so a later run starts over, and the error says so. */
  private async timedOut(err: Error, deadline: Deadline): Promise<ExportError> {
    const state = this.state;
    let outcome = '';
    if (state?.statusUrl && !state.finishedAt) {
      if (this.o.keep) {
        outcome = ' The job was left on the server (keep): run the same export again to pick it up.';
      } else {
        const status = await this.deleteOnServer(state.statusUrl, this.shortSignal());
        state.cancelled = true;
        await this.file.save(state).catch(() => undefined);
        outcome = status !== null && (status < 300 || status === 404)
          ? ' The job was deleted on the server; run the export again with a longer timeout.'
          : ' Deleting the job on the server failed; the server expires it by itself. Run the export again with a longer timeout.';
      }
    }
    const detail = err instanceof DeadlineExceededError ? ` ${err.message}` : '';
    this.o.logger.warn({ event: 'bulk.timeout', seconds: deadline.seconds, keep: Boolean(this.o.keep) }, 'bulk export: deadline passed');
    return new ExportError(ExportErrorCode.TIMEOUT, `The export did not finish within ${deadline.label}.${detail}${outcome}`, { cause: err });
  }

  private summary(started: number, resumed: boolean): ExportSummary {
    const files = this.state!.files;
    const resourcesByType: Record<string, number> = {};
    for (const f of files.filter((x) => x.kind === 'output')) resourcesByType[f.type] = (resourcesByType[f.type] ?? 0) + f.resources;
    return {
      outDir: this.o.outDir,
      files: files.filter((f) => f.kind === 'output').length,
      errorFiles: files.filter((f) => f.kind === 'error').length,
      resourcesByType,
      errors: files.filter((f) => f.kind === 'error').reduce((s, f) => s + f.resources, 0),
      bytes: files.reduce((s, f) => s + f.bytes, 0),
      seconds: Math.round((Date.now() - started) / 100) / 10,
      resumed,
      transactionTime: this.state!.manifest?.transactionTime,
      deletedOnServer: Boolean(this.state!.deletedOnServer),
    };
  }
}

function filesFor(m: Manifest): FileState[] {
  const counts = new Map<string, number>();
  const name = (type: string) => {
    const n = (counts.get(type) ?? 0) + 1;
    counts.set(type, n);
    return `${type.replace(/[^A-Za-z0-9_-]/g, '_')}-${n}.ndjson`;
  };
  const file = (e: ManifestEntry, kind: 'output' | 'error', path: string): FileState => ({
    url: e.url, type: e.type, kind, path, done: false, bytes: 0, resources: 0, ...(e.count !== undefined ? { expectedCount: e.count } : {}),
  });
  return [...m.output.map((e) => file(e, 'output', name(e.type))), ...m.error.map((e) => file(e, 'error', `error-${name(e.type)}`))];
}

/** A reason the received file is not what was sent, or undefined. */
async function verify(part: string, bytes: number, lines: number, res: Response, expectedCount: number | undefined): Promise<string | undefined> {
  const length = res.headers.get('content-encoding') ? null : res.headers.get('content-length');
  if (length !== null && /^\d+$/.test(length) && Number(length) !== bytes) return `received ${bytes} bytes, the server announced ${length}`;
  const written = (await stat(part)).size;
  if (written !== bytes) return `wrote ${written} bytes of the ${bytes} received`;
  if (expectedCount !== undefined && expectedCount !== lines) return `count: it holds ${lines} resources, the manifest says ${expectedCount}`;
  return undefined;
}

function hasContent(chunk: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (chunk[i] !== 13 && chunk[i] !== 32 && chunk[i] !== 9) return true;
  return false;
}

async function exists(path: string, bytes: number): Promise<boolean> {
  try {
    return (await stat(path)).size === bytes;
  } catch {
    return false;
  }
}

async function outcomeText(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const oo = JSON.parse(text) as { issue?: { diagnostics?: string; details?: { text?: string } }[] };
    return oo.issue?.map((i) => i.diagnostics ?? i.details?.text).filter(Boolean).join('; ') || text.slice(0, 200);
  } catch {
    return text.slice(0, 200);
  }
}
