/**
 * Tokens per launch context, kept apart from the session document so that a refresh is never undone by a
 * stale whole-session save (express-session saves the whole session, last write wins). Each write replaces
 * the whole token set at once. The in-memory store is a bounded cache (LRU + TTL) and says so; it serves one
 * instance only. RedisTokenStore (redis-store.ts) shares tokens and the refresh lock across instances.
 */
import { LRUCache } from 'lru-cache';

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
  set(contextId: string, tokens: TokenSet, ttlSeconds: number): Promise<void>;
  delete(contextId: string): Promise<void>;
  /**
   * A short lock so one refresh happens across all instances. Resolves to a release function, or undefined
   * when another holder has it.
   */
  tryLock(contextId: string, ttlMs: number): Promise<(() => Promise<void>) | undefined>;
}

export class MemoryTokenStore implements TokenStore {
  private readonly cache: LRUCache<string, TokenSet>;
  private readonly locks = new Set<string>();
  constructor(opts: { max?: number } = {}) {
    this.cache = new LRUCache<string, TokenSet>({ max: opts.max ?? 10_000 });
  }
  async get(contextId: string): Promise<TokenSet | undefined> {
    return this.cache.get(contextId);
  }
  async set(contextId: string, tokens: TokenSet, ttlSeconds: number): Promise<void> {
    this.cache.set(contextId, tokens, { ttl: ttlSeconds * 1000 });
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
}
