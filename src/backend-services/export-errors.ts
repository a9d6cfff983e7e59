/**
 * Typed errors of the Bulk Data client, with stable codes, and the one description of a failure that the CLI
 * prints and the operators' API stores in a failed job: code, message, the likely causes, what to do next.
 */
import { PERMANENT, DeadlineExceededError, type RetryDecision } from './retry.js';
import { hideUrlQueries } from './display-url.js';

export const ExportErrorCode = {
  KICKOFF_FAILED: 'kickoff_failed',
  EXPORT_FAILED: 'export_failed',
  MANIFEST_INVALID: 'manifest_invalid',
  UNTRUSTED_ORIGIN: 'untrusted_origin',
  FILE_URL_REFUSED: 'file_url_refused',
  DOWNLOAD_FAILED: 'download_failed',
  VERIFICATION_FAILED: 'verification_failed',
  TOO_MANY_REDIRECTS: 'too_many_redirects',
  RESUME_MISMATCH: 'resume_mismatch',
  ALREADY_COMPLETE: 'already_complete',
  TIMEOUT: 'export_timeout',
  NETWORK: 'network_error',
} as const;
export type ExportErrorCode = (typeof ExportErrorCode)[keyof typeof ExportErrorCode];

export class ExportError extends Error {
  readonly status: number | undefined;
  readonly causes: readonly string[];
  readonly hint: string | undefined;
  readonly retry: RetryDecision;
  constructor(
    readonly code: ExportErrorCode,
    message: string,
    opts: { status?: number; causes?: string[]; hint?: string; retry?: RetryDecision; cause?: unknown } = {},
  ) {
    super(message);
    this.name = 'ExportError';
    this.status = opts.status;
    this.causes = opts.causes ?? [];
    this.hint = opts.hint;
    this.retry = opts.retry ?? PERMANENT;
    if (opts.cause !== undefined) Object.defineProperty(this, 'cause', { value: opts.cause, enumerable: false });
  }
}

export interface FailureDescription {
  code: string;
  message: string;
  causes: string[];
  hint?: string;
}

/**
 * What went wrong, for a person (CLI) or a program (a failed job's JSON, its log line). Never a stack trace, and
 * never a URL's query (a presigned file URL's signature: display-url.ts), whichever error wrote it.
 */
export function describeFailure(err: unknown): FailureDescription {
  const e = err as { code?: unknown; message?: unknown; causes?: unknown; hint?: unknown } | null;
  if (err instanceof DeadlineExceededError) return { code: ExportErrorCode.TIMEOUT, message: hideUrlQueries(err.message), causes: [] };
  const code = typeof e?.code === 'string' && e.code ? e.code : 'error';
  const causes = Array.isArray(e?.causes) ? (e.causes as unknown[]).map((c) => hideUrlQueries(String(c))) : [];
  const hint = typeof e?.hint === 'string' ? hideUrlQueries(e.hint) : undefined;
  return { code, message: hideUrlQueries(typeof e?.message === 'string' ? e.message : String(err)), causes, ...(hint ? { hint } : {}) };
}

/** A failure recorded earlier (a job.json written by an older version), as it may be shown now. */
export function showFailure(f: FailureDescription): FailureDescription {
  return { ...f, message: hideUrlQueries(f.message), causes: f.causes.map(hideUrlQueries), ...(f.hint ? { hint: hideUrlQueries(f.hint) } : {}) };
}
