/**
 * Guards against a callback delivered twice (double submit, effects run twice, the back button):
 * - CallbackDeduper: callbacks for the same state in flight at once share one token exchange (per process).
 * - RecentCodes: hashes of codes already sent to a token endpoint, to diagnose "code reused".
 * Both are bounded caches and say so; neither holds a secret (codes are stored as SHA-256 hashes).
 */
import { LRUCache } from 'lru-cache';
import { sha256Short } from '../log.js';

export interface CallbackOutcome {
  sessionId: string;
  contextId: string;
  returnTo: string;
}

export class CallbackDeduper {
  private readonly inflight = new Map<string, { sessionId: string; promise: Promise<CallbackOutcome> }>();

  /** The in-flight exchange for this state, if one was started by the same session. */
  find(state: string, sessionId: string): Promise<CallbackOutcome> | undefined {
    const entry = this.inflight.get(state);
    return entry && entry.sessionId === sessionId ? entry.promise : undefined;
  }

  run(state: string, sessionId: string, work: () => Promise<CallbackOutcome>): Promise<CallbackOutcome> {
    const promise = work().finally(() => this.inflight.delete(state));
    this.inflight.set(state, { sessionId, promise });
    return promise;
  }
}

export class RecentCodes {
  private readonly seen = new LRUCache<string, number>({ max: 50_000, ttl: 15 * 60 * 1000 });

  /** Records the code; returns when it was first sent if it had been sent before. */
  markSent(code: string): number | undefined {
    const key = sha256Short(code, 22);
    const before = this.seen.get(key);
    if (before === undefined) this.seen.set(key, Date.now());
    return before;
  }
}
