/**
 * A read-through cache in front of a store that several instances share (sessions, token sets), for the FHIR
 * proxy's reads: a proxied call finds its session and its token set in memory instead of parsing the stored
 * session (and, with Redis, making two round trips) at every call. It is a cache and says so: bounded (LRU), each
 * entry kept at most `ttlMs`, and dropped whenever the value changes:
 *
 * - every write to the store, on this instance or another, is announced on an invalidation bus
 *   (invalidation.ts) once it has completed, and every instance drops its entry when the announcement arrives;
 * - a value read from the store is kept only if no invalidation arrived while it was being read (a global
 *   count of invalidations, compared before and after), so a read that raced a write is used once and not kept;
 * - while the bus is not live (Redis pub/sub disconnected: announcements would be lost), nothing is kept and the
 *   store is read every time; when it is live again the cache starts empty;
 * - `ttlMs` is the safety net for whatever a bus cannot announce: a store that drops a value by itself (an
 *   expiry, an eviction) or an announcement lost in transit.
 *
 * Only values found are kept: a miss always goes to the store.
 */
import type { LRUCache } from 'lru-cache';
import { LazyLru } from '../lazy-lru.js';

export class ReadCache<V extends object> {
  /** Made at the first value kept (lazy-lru.ts). */
  private readonly lazy: LazyLru<string, V>;
  /** Invalidations seen so far (any key): a read that overlaps one is not kept. */
  private invalidations = 0;
  private live: boolean;

  constructor(opts: { max: number; ttlMs: number; live?: boolean }) {
    this.live = opts.live ?? true;
    this.lazy = new LazyLru<string, V>({ max: opts.max, ttl: opts.ttlMs });
  }

  private get lru(): LRUCache<string, V> | undefined {
    return this.lazy.made;
  }

  /** The value under `key`: from memory, or `load()`ed from the store (and kept when nothing changed meanwhile). */
  async get(key: string, load: () => Promise<V | undefined | null>): Promise<V | undefined> {
    const hit = this.peek(key);
    if (hit !== undefined) return hit;
    const before = this.invalidations;
    const value = (await load()) ?? undefined;
    if (value !== undefined && this.live && this.invalidations === before) this.lazy.cache.set(key, value);
    return value;
  }

  /**
   * The value under `key` when it is in memory (a hit), without going to the store; undefined otherwise. Nothing is
   * held while the bus is not live (`setLive(false)` empties the cache, and `get` keeps nothing then).
   */
  peek(key: string): V | undefined {
    return this.lru?.get(key);
  }

  /** The value under `key` changed (or is about to): forget it here, and do not keep reads in flight. */
  invalidate(key: string): void {
    this.invalidations++;
    this.lru?.delete(key);
  }

  /** Whether announcements are arriving; when they are not, nothing is kept. */
  setLive(live: boolean): void {
    if (live === this.live) return;
    this.live = live;
    this.invalidations++;
    this.lru?.clear();
  }

  /** Entries held (tests). */
  get size(): number {
    return this.lru?.size ?? 0;
  }
}
