/**
 * A FHIR Bulk Data Access 2.0 export client: kick-off (system, Patient, Group), polling that honours
 * Retry-After (with a default and a cap) and reports X-Progress, then the manifest's files downloaded several at
 * a time, streamed to disk (`.part`, then renamed), with the token only when `requiresAccessToken` says so and
 * never to another origin a download redirects to. Transient failures (429, 5xx, resets) are retried with
 * backoff, 429s after their Retry-After; a 401 renews the token once. State is kept in the output directory so
 * an interrupted export resumes without downloading complete files again; cancel() deletes the job.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from '../log.js';
import type { SystemToken } from './token-client.js';

export interface ExportParameters {
  level: 'system' | 'patient' | 'group';
  groupId?: string;
  types?: string[];
  since?: string;
  typeFilters?: string[];
  outputFormat?: string;
}

export interface ManifestEntry { type: string; url: string; count?: number }
export interface Manifest {
  transactionTime: string;
  request: string;
  requiresAccessToken: boolean;
  output: ManifestEntry[];
  error: ManifestEntry[];
}

export interface FileState { url: string; type: string; kind: 'output' | 'error'; path: string; done: boolean; bytes: number; resources: number }
export interface ExportState {
  version: 1;
  fhirBaseUrl: string;
  parameters: ExportParameters;
  startedAt: string;
  statusUrl?: string;
  manifest?: Manifest;
  files: FileState[];
  finishedAt?: string;
  cancelled?: boolean;
}

export type ExportEvent =
  | { phase: 'kickoff'; statusUrl: string }
  | { phase: 'polling'; progress: string | null; retryAfterSeconds: number }
  | { phase: 'manifest'; files: number }
  | { phase: 'file'; file: FileState; filesDone: number; filesTotal: number; bytes: number }
  | { phase: 'retry'; what: string; attempt: number; waitMs: number; reason: string };

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
}

export interface ExporterOptions {
  fhirBaseUrl: string;
  outDir: string;
  /** A valid token; `forceRenew` after a 401. */
  token: (forceRenew?: boolean) => Promise<SystemToken>;
  logger: Logger;
  concurrency?: number;
  pollDefaultSeconds?: number;
  pollMaxSeconds?: number;
  maxRetries?: number;
  retryBaseMs?: number;
  requestTimeoutMs?: number;
  signal?: AbortSignal;
  onEvent?: (e: ExportEvent) => void;
}

export class ExportError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message);
    this.name = 'ExportError';
  }
}

const STATE_FILE = '.export-state.json';
const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((resolve, reject) => {
  if (signal?.aborted) return reject(signal.reason);
  const t = setTimeout(resolve, ms);
  signal?.addEventListener('abort', () => { clearTimeout(t); reject(signal.reason); }, { once: true });
});

export function retryAfterMs(value: string | null, fallbackSeconds: number, capSeconds: number): number {
  let seconds = fallbackSeconds;
  if (value) {
    if (/^\d+$/.test(value.trim())) seconds = Number(value.trim());
    else {
      const at = Date.parse(value);
      if (!Number.isNaN(at)) seconds = Math.max(0, (at - Date.now()) / 1000);
    }
  }
  return Math.min(capSeconds, Math.max(0, seconds)) * 1000;
}

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

export class BulkExporter {
  private state: ExportState | undefined;
  private saving: Promise<void> = Promise.resolve();
  private readonly concurrency: number;

  constructor(private readonly o: ExporterOptions) {
    this.concurrency = Math.max(1, Math.min(16, o.concurrency ?? 4));
  }

  get statusUrl(): string | undefined {
    return this.state?.statusUrl;
  }

  async run(parameters: ExportParameters): Promise<ExportSummary> {
    const started = Date.now();
    await mkdir(this.o.outDir, { recursive: true });
    const previous = await this.loadState();
    const resumed = Boolean(previous && previous.fhirBaseUrl === this.o.fhirBaseUrl && !previous.cancelled && !previous.finishedAt);
    this.state = resumed ? previous! : { version: 1, fhirBaseUrl: this.o.fhirBaseUrl, parameters, startedAt: new Date().toISOString(), files: [] };
    if (!this.state.statusUrl) {
      this.state.statusUrl = await this.kickoff(parameters);
      await this.saveState();
    }
    if (!this.state.manifest) {
      this.state.manifest = await this.poll(this.state.statusUrl);
      this.state.files = this.filesFor(this.state.manifest);
      await this.saveState();
      this.o.onEvent?.({ phase: 'manifest', files: this.state.files.length });
    }
    await this.downloadAll();
    this.state.finishedAt = new Date().toISOString();
    await this.saveState();
    return this.summary(started, resumed);
  }

