/**
 * Tokens per launch context, kept apart from the session document so that a refresh is never undone by a
 * stale whole-session save (express-session saves the whole session, last write wins). Each write replaces
 * the whole token set at once. The in-memory store is a bounded cache (LRU + TTL) and says so; it serves one
 * instance only. RedisTokenStore (redis-store.ts) shares tokens and the refresh lock across instances.
 *
 * A token set lives as long as the session that holds its context, never longer (session-endings.ts): it is
 * stored with the session's remaining life plus a grace period (tokenTtlMs), pushed forward at the session's
 * own (throttled) touches and saves with `extend`, kept as it is by a refresh (`replace`), and removed by whoever
 * ends its context with `take`, which hands it out once, so that its tokens are revoked once.
 */
import type { LRUCache } from 'lru-cache';
import { LazyLru } from '../lazy-lru.js';

export interface TokenSet {
  accessToken: string;
  tokenType: string;
  refreshToken?: string;
  idToken?: string;
  /** Epoch ms; undefined when the server gave no expires_in. */
  expiresAt?: number;
  /** Where the access token may be sent: the FHIR base of the launch that earned it. */
  fhirBaseUrl: string;
  registration: string;
}

export interface TokenStore {
  get(contextId: string): Promise<TokenSet | undefined>;
  /**
   * The token set from a read cache, when the store has one (CachingTokenStore, for a store shared through
   * Redis): possibly a few seconds old, never older than the last write announced to this instance. For the
   * proxy's calls; whatever decides a refresh reads with `get`.
   */
  cached?(contextId: string): Promise<TokenSet | undefined>;
  /**
   * The token set when it is in this process's memory and can be had without waiting: the memory store's own
   * value, or a hit in a caching store's read cache (as fresh as `cached`'s). Undefined when it is not: the caller
   * then reads with `cached` or `get`. The proxy's fast path.
   */
  peek?(contextId: string): TokenSet | undefined;
  /** Stores a new token set for `ttlSeconds`. */
  set(contextId: string, tokens: TokenSet, ttlSeconds: number): Promise<void>;
  /**
   * Replaces a token set that is still stored (a refresh), keeping its expiry. False when it is gone: its context
   * ended meanwhile, and the new tokens must not be stored (nor left unrevoked).
   */
  replace(contextId: string, tokens: TokenSet): Promise<boolean>;
  /** Removes and returns a token set, atomically: of several callers (instances), one gets it. */
  take(contextId: string): Promise<TokenSet | undefined>;
  /** Sets the expiry of these token sets, those still stored, to `ttlSeconds` from now. */
  extend(contextIds: readonly string[], ttlSeconds: number): Promise<void>;
  delete(contextId: string): Promise<void>;
  /**
   * A short lock so one refresh happens across all instances. Resolves to a release function, or undefined
   * when another holder has it.
   */
  tryLock(contextId: string, ttlMs: number): Promise<(() => Promise<void>) | undefined>;
}

export interface MemoryTokenStoreOptions {
  /**
   * Token sets held at most: app.ts sizes it for every context of every session the memory session store can
   * hold, so that a live session's tokens are never pushed out.
   */
  max?: number;
  /**
   * Called with a token set pushed out because the store was full (never for one taken, deleted or expired):
   * its tokens are still valid at the EHR, so the app revokes them (context-endings.ts) rather than forget them.
   */
  onEvict?: (contextId: string, tokens: TokenSet) => void;
}

export class MemoryTokenStore implements TokenStore {
  /** Made at the first token set kept (lazy-lru.ts): sized for every session's contexts, it is large. */
  private readonly lazy: LazyLru<string, TokenSet>;
  private readonly locks = new Set<string>();
  constructor(opts: MemoryTokenStoreOptions = {}) {
    const onEvict = opts.onEvict;
    this.lazy = new LazyLru<string, TokenSet>({
      max: opts.max ?? 10_000,
      // ttlAutopurge: an expired token set leaves memory when it expires, not when it is next looked at.
      ttlAutopurge: true,
      // the clock read fresh for every expiry check: lru-cache's default keeps a reading for 1 ms (with a timer),
      // older than a set made within it, so a remaining TTL could exceed the TTL just set (and `replace` push the
      // expiry later by as much)
      ttlResolution: 0,
      ...(onEvict ? { dispose: (tokens: TokenSet, contextId: string, reason: LRUCache.DisposeReason) => { if (reason === 'evict') onEvict(contextId, tokens); } } : {}),
    });
  }

  private get cache(): LRUCache<string, TokenSet> {
    return this.lazy.cache;
  }
  async get(contextId: string): Promise<TokenSet | undefined> {
    return this.peek(contextId);
  }
  /** The stored token set, at once (a read never makes the cache: nothing can be in one not yet made). */
  peek(contextId: string): TokenSet | undefined {
    return this.lazy.made?.get(contextId);
  }
  async set(contextId: string, tokens: TokenSet, ttlSeconds: number): Promise<void> {
    this.cache.set(contextId, tokens, { ttl: ttlSeconds * 1000 });
  }
  async replace(contextId: string, tokens: TokenSet): Promise<boolean> {
    const ttl = this.cache.getRemainingTTL(contextId);
    if (!this.cache.has(contextId) || ttl <= 0) return false;
    this.cache.set(contextId, tokens, Number.isFinite(ttl) ? { ttl } : {});
    return true;
  }
  async take(contextId: string): Promise<TokenSet | undefined> {
    const tokens = this.cache.get(contextId);
    this.cache.delete(contextId);
    return tokens;
  }
  async extend(contextIds: readonly string[], ttlSeconds: number): Promise<void> {
    for (const id of contextIds) {
      const tokens = this.cache.get(id, { updateAgeOnGet: false });
      if (tokens) this.cache.set(id, tokens, { ttl: ttlSeconds * 1000 });
    }
  }
  async delete(contextId: string): Promise<void> {
    this.cache.delete(contextId);
  }
  async tryLock(contextId: string, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
    if (this.locks.has(contextId)) return undefined;
    this.locks.add(contextId);
    const timer = setTimeout(() => this.locks.delete(contextId), ttlMs);
    timer.unref();
    return async () => {
      clearTimeout(timer);
      this.locks.delete(contextId);
    };
  }
  /** Whether a token set is held in memory at all, expired or not (tests: nothing is left behind). */
  holds(contextId: string): boolean {
    return this.cache.peek(contextId, { allowStale: true }) !== undefined;
  }
  /** Seconds a token set has left (tests); undefined when none is held. */
  remainingSeconds(contextId: string): number | undefined {
    return this.cache.has(contextId) ? this.cache.getRemainingTTL(contextId) / 1000 : undefined;
  }
}
