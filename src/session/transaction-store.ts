/**
 * Pending launches: the authorization requests between `/launch` (or `/login`) and `/callback`, kept apart from
 * sessions so that anonymous launches can never occupy or evict the session store. Each is stored under a hash
 * of its `state`, bound to the browser that started it (a hash of the launch cookie's binding id, see
 * launch-cookie.ts), and lives LAUNCH_TTL_SECONDS (plus a minute of grace, so that a late callback is told its
 * launch expired rather than that it is unknown).
 *
 * - In memory (one instance): an LRU of at most MAX_PENDING_LAUNCHES entries; a flood evicts the oldest pending
 *   launches, never a session. This is a bounded cache and says so.
 * - In Redis (several instances): one key per state with that TTL (RedisTransactionStore in redis-store.ts);
 *   Redis memory is bounded by the TTL times the per-IP launch rate limit (LAUNCH_RATE_LIMIT).
 *
 * `take` is the callback's single use: it checks the binding and removes the entry in one step, before anything
 * is sent to the token endpoint; a foreign browser's attempt leaves the entry in place for its owner.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { LazyLru } from '../lazy-lru.js';
import type { LaunchTransaction } from './types.js';

/** Seconds a pending launch is kept past LAUNCH_TTL_SECONDS, to answer `state_expired` instead of `state_unknown`. */
export const EXPIRED_GRACE_SECONDS = 60;

/** What is stored: the transaction without its state (the key is the state's hash) and the binding's hash. */
export type StoredLaunch = Omit<LaunchTransaction, 'state'> & { binding: string };

export type PendingLookup =
  | { status: 'found'; transaction: Omit<LaunchTransaction, 'state'> }
  | { status: 'missing' }
  /** It exists, but another browser started it. */
  | { status: 'foreign' };

export interface TransactionStore {
  /** Stores a pending launch for `ttlSeconds`, bound to the browser whose binding hash is given. */
  put(transaction: LaunchTransaction, bindingHash: string, ttlSeconds: number): Promise<void>;
  /** Reads a pending launch by its state key without using it up (the framed-launch cookie check). */
  peek(stateKey: string, bindingHash: string): Promise<PendingLookup>;
  /** Single use: when the binding matches, removes and returns it atomically; otherwise leaves it as it is. */
  take(state: string, bindingHash: string): Promise<PendingLookup>;
}

/** The key of a pending launch: a hash of its state (the `t` of /launch/continue is the same value). */
export function stateKey(state: string): string {
  return createHash('sha256').update(state).digest('base64url').slice(0, 22);
}

export function sameBinding(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function lookup(stored: StoredLaunch | undefined, bindingHash: string): PendingLookup {
  if (!stored) return { status: 'missing' };
  if (!sameBinding(stored.binding, bindingHash)) return { status: 'foreign' };
  const { binding: _binding, ...transaction } = stored;
  return { status: 'found', transaction };
}

export function toStored(transaction: LaunchTransaction, bindingHash: string): StoredLaunch {
  const { state: _state, ...rest } = transaction;
  return { ...rest, binding: bindingHash };
}

export class MemoryTransactionStore implements TransactionStore {
  /** Made at the first pending launch (lazy-lru.ts). */
  private readonly lazy: LazyLru<string, StoredLaunch>;

  constructor(opts: { max: number }) {
    this.lazy = new LazyLru<string, StoredLaunch>({ max: opts.max });
  }

  async put(transaction: LaunchTransaction, bindingHash: string, ttlSeconds: number): Promise<void> {
    this.lazy.cache.set(stateKey(transaction.state), toStored(transaction, bindingHash), { ttl: ttlSeconds * 1000 });
  }

  async peek(key: string, bindingHash: string): Promise<PendingLookup> {
    return lookup(this.lazy.cache.get(key), bindingHash);
  }

  async take(state: string, bindingHash: string): Promise<PendingLookup> {
    const key = stateKey(state);
    const result = lookup(this.lazy.cache.get(key), bindingHash);
    if (result.status === 'found') this.lazy.cache.delete(key);
    return result;
  }

  /** Pending launches held now (tests and metrics). */
  get size(): number {
    return this.lazy.made?.size ?? 0;
  }
}
