/**
 * The state an export keeps in its output directory (`.export-state.json`): what was asked, the status URL, the
 * manifest and each file's progress, so an interrupted export resumes. Writes are serialised and atomic (write,
 * then rename). An export resumes only when the new request is the same request: `requestDifferences` says what
 * differs otherwise.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { normalizeOutputFormat } from './ndjson.js';

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

export interface FileState {
  url: string;
  type: string;
  kind: 'output' | 'error';
  /** File name in the output directory. */
  path: string;
  done: boolean;
  bytes: number;
  /** Non-empty NDJSON lines received (one resource each). */
  resources: number;
  /** The manifest's `count`, when it gives one. */
  expectedCount?: number;
}

export interface ExportState {
  version: 1;
  fhirBaseUrl: string;
  clientId?: string;
  parameters: ExportParameters;
  startedAt: string;
  statusUrl?: string;
  manifest?: Manifest;
  files: FileState[];
  finishedAt?: string;
  cancelled?: boolean;
  /** The job was deleted on the server after every file was downloaded and verified. */
  deletedOnServer?: boolean;
}

export const STATE_FILE = '.export-state.json';

export class ExportStateFile {
  private writing: Promise<void> = Promise.resolve();
  readonly path: string;

  constructor(readonly dir: string) {
    this.path = join(dir, STATE_FILE);
  }

  async load(): Promise<ExportState | undefined> {
    try {
      return JSON.parse(await readFile(this.path, 'utf8')) as ExportState;
    } catch {
      return undefined;
    }
  }

  /** Serialised (parallel downloads finish together) and atomic. Each write stores the state as it is then. */
  save(state: ExportState): Promise<void> {
    const text = JSON.stringify(state, null, 2);
    this.writing = this.writing.catch(() => undefined).then(async () => {
      await writeFile(`${this.path}.tmp`, text);
      await rename(`${this.path}.tmp`, this.path);
    });
    return this.writing;
  }

  /** Removes the state and the files it lists (a fresh start never mixes two exports' files). */
  async discard(state: ExportState): Promise<void> {
    await this.writing.catch(() => undefined);
    for (const f of state.files) {
      if (!isOwnFileName(f.path)) continue;
      await rm(join(this.dir, f.path), { force: true });
      await rm(join(this.dir, `${f.path}.part`), { force: true });
    }
    await rm(this.path, { force: true });
  }
}

/** File names the exporter writes (never a path): anything else in a state file is not ours to delete. */
export function isOwnFileName(name: string): boolean {
  return /^[A-Za-z0-9_-]+\.ndjson$/.test(name);
}

export { normalizeOutputFormat };

const list = (v: readonly string[] | undefined) => [...new Set(v ?? [])].sort().join(',');
const instant = (v: string | undefined) => (v && !Number.isNaN(Date.parse(v)) ? new Date(Date.parse(v)).toISOString() : v ?? '');

/** What differs between an earlier request and this one (empty: the same request; resuming is safe). */
export function requestDifferences(
  before: { fhirBaseUrl: string; clientId?: string | undefined; parameters: ExportParameters },
  now: { fhirBaseUrl: string; clientId?: string | undefined; parameters: ExportParameters },
): string[] {
  const out: string[] = [];
  const show = (v: string) => v || '(none)';
  const cmp = (name: string, a: string, b: string) => { if (a !== b) out.push(`${name}: ${show(a)} → ${show(b)}`); };
  cmp('FHIR base', before.fhirBaseUrl.replace(/\/+$/, ''), now.fhirBaseUrl.replace(/\/+$/, ''));
  if (before.clientId !== undefined && now.clientId !== undefined) cmp('client id', before.clientId, now.clientId);
  const a = before.parameters;
  const b = now.parameters;
  cmp('level', a.level, b.level);
  cmp('group', a.groupId ?? '', b.groupId ?? '');
  cmp('types', list(a.types), list(b.types));
  cmp('since', instant(a.since), instant(b.since));
  cmp('type filters', list(a.typeFilters), list(b.typeFilters));
  cmp('output format', normalizeOutputFormat(a.outputFormat), normalizeOutputFormat(b.outputFormat));
  return out;
}