  /** Deletes the job on the server (Ctrl-C, or a cancel request). */
  async cancel(): Promise<boolean> {
    const statusUrl = this.state?.statusUrl ?? (await this.loadState())?.statusUrl;
    if (!statusUrl) return false;
    const res = await this.authorized(statusUrl, { method: 'DELETE' }, AbortSignal.timeout(this.o.requestTimeoutMs ?? 60_000));
    await res.body?.cancel();
    if (this.state) {
      this.state.cancelled = true;
      await this.saveState().catch(() => undefined);
    }
    this.o.logger.info({ event: 'bulk.cancel', status: res.status }, 'bulk export: job deleted on the server');
    return res.status < 300 || res.status === 404;
  }

  private async kickoff(p: ExportParameters): Promise<string> {
    const url = kickoffUrl(this.o.fhirBaseUrl, p);
    const res = await this.withRetries('kick-off', () => this.authorized(url.href, { headers: { accept: 'application/fhir+json', prefer: 'respond-async' } }));
    if (res.status !== 202) throw new ExportError(`Kick-off answered ${res.status}: ${await outcomeText(res)}`, res.status);
    await res.body?.cancel();
    const location = res.headers.get('content-location');
    if (!location) throw new ExportError('Kick-off answered 202 without a Content-Location (status URL).');
    const statusUrl = new URL(location, url).href;
    this.o.logger.info({ event: 'bulk.kickoff', level: p.level, types: p.types ?? null, since: p.since ?? null }, 'bulk export: started');
    this.o.onEvent?.({ phase: 'kickoff', statusUrl });
    return statusUrl;
  }

  private async poll(statusUrl: string): Promise<Manifest> {
    const fallback = this.o.pollDefaultSeconds ?? 5;
    const cap = this.o.pollMaxSeconds ?? 120;
    for (;;) {
      const res = await this.withRetries('status', () => this.authorized(statusUrl, { headers: { accept: 'application/json' } }));
      if (res.status === 202) {
        await res.body?.cancel();
        const wait = retryAfterMs(res.headers.get('retry-after'), fallback, cap);
        this.o.onEvent?.({ phase: 'polling', progress: res.headers.get('x-progress'), retryAfterSeconds: wait / 1000 });
        await sleep(wait, this.o.signal);
        continue;
      }
      if (res.status === 200) {
        const manifest = (await res.json()) as Manifest;
        if (!Array.isArray(manifest.output)) throw new ExportError('The completed export has no output list.');
        manifest.error ??= [];
        return manifest;
      }
      throw new ExportError(`The export failed: status ${res.status}: ${await outcomeText(res)}`, res.status);
    }
  }

  private filesFor(m: Manifest): FileState[] {
    const counts = new Map<string, number>();
    const name = (type: string) => {
      const n = (counts.get(type) ?? 0) + 1;
      counts.set(type, n);
      return `${type.replace(/[^A-Za-z0-9_-]/g, '_')}-${n}.ndjson`;
    };
    return [
      ...m.output.map((e) => ({ url: e.url, type: e.type, kind: 'output' as const, path: name(e.type), done: false, bytes: 0, resources: 0 })),
      ...m.error.map((e) => ({ url: e.url, type: e.type, kind: 'error' as const, path: `error-${name(e.type)}`, done: false, bytes: 0, resources: 0 })),
    ];
  }

  private async downloadAll(): Promise<void> {
    const files = this.state!.files;
    let next = 0;
    let done = files.filter((f) => f.done).length;
    const worker = async () => {
      while (next < files.length) {
        const file = files[next++]!;
        if (file.done && (await exists(join(this.o.outDir, file.path), file.bytes))) continue;
        await this.download(file);
        done++;
        await this.saveState();
        this.o.onEvent?.({ phase: 'file', file, filesDone: done, filesTotal: files.length, bytes: files.reduce((s, f) => s + f.bytes, 0) });
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, worker));
  }

