/**
 * Redis for several instances: the express-session store (connect-redis) with its session index (which sessions
 * hold which launch contexts, so that the contexts of a session Redis expired are ended: session-endings.ts),
 * the token store (one key per launch context, replaced whole in one SET) and the cross-instance refresh lock
 * (SET NX PX, released only by its holder). The client and its connection (TLS, timeouts, reconnection,
 * readiness) are in redis-client.ts.
 */
import { randomBytes } from 'node:crypto';
import { RedisStore } from 'connect-redis';
import type { Store } from 'express-session';
import type { RedisClient } from './redis-client.js';
import type { TokenSet, TokenStore } from './token-store.js';
import { StoreError } from '../http/errors.js';
import { lookup, stateKey, toStored, type PendingLookup, type StoredLaunch, type TransactionStore } from './transaction-store.js';
import type { LaunchTransaction } from './types.js';
import { SESSION_INDEX, type SessionIndex, type SessionIndexEntry } from './session-endings.js';
import { REDIS_CLIENT } from './cached-stores.js';

export type { RedisClient } from './redis-client.js';

const PREFIX = 'smart-bff:';

/** Sessions in Redis (`smart-bff:sess:<id>`, idle TTL), with their index (RedisSessionIndex) attached. */
export function createRedisSessionStore(client: RedisClient, ttlSeconds: number): Store {
  const store = new RedisStore({ client, prefix: `${PREFIX}sess:`, ttl: ttlSeconds });
  Object.defineProperty(store, SESSION_INDEX, { value: new RedisSessionIndex(client) });
  // its writes are announced to every instance's read caches through this client (cached-stores.ts)
  Object.defineProperty(store, REDIS_CLIENT, { value: client });
  return store;
}

/**
 * A Redis command of the token store, its failure made a StoreError (503 session_store_unavailable, counted as a
 * store error), like the session and pending-launch stores': a token store that is down is a store outage, not a
 * 500. Started by the caller, so commands still leave in the caller's tick.
 */
function stored<T>(operation: string, command: Promise<T>): Promise<T> {
  return command.catch((err: unknown) => { throw new StoreError(operation, err); });
}

export class RedisTokenStore implements TokenStore {
  /** Its writes are announced to every instance's read caches through this client (cached-stores.ts). */
  readonly [REDIS_CLIENT]: RedisClient;

  constructor(private readonly client: RedisClient) {
    this[REDIS_CLIENT] = client;
  }

  async get(contextId: string): Promise<TokenSet | undefined> {
    const raw = await stored('tokens.get', this.client.get(`${PREFIX}tokens:${contextId}`));
    return raw ? (JSON.parse(raw) as TokenSet) : undefined;
  }

  async set(contextId: string, tokens: TokenSet, ttlSeconds: number): Promise<void> {
    await stored('tokens.set', this.client.set(`${PREFIX}tokens:${contextId}`, JSON.stringify(tokens), { EX: Math.max(1, Math.floor(ttlSeconds)) }));
  }

  async replace(contextId: string, tokens: TokenSet): Promise<boolean> {
    // XX: only while it exists (its context may have ended meanwhile); KEEPTTL: its expiry follows the session
    const ok = await stored('tokens.replace', this.client.set(`${PREFIX}tokens:${contextId}`, JSON.stringify(tokens), { expiration: 'KEEPTTL', condition: 'XX' }));
    return ok === 'OK';
  }

  async take(contextId: string): Promise<TokenSet | undefined> {
    const key = `${PREFIX}tokens:${contextId}`;
    const [raw] = await stored('tokens.take', this.client.multi().get(key).del(key).exec());
    return typeof raw === 'string' ? (JSON.parse(raw) as TokenSet) : undefined;
  }

  async extend(contextIds: readonly string[], ttlSeconds: number): Promise<void> {
    // sent in the caller's tick, so node-redis writes them with the session's own command
    await stored('tokens.extend', Promise.all(contextIds.map((id) => this.client.expire(`${PREFIX}tokens:${id}`, Math.max(1, Math.ceil(ttlSeconds))))));
  }

  async delete(contextId: string): Promise<void> {
    await stored('tokens.delete', this.client.del(`${PREFIX}tokens:${contextId}`));
  }

