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
