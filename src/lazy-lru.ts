/**
 * An LRUCache made at its first use. lru-cache allocates its whole capacity when it is made (arrays of `max`
 * slots: some 7 ms, and as much garbage, for 50,000), and start-up should not pay that for caches a process may
 * fill late or never use. `made` looks without making it.
 */
import { LRUCache } from 'lru-cache';

export class LazyLru<K extends {}, V extends {}> {
  #lru: LRUCache<K, V> | undefined;

  constructor(private readonly options: LRUCache.Options<K, V, unknown>) {}

  /** The cache, made now if it was not yet. */
  get cache(): LRUCache<K, V> {
    return (this.#lru ??= new LRUCache<K, V>(this.options));
  }

  /** The cache if it was made (nothing was ever kept in it otherwise), else undefined. */
  get made(): LRUCache<K, V> | undefined {
    return this.#lru;
  }
}
