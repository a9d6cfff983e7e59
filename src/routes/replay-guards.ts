/**
 * Guards against a callback delivered twice (double submit, effects run twice, the back button):
 * - CallbackDeduper: callbacks for the same state from the same browser in flight at once share one token
 *   exchange (per process); the pending launch itself is single use across instances (TransactionStore.take).
 * - RecentCodes: hashes of codes already sent to a token endpoint, to diagnose "code reused".
 * Both are bounded caches and say so; neither holds a secret (codes are stored as SHA-256 hashes).
 */
import { LazyLru } from '../lazy-lru.js';
import { sha256Short } from '../log.js';

export interface CallbackOutcome {
  sessionId: string;
  contextId: string;
  returnTo: string;
}

export class CallbackDeduper {
  /** Keyed by state and browser binding: another browser's callback for the same state never joins (or replaces) this one. */
  private readonly inflight = new Map<string, Promise<CallbackOutcome>>();

  /** The in-flight callback for this state, if the same browser started it. */
  find(state: string, browser: string): Promise<CallbackOutcome> | undefined {
    return this.inflight.get(key(state, browser));
  }

  /** Runs `work` as the callback for this state and browser, registered at once (before any other request runs). */
  run(state: string, browser: string, work: () => Promise<CallbackOutcome>): Promise<CallbackOutcome> {
    const k = key(state, browser);
    const promise = work().finally(() => this.inflight.delete(k));
    this.inflight.set(k, promise);
    return promise;
  }
}

function key(state: string, browser: string): string {
  return `${state}\u0000${browser}`;
}

export class RecentCodes {
  /** Made at the first callback (lazy-lru.ts). */
  private readonly seen = new LazyLru<string, number>({ max: 50_000, ttl: 15 * 60 * 1000 });

  /** Records the code; returns when it was first sent if it had been sent before. */
  markSent(code: string): number | undefined {
    const key = sha256Short(code, 22);
    const before = this.seen.cache.get(key);
    if (before === undefined) this.seen.cache.set(key, Date.now());
    return before;
  }
}