  async tryLock(contextId: string, ttlMs: number): Promise<(() => Promise<void>) | undefined> {
    const key = `${PREFIX}lock:refresh:${contextId}`;
    const owner = randomBytes(12).toString('base64url');
    const ok = await stored('tokens.lock', this.client.set(key, owner, { NX: true, PX: ttlMs }));
    if (ok !== 'OK') return undefined;
    return async () => {
      // release only our own lock (compare-and-delete); one left behind expires by itself
      await stored('tokens.unlock', this.client.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", { keys: [key], arguments: [owner] }));
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

/**
 * The session index in Redis (session-endings.ts): `smart-bff:sessidx:<session id hash>` holds the session's
 * context ids and start (JSON), expiring some time after the session's deadline; the sorted set
 * `smart-bff:sessidx-due` holds each entry's deadline (epoch ms, by the Redis server's clock, which also expires
 * the session keys, so instances' clocks do not matter). Every step is one script (or one command), so an entry
 * is taken once across instances. Keys are plain (no hash tags): a single Redis, as Heroku Redis and Memorystore
 * give, not a cluster.
 */
export class RedisSessionIndex implements SessionIndex {
  private static readonly NOW = "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)";
  private static readonly SAVE = [
    RedisSessionIndex.NOW,
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', tonumber(ARGV[3]) + tonumber(ARGV[4]))",
    "redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])",
    'return 1',
  ].join('\n');
  private static readonly TOUCH = [
    RedisSessionIndex.NOW,
    "if redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3])) == 0 then return 0 end",
    "redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[2]), ARGV[1])",
    'return 1',
  ].join('\n');
  private static readonly CLAIM = [
    "local v = redis.call('GET', KEYS[1])",
    "redis.call('ZREM', KEYS[2], ARGV[1])",
    'if not v then return false end',
    "redis.call('DEL', KEYS[1])",
    'return v',
  ].join('\n');
  private static readonly DUE = [
    RedisSessionIndex.NOW,
    "return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))",
  ].join('\n');

  static readonly DUE_KEY = `${PREFIX}sessidx-due`;

  constructor(private readonly client: RedisClient) {}

  static entryKey(key: string): string {
    return `${PREFIX}sessidx:${key}`;
  }

  async save(key: string, entry: { contexts: string[]; createdAt: number }, lifeMs: number, keepMs: number): Promise<void> {
    const value = JSON.stringify({ c: entry.contexts, t: entry.createdAt });
    await this.client.eval(RedisSessionIndex.SAVE, { keys: [RedisSessionIndex.entryKey(key), RedisSessionIndex.DUE_KEY], arguments: [key, value, String(Math.ceil(lifeMs)), String(Math.ceil(keepMs))] });
  }

  async touch(key: string, lifeMs: number, keepMs: number): Promise<void> {
    await this.client.eval(RedisSessionIndex.TOUCH, { keys: [RedisSessionIndex.entryKey(key), RedisSessionIndex.DUE_KEY], arguments: [key, String(Math.ceil(lifeMs)), String(Math.ceil(keepMs))] });
  }

  async forget(key: string): Promise<void> {
    await this.client.multi().del(RedisSessionIndex.entryKey(key)).zRem(RedisSessionIndex.DUE_KEY, key).exec();
  }

  async claim(key: string): Promise<SessionIndexEntry | undefined> {
    const raw = await this.client.eval(RedisSessionIndex.CLAIM, { keys: [RedisSessionIndex.entryKey(key), RedisSessionIndex.DUE_KEY], arguments: [key] });
    return typeof raw === 'string' ? parseEntry(key, raw) : undefined;
  }

  async claimDue(marginMs: number, max: number): Promise<SessionIndexEntry[]> {
    const keys = await this.client.eval(RedisSessionIndex.DUE, { keys: [RedisSessionIndex.DUE_KEY], arguments: [String(marginMs), String(max)] });
    if (!Array.isArray(keys) || keys.length === 0) return [];
    // each claimed on its own: an entry another instance (or a request) took first comes back empty
    const claimed = await Promise.all(keys.map((k) => this.claim(String(k))));
    return claimed.filter((e): e is SessionIndexEntry => e !== undefined);
  }
}

function parseEntry(key: string, raw: string): SessionIndexEntry | undefined {
  try {
    const v = JSON.parse(raw) as { c?: unknown; t?: unknown };
    const contexts = Array.isArray(v.c) ? v.c.filter((c): c is string => typeof c === 'string') : [];
    return { key, contexts, createdAt: typeof v.t === 'number' ? v.t : 0 };
  } catch {
    return undefined;
  }
}
