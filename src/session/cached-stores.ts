/**
 * The FHIR proxy's read caches (read-cache.ts) and what keeps them right: every write to the session store or the
 * token store is announced on an invalidation bus (invalidation.ts) once it has completed.
 *
 * - The session store: its `set` and `destroy` are wrapped (once per store, however many apps share it) to
 *   announce the session id. Every writer goes through them: express-session's saves, regenerations and
 *   destructions, the proxy's own (proxy-sessions.ts).
 * - The token store: CachingTokenStore wraps a shared (Redis) token store; its writes announce the context id,
 *   and `cached` reads through the cache. `get` still reads the store: what decides a refresh (whether the token
 *   changed, whether another instance refreshed it) always sees the store as it is.
 *
 * The bus belongs to the store: a LocalBus for an in-memory store (one per store object, so apps sharing one
 * store in one process share its announcements), a RedisBus for a Redis store (one per Redis client), so that
 * every instance writing to that Redis announces to every other.
 */
import type { Store } from 'express-session';
import type { Logger } from '../log.js';
import { LocalBus, RedisBus, type InvalidationBus } from './invalidation.js';
import { ReadCache } from './read-cache.js';
import type { RedisClient } from './redis-client.js';
import type { TokenSet, TokenStore } from './token-store.js';

/** Set on a store whose data lives in Redis (createRedisSessionStore, RedisTokenStore): the client to announce with. */
export const REDIS_CLIENT = Symbol.for('smart-bff.redisClient');

/** How long the proxy's caches keep a session or a token set at most (the safety net for a lost announcement). */
export const READ_CACHE_TTL_MS = 5000;

const ANNOUNCED = Symbol('smart-bff.writesAnnounced');
const LOCAL_BUSES = new WeakMap<object, LocalBus>(); // a cache: one bus per store object, gone with it
const REDIS_BUSES = new WeakMap<RedisClient, RedisBus>(); // a cache: one bus (one subscriber) per client, gone with it

/** The bus for a store's announcements (see the module comment). */
export function busFor(store: object, logger: Logger): InvalidationBus {
  const client = (store as { [REDIS_CLIENT]?: RedisClient })[REDIS_CLIENT];
  if (client) {
    let bus = REDIS_BUSES.get(client);
    if (!bus) {
      bus = new RedisBus(client, logger);
      REDIS_BUSES.set(client, bus);
      bus.start();
      // the subscriber ends with the connection it was made from
      client.once('end', () => void bus!.close());
    }
    return bus;
  }
  let bus = LOCAL_BUSES.get(store);
  if (!bus) {
    bus = new LocalBus();
    LOCAL_BUSES.set(store, bus);
  }
  return bus;
}

/** Announces every completed `set` and `destroy` of this session store (once per store). */
export function announceSessionWrites(store: Store, bus: InvalidationBus): void {
  const marked = store as Store & { [ANNOUNCED]?: true };
  if (marked[ANNOUNCED]) return;
  marked[ANNOUNCED] = true;
  const set = store.set.bind(store);
  const destroy = store.destroy.bind(store);
  store.set = (sid, sess, callback) => set(sid, sess, (err?: unknown) => {
    bus.publish('session', sid);
    callback?.(err);
  });
  store.destroy = (sid, callback) => destroy(sid, (err?: unknown) => {
    bus.publish('session', sid);
    callback?.(err);
  });
}

/** A shared token store with a read cache for the proxy (see the module comment). */
export class CachingTokenStore implements TokenStore {
  private readonly cache = new ReadCache<TokenSet>({ max: 10_000, ttlMs: READ_CACHE_TTL_MS });

  constructor(private readonly inner: TokenStore, private readonly bus: InvalidationBus) {
    bus.register('tokens', this.cache);
  }

  /** The token set, possibly a few seconds old (never older than the last announced write that reached us). */
  cached(contextId: string): Promise<TokenSet | undefined> {
    return this.cache.get(contextId, () => this.inner.get(contextId));
  }

  peek(contextId: string): TokenSet | undefined {
    return this.cache.peek(contextId);
  }

  get(contextId: string): Promise<TokenSet | undefined> {
    return this.inner.get(contextId);
  }

  set(contextId: string, tokens: TokenSet, ttlSeconds: number): Promise<void> {
    return this.announced(contextId, this.inner.set(contextId, tokens, ttlSeconds));
  }

  replace(contextId: string, tokens: TokenSet): Promise<boolean> {
    return this.announced(contextId, this.inner.replace(contextId, tokens));
  }

  take(contextId: string): Promise<TokenSet | undefined> {
    return this.announced(contextId, this.inner.take(contextId));
  }

  extend(contextIds: readonly string[], ttlSeconds: number): Promise<void> {
    return this.inner.extend(contextIds, ttlSeconds); // the expiry only: the cached value is unchanged
  }

  delete(contextId: string): Promise<void> {
    return this.announced(contextId, this.inner.delete(contextId));
  }

  tryLock(contextId: string, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
    return this.inner.tryLock(contextId, ttlMs);
  }

  /** Announces the write once it has completed, whatever its outcome (a failed write may have happened). */
  private announced<T>(contextId: string, write: Promise<T>): Promise<T> {
    return write.finally(() => this.bus.publish('tokens', contextId));
  }
}
