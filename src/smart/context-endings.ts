/**
 * Ending launch contexts: whatever ends one (logout, eviction by MAX_CONTEXTS_PER_SESSION, the absolute or idle
 * timeout, a refresh token found invalid), its token set is taken from the token store (atomically: of several
 * enders, on several instances, one gets it, so its tokens are revoked once) and its tokens are revoked at the
 * EHR (token-revocation.ts), best effort, in the background: nobody's response waits for an EHR, except logout's,
 * which waits for its own revocations under a deadline of its own (routes/logout.ts).
 *
 * The background is bounded: at most REVOCATION_CONCURRENCY contexts are revoked at once (each request with
 * SMART_HTTP_TIMEOUT_MS), at most REVOCATION_BACKLOG wait; past that an ending is dropped, its tokens left to
 * expire at the EHR, and the log says so. Two lines per context: `context.ended` (why, how it was noticed, the
 * tokens' fingerprints) and `token.revocation` (what the EHR confirmed for each token). Never a token.
 */
import { fingerprint, type Logger } from '../log.js';
import type { TokenSet } from '../session/token-store.js';
import type { ContextEnding } from '../session/session-endings.js';
import type { SmartDeps } from './deps.js';
import { confirmed, revokeTokenSet, type RevocationResult, type TokenOutcome } from './token-revocation.js';

export const REVOCATION_CONCURRENCY = 16;
export const REVOCATION_BACKLOG = 10_000;

export interface ContextEndOutcome {
  contextId: string;
  /**
   * revoked: every token sent was confirmed revoked; unconfirmed: some were not (refused, timed out, unreachable);
   * unsupported: the EHR has no revocation endpoint (or the registration is gone); no_tokens: the context had
   * already ended (its tokens taken by another ender); dropped: the backlog was full; store_failed: the token
   * store could not be read.
   */
  status: 'revoked' | 'unconfirmed' | 'unsupported' | 'no_tokens' | 'dropped' | 'store_failed';
}

export interface EndOptions {
  /** Ahead of the background backlog (logout, whose response waits for it). */
  urgent?: boolean;
  /** The refresh token is known to be dead (invalid_grant): revoke the access token only. */
  refreshTokenDead?: boolean;
}

type Deps = Pick<SmartDeps, 'config' | 'tokenStore' | 'registry' | 'discovery' | 'logger' | 'metrics'>;

export class ContextEndings {
  private readonly queue: BoundedQueue;
  /** Endings in progress (a per-process set of promises, each removed when it settles). */
  private readonly inProgress = new Set<Promise<ContextEndOutcome>>();

  constructor(private readonly deps: Deps, limits: { concurrency?: number; backlog?: number } = {}) {
    this.queue = new BoundedQueue(limits.concurrency ?? REVOCATION_CONCURRENCY, limits.backlog ?? REVOCATION_BACKLOG);
  }

  /**
   * Ends these contexts: one promise per context, which never rejects and need not be awaited (the work goes on
   * in the background either way).
   */
  end(contextIds: readonly string[], ending: ContextEnding, log: Logger = this.deps.logger, opts: EndOptions = {}): Promise<ContextEndOutcome>[] {
    return contextIds.map((id) => this.track(this.endOne(id, ending, log, opts)));
  }

  /** Revokes a token set that is no longer in the store (the new tokens of a context that ended during their refresh). */
  revokeTaken(contextId: string, tokens: TokenSet, ending: ContextEnding, log: Logger = this.deps.logger): Promise<ContextEndOutcome> {
    return this.track(this.revoke(contextId, tokens, ending, log, {}));
  }