  private async download(file: FileState): Promise<void> {
    const requiresToken = this.state!.manifest!.requiresAccessToken !== false;
    const res = await this.withRetries(`download ${file.path}`, () => this.get(file.url, requiresToken));
    if (res.status !== 200 || !res.body) throw new ExportError(`Downloading ${file.url} answered ${res.status}`, res.status);
    const target = join(this.o.outDir, file.path);
    let bytes = 0;
    let lines = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
        cb(null, chunk);
      },
    });
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), counter, createWriteStream(`${target}.part`), { signal: this.o.signal });
    await rename(`${target}.part`, target);
    Object.assign(file, { done: true, bytes, resources: lines });
    this.o.logger.info({ event: 'bulk.file', file: file.path, type: file.type, kind: file.kind, bytes, resources: lines }, 'bulk export: file downloaded');
  }

  /** GET a file, following redirects by hand: the Authorization header never goes to another origin. */
  private async get(url: string, withToken: boolean): Promise<Response> {
    let current = new URL(url);
    const origin = current.origin;
    for (let hop = 0; hop < 5; hop++) {
      const sameOrigin = current.origin === origin;
      const res = withToken && sameOrigin
        ? await this.authorized(current.href, { headers: { accept: 'application/fhir+ndjson' } })
        : await fetch(current, { headers: { accept: 'application/fhir+ndjson' }, redirect: 'manual', signal: this.signal() });
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        current = new URL(location, current);
        continue;
      }
      return res;
    }
    throw new ExportError(`Too many redirects downloading ${url}`);
  }

  /** A request with the bearer token; a 401 renews the token once and tries again. */
  private async authorized(url: string, init: RequestInit & { headers?: Record<string, string> }, signal?: AbortSignal): Promise<Response> {
    const send = async (renew: boolean) => {
      const token = await this.o.token(renew);
      return fetch(url, { ...init, headers: { ...(init.headers ?? {}), authorization: `Bearer ${token.accessToken}` }, redirect: 'manual', signal: signal ?? this.signal() });
    };
    const res = await send(false);
    if (res.status !== 401) return res;
    await res.body?.cancel();
    this.o.logger.info({ event: 'bulk.token_renew' }, 'bulk export: 401; renewing the token');
    return send(true);
  }

  private signal(): AbortSignal {
    const timeout = AbortSignal.timeout(this.o.requestTimeoutMs ?? 60_000);
    return this.o.signal ? AbortSignal.any([this.o.signal, timeout]) : timeout;
  }

  /** Retries 429 (after its Retry-After), 5xx and network failures with exponential backoff. */
  private async withRetries(what: string, send: () => Promise<Response>): Promise<Response> {
    const max = this.o.maxRetries ?? 5;
    const base = this.o.retryBaseMs ?? 500;
    for (let attempt = 1; ; attempt++) {
      let reason: string;
      let waitMs: number;
      try {
        const res = await send();
        if (res.status !== 429 && res.status < 500) return res;
        reason = `status ${res.status}`;
        waitMs = res.status === 429 ? retryAfterMs(res.headers.get('retry-after'), base / 1000 * 2 ** attempt, this.o.pollMaxSeconds ?? 120) : base * 2 ** (attempt - 1);
        if (attempt > max) return res;
        await res.body?.cancel();
      } catch (err) {
        if (this.o.signal?.aborted) throw err;
        if (attempt > max) throw new ExportError(`${what} failed after ${max} retries: ${(err as Error).message}`);
        reason = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
        waitMs = base * 2 ** (attempt - 1);
      }
      this.o.logger.warn({ event: 'bulk.retry', what, attempt, wait_ms: waitMs, reason }, `bulk export: ${what}: ${reason}; retrying`);
      this.o.onEvent?.({ phase: 'retry', what, attempt, waitMs, reason });
      await sleep(waitMs, this.o.signal);
    }
  }

  private async loadState(): Promise<ExportState | undefined> {
    try {
      return JSON.parse(await readFile(join(this.o.outDir, STATE_FILE), 'utf8')) as ExportState;
    } catch {
      return undefined;
    }
  }

  /** Writes are serialised (parallel downloads finish together) and atomic (write, then rename). */
  private saveState(): Promise<void> {
    const path = join(this.o.outDir, STATE_FILE);
    this.saving = this.saving.catch(() => undefined).then(async () => {
      await writeFile(`${path}.tmp`, JSON.stringify(this.state, null, 2));
      await rename(`${path}.tmp`, path);
    });
    return this.saving;
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
    };
  }
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

export async function removeExportState(outDir: string): Promise<void> {
  await rm(join(outDir, STATE_FILE), { force: true });
}
