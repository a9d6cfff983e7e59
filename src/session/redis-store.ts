/**
 * Redis for several instances: the express-session store (connect-redis), the token store (one key per launch
 * context, replaced whole in one SET) and the cross-instance refresh lock (SET NX PX, released only by its
 * holder). The client and its connection (TLS, timeouts, reconnection, readiness) are in redis-client.ts.
 */
import { randomBytes } from 'node:crypto';
import { RedisStore } from 'connect-redis';
import type { Store } from 'express-session';
import type { RedisClient } from './redis-client.js';
import type { TokenSet, TokenStore } from './token-store.js';
import { StoreError } from '../http/errors.js';
import { lookup, stateKey, toStored, type PendingLookup, type StoredLaunch, type TransactionStore } from './transaction-store.js';
import type { LaunchTransaction } from './types.js';

export type { RedisClient } from './redis-client.js';

const PREFIX = 'smart-bff:';

export function createRedisSessionStore(client: RedisClient, ttlSeconds: number): Store {
  return new RedisStore({ client, prefix: `${PREFIX}sess:`, ttl: ttlSeconds });
}

export class RedisTokenStore implements TokenStore {
  constructor(private readonly client: RedisClient) {}

  async get(contextId: string): Promise<TokenSet | undefined> {
    const raw = await this.client.get(`${PREFIX}tokens:${contextId}`);
    return raw ? (JSON.parse(raw) as TokenSet) : undefined;
  }

  async set(contextId: string, tokens: TokenSet, ttlSeconds: number): Promise<void> {
    await this.client.set(`${PREFIX}tokens:${contextId}`, JSON.stringify(tokens), { EX: Math.max(1, Math.floor(ttlSeconds)) });
  }

  async delete(contextId: string): Promise<void> {
    await this.client.del(`${PREFIX}tokens:${contextId}`);
  }

  async tryLock(contextId: string, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
    const key = `${PREFIX}lock:refresh:${contextId}`;
    const owner = randomBytes(12).toString('base64url');
    const ok = await this.client.set(key, owner, { NX: true, PX: ttlMs });
    if (ok !== 'OK') return undefined;
    return async () => {
      // release only our own lock (compare-and-delete)
      await this.client.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", { keys: [key], arguments: [owner] });
    };
  }
}

/**
 * Pending launches in Redis (transaction-store.ts): one key per state hash, `<binding hash>.<JSON>`, expiring
 * with the launch. Memory is bounded by the TTL times the per-IP launch rate limit. `take` checks the binding and
 * deletes in one server-side step (compare-and-delete), so a launch is used once across all instances and a
 * foreign browser's attempt leaves it for its owner. Failures are StoreErrors (503), like the session store's.
 */
export class RedisTransactionStore implements TransactionStore {
  private static readonly TAKE = [
    "local v = redis.call('get', KEYS[1])",
    'if not v then return 0 end',
    "if string.sub(v, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. '.' then return 1 end",
    "redis.call('del', KEYS[1])",
    'return v',
  ].join('\n');

  constructor(private readonly client: RedisClient) {}

  async put(transaction: LaunchTransaction, bindingHash: string, ttlSeconds: number): Promise<void> {
    const { binding, ...rest } = toStored(transaction, bindingHash);
    await this.client.set(this.key(stateKey(transaction.state)), `${binding}.${JSON.stringify(rest)}`, { EX: Math.max(1, Math.ceil(ttlSeconds)) })
      .catch((err: unknown) => { throw new StoreError('launch.put', err); });
  }

  async peek(key: string, bindingHash: string): Promise<PendingLookup> {
    const raw = await this.client.get(this.key(key)).catch((err: unknown) => { throw new StoreError('launch.get', err); });
    return lookup(raw ? parse(raw) : undefined, bindingHash);
  }

  async take(state: string, bindingHash: string): Promise<PendingLookup> {
    const result = await this.client.eval(RedisTransactionStore.TAKE, { keys: [this.key(stateKey(state))], arguments: [bindingHash] })
      .catch((err: unknown) => { throw new StoreError('launch.take', err); });
    if (result === 0 || result === null) return { status: 'missing' };
    if (result === 1) return { status: 'foreign' };
    return lookup(parse(String(result)), bindingHash);
  }

  private key(stateKeyValue: string): string {
    return `${PREFIX}launch:${stateKeyValue}`;
  }
}

function parse(raw: string): StoredLaunch | undefined {
  const dot = raw.indexOf('.');
  if (dot === -1) return undefined;
  try {
    return { ...(JSON.parse(raw.slice(dot + 1)) as Omit<StoredLaunch, 'binding'>), binding: raw.slice(0, dot) };
  } catch {
    return undefined;
  }
}