  /** Resolves when every ending started so far has finished, or after `timeoutMs` (tests, shutdown). */
  async settled(timeoutMs = 30_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs); timer.unref(); });
    await Promise.race([Promise.allSettled([...this.inProgress]).then(() => undefined), timeout]);
    clearTimeout(timer);
  }

  private track(p: Promise<ContextEndOutcome>): Promise<ContextEndOutcome> {
    this.inProgress.add(p);
    void p.finally(() => this.inProgress.delete(p));
    return p;
  }

  private async endOne(contextId: string, ending: ContextEnding, log: Logger, opts: EndOptions): Promise<ContextEndOutcome> {
    let tokens: TokenSet | undefined;
    try {
      tokens = await this.deps.tokenStore.take(contextId);
    } catch (err) {
      log.warn({ event: 'context.ended', contextId, ...endingFields(ending), revocation: 'store_failed', reason: (err as Error).message }, 'launch context ended; its tokens could not be read from the store, so they were not revoked');
      return { contextId, status: 'store_failed' };
    }
    if (!tokens) {
      log.info({ event: 'context.ended', contextId, ...endingFields(ending), revocation: 'no_tokens' }, 'launch context ended; its tokens were already gone');
      return { contextId, status: 'no_tokens' };
    }
    return this.revoke(contextId, tokens, ending, log, opts);
  }

  private async revoke(contextId: string, tokens: TokenSet, ending: ContextEnding, log: Logger, opts: EndOptions): Promise<ContextEndOutcome> {
    const fps = { refresh_fp: fingerprint(tokens.refreshToken), access_fp: fingerprint(tokens.accessToken) };
    log.info({ event: 'context.ended', contextId, ...endingFields(ending), registration: tokens.registration, ...fps, revocation: 'requested' }, 'launch context ended; its tokens are dropped here and revoked at the EHR');
    const started = Date.now();
    const ran = await this.queue.run(() => revokeTokenSet(this.deps, tokens, { log, ...(opts.refreshTokenDead ? { refreshTokenDead: true } : {}) }), opts.urgent === true);
    if (!ran.ran) {
      log.warn({ event: 'token.revocation', contextId, ...endingFields(ending), ...fps, outcome: 'dropped', backlog: REVOCATION_BACKLOG }, 'revocation: too many endings waiting; these tokens were dropped here and will expire at the EHR unrevoked');
      this.deps.metrics.tokenRevocations.inc({ reason: ending.reason, result: 'dropped' });
      return { contextId, status: 'dropped' };
    }
    const result = ran.value;
    const status = outcomeOf(result);
    this.deps.metrics.tokenRevocations.inc({ reason: ending.reason, result: status });
    const fields = {
      event: 'token.revocation', contextId, ...endingFields(ending), endpoint: result.endpoint ?? null,
      refresh: describe(result.refresh, fps.refresh_fp), access: describe(result.access, fps.access_fp), duration_ms: Date.now() - started,
      ...(result.reason ? { why: result.reason } : {}),
    };
    if (status === 'revoked') log.info(fields, 'revocation: the EHR revoked the tokens of the ended launch context');
    else if (status === 'unsupported') log.info(fields, `revocation: not possible (${result.reason}); the tokens were dropped here and expire at the EHR`);
    else log.warn(fields, 'revocation: not confirmed by the EHR; the tokens were dropped here and expire at the EHR');
    return { contextId, status };
  }
}

function endingFields(e: ContextEnding): Record<string, string> {
  return { reason: e.reason, ...(e.noticed ? { noticed: e.noticed } : {}), ...(e.sessionSha ? { session_sha: e.sessionSha } : {}) };
}

function outcomeOf(r: RevocationResult): ContextEndOutcome['status'] {
  if (!r.supported) return 'unsupported';
  return confirmed(r.refresh) && confirmed(r.access) ? 'revoked' : 'unconfirmed';
}

function describe(o: TokenOutcome, fp: string | undefined): Record<string, unknown> {
  return { ...(fp ? { fp } : {}), ...o };
}

/** Runs tasks at most `concurrency` at a time, with at most `backlog` waiting; beyond that a task is not run. */
export class BoundedQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly concurrency: number, private readonly backlog: number) {}

  /** `urgent`: ahead of the others, and never refused. */
  async run<T>(task: () => Promise<T>, urgent = false): Promise<{ ran: true; value: T } | { ran: false }> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.backlog && !urgent) return { ran: false };
      // woken with the slot of the task that finished: `running` already counts this one
      await new Promise<void>((resolve) => (urgent ? this.waiting.unshift(resolve) : this.waiting.push(resolve)));
    } else {
      this.running++;
    }
    try {
      return { ran: true, value: await task() };
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
