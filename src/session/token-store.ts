/**
 * Tokens per launch context, kept apart from the session document so that a refresh is never undone by a
 * stale whole-session save. The in-memory store is a bounded cache (LRU + TTL) and says so; it serves one
 * instance only (a shared store for several instances replaces it without changing callers).
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
}

export class MemoryTokenStore implements TokenStore {
  private readonly cache: LRUCache<string, TokenSet>;
  constructor(opts: { max?: number } = {}) {
    this.cache = new LRUCache<string, TokenSet>({ max: opts.max ?? 10_000, ttlAutopurge: false });
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
}
