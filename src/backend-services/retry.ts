/**
 * One decision for every failure the backend-services client meets (token requests, kick-off, status polls,
 * file downloads): retry it or not, and how.
 *
 *   permanent   4xx answers, OAuth errors such as invalid_client, a manifest we refuse: fail at once
 *   transient   network errors, timeouts, 5xx: exponential backoff, counted against the error budget
 *   throttled   429: wait as long as the server asks (Retry-After), never counted against the budget
 *
 * Every wait is bounded by an overall deadline when one is given: a wait that would end past it fails at once
 * with DeadlineExceededError instead of sleeping first.
 */
import { describeNetworkError, isNetworkError, isTimeout } from '../http/network-errors.js';

export type RetryDecision =
  | { readonly kind: 'permanent' }
  | { readonly kind: 'transient'; readonly reason: string; readonly retryAfterMs?: number }
  | { readonly kind: 'throttled'; readonly reason: string; readonly retryAfterMs?: number };

export const PERMANENT: RetryDecision = Object.freeze({ kind: 'permanent' });

/** An error that carries its own decision (BackendTokenError, ExportError). */
export interface DecidedError {
  readonly retry: RetryDecision;
}

/** Seconds (or an HTTP date) from a Retry-After header, as milliseconds; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The decision for an HTTP status: undefined for statuses that are not failures to retry (the caller handles them). */
export function decideStatus(status: number, retryAfter?: string | null): RetryDecision | undefined {
  const wait = parseRetryAfter(retryAfter);
  if (status === 429) return { kind: 'throttled', reason: 'status 429', ...(wait !== undefined ? { retryAfterMs: wait } : {}) };
  if (status >= 500) return { kind: 'transient', reason: `status ${status}`, ...(wait !== undefined ? { retryAfterMs: wait } : {}) };
  return undefined;
}

/** The decision for a thrown error. Errors that carry a decision keep it; fetch's network errors and timeouts are transient. */
export function decideError(err: unknown, signal?: AbortSignal): RetryDecision {
  if (signal?.aborted) return PERMANENT;
  const decided = (err as Partial<DecidedError> | null)?.retry;
  if (decided && typeof decided === 'object' && 'kind' in decided) return decided;
  if (isTimeout(err) || isNetworkError(err)) return { kind: 'transient', reason: describeNetworkError(err) };
  return PERMANENT;
}

export class DeadlineExceededError extends Error {
  constructor(message: string, readonly deadline: Deadline) {
    super(message);
    this.name = 'DeadlineExceededError';
  }
}

/** An overall deadline (the CLI's --timeout, an API job's timeoutSeconds). */
export class Deadline {
  readonly at: number;
  constructor(readonly seconds: number, readonly label: string, start = Date.now()) {
    this.at = start + seconds * 1000;
  }

  remainingMs(): number {
    return Math.max(0, this.at - Date.now());
  }

  /** Throws when waiting `ms` would end past the deadline. */
  assertRoomFor(ms: number, what: string): void {
    if (Date.now() + ms > this.at) {
      const left = Math.round(this.remainingMs() / 1000);
      throw new DeadlineExceededError(`${what}: the server asks to wait ${Math.ceil(ms / 1000)} s more, but the deadline (${this.label}) is ${left === 0 ? 'reached' : `in ${left} s`}.`, this);
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface RetryEvent {
  what: string;
  /** Transient failures so far (throttling is not counted). */
  attempt: number;
  kind: 'transient' | 'throttled';
  waitMs: number;
  reason: string;
}

export interface RetryPolicy {
  /** Transient failures retried before giving up (default 5). Throttling (429) never counts. */
  maxRetries?: number;
  /** First backoff step; doubles after each transient failure (default 500 ms). */
  baseMs?: number;
  /** Longest backoff step, and the wait after a 429 without Retry-After (default 60 s). */
  maxBackoffMs?: number;
  deadline?: Deadline;
  signal?: AbortSignal;
  onRetry?: (e: RetryEvent) => void;
}

/**
 * Runs `attempt` until it succeeds, fails permanently, or runs out of budget or time. `classify` decides on a
 * value the attempt returned (an HTTP response with a 5xx or 429); a value it leaves undefined is returned.
 * When the budget is spent the last value is returned, or the last error thrown, as they were.
 */
export async function withRetries<T>(what: string, attempt: () => Promise<T>, policy: RetryPolicy, classify?: (value: T) => RetryDecision | undefined): Promise<T> {
  const max = policy.maxRetries ?? 5;
  const base = policy.baseMs ?? 500;
  const cap = policy.maxBackoffMs ?? 60_000;
  let failures = 0;
  let throttles = 0;
  for (;;) {
    let decision: RetryDecision;
    let release: (() => Promise<void>) | undefined;
    let returned: { value: T } | undefined;
    let thrown: unknown;
    try {
      const value = await attempt();
      const d = classify?.(value);
      if (!d || d.kind === 'permanent') return value;
      decision = d;
      returned = { value };
      release = async () => { await (value as { body?: ReadableStream | null }).body?.cancel().catch(() => undefined); };
    } catch (err) {
      decision = decideError(err, policy.signal);
      if (decision.kind === 'permanent') throw err;
      thrown = err;
    }
    let waitMs: number;
    if (decision.kind === 'throttled') {
      throttles++;
      waitMs = decision.retryAfterMs ?? Math.min(cap, base * 2 ** Math.min(throttles, 16));
    } else {
      failures++;
      if (failures > max) {
        if (returned) return returned.value;
        throw thrown;
      }
      waitMs = decision.retryAfterMs ?? Math.min(cap, base * 2 ** (failures - 1));
    }
    await release?.();
    policy.deadline?.assertRoomFor(waitMs, what);
    policy.onRetry?.({ what, attempt: failures, kind: decision.kind, waitMs, reason: decision.reason });
    await sleep(waitMs, policy.signal);
  }
}
