/**
 * Operators' sessions for the console (/admin), apart from the clinicians' sessions: a random id in the operator's
 * cookie, of which only a SHA-256 is stored, with the time it was made and the time of its last request. A session
 * ends ADMIN_SESSION_IDLE_MINUTES after its last request, and ABSOLUTE_SECONDS after it began, whatever its
 * activity; both are checked here, on the server, at every request.
 *
 * In memory (one instance; a bounded LRU of MAX_SESSIONS, the least recently used dropped first), or in Redis (every
 * instance), one key per session expiring with its idle timeout. Store failures are StoreErrors (503), never a
 * silent sign-out or a silent pass. A touch only updates a session that still exists (Redis SET … XX): a request
 * that read the session just before a sign-out, or just before its key expired, never brings it back.
 */
import { createHash, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { StoreError } from '../http/errors.js';
import type { RedisClient } from '../session/redis-client.js';

/** An operator's sign-in lasts at most this long, however active. */
export const ABSOLUTE_SECONDS = 12 * 3600;
const MAX_SESSIONS = 1000;
const PREFIX = 'smart-bff:admin:session:';
const ID = /^[A-Za-z0-9_-]{43}$/;

export interface OperatorSession {
  createdAt: number;
  lastSeenAt: number;
}

export interface OperatorSessionStore {
  /** A new session; its id (for the cookie only: the store keeps a hash). */
  create(): Promise<string>;
  /** The session, when it is valid now (and its idle clock restarted); undefined otherwise (ended ones are removed). */
  touch(id: string): Promise<OperatorSession | undefined>;
  destroy(id: string): Promise<void>;
}

const hash = (id: string) => createHash('sha256').update(id).digest('base64url');
const newId = () => randomBytes(32).toString('base64url');

abstract class BaseStore implements OperatorSessionStore {
  constructor(protected readonly idleSeconds: number, protected readonly now: () => number = Date.now) {}

  protected abstract read(key: string): Promise<OperatorSession | undefined>;
  protected abstract write(key: string, session: OperatorSession): Promise<void>;
  /** Writes the session only if it still exists; false when it ended meanwhile (signed out, expired). */
  protected abstract update(key: string, session: OperatorSession): Promise<boolean>;
  protected abstract remove(key: string): Promise<void>;

  async create(): Promise<string> {
    const id = newId();
    const t = this.now();
    await this.write(hash(id), { createdAt: t, lastSeenAt: t });
    return id;
  }

  async touch(id: string): Promise<OperatorSession | undefined> {
    if (!ID.test(id)) return undefined;
    const key = hash(id);
    const session = await this.read(key);
    if (!session) return undefined;
    const t = this.now();
    if (t - session.lastSeenAt > this.idleSeconds * 1000 || t - session.createdAt > ABSOLUTE_SECONDS * 1000) {
      await this.remove(key);
      return undefined;
    }
    const touched = { ...session, lastSeenAt: t };
    return (await this.update(key, touched)) ? touched : undefined;
  }

  async destroy(id: string): Promise<void> {
    if (ID.test(id)) await this.remove(hash(id));
  }
}

export class MemoryOperatorSessions extends BaseStore {
  private readonly sessions = new LRUCache<string, OperatorSession>({ max: MAX_SESSIONS });

  protected async read(key: string) {
    return this.sessions.get(key);
  }

  protected async write(key: string, session: OperatorSession) {
    this.sessions.set(key, session);
  }

  protected async update(key: string, session: OperatorSession) {
    if (!this.sessions.has(key)) return false;
    this.sessions.set(key, session);
    return true;
  }

  protected async remove(key: string) {
    this.sessions.delete(key);
  }
}

export class RedisOperatorSessions extends BaseStore {
  constructor(private readonly client: RedisClient, idleSeconds: number, now?: () => number) {
    super(idleSeconds, now);
  }

  protected async read(key: string) {
    const raw = await this.client.get(PREFIX + key).catch((err: unknown) => { throw new StoreError('admin.get', err); });
    if (!raw) return undefined;
    try {
      const v = JSON.parse(raw) as Partial<OperatorSession>;
      return typeof v.createdAt === 'number' && typeof v.lastSeenAt === 'number' ? { createdAt: v.createdAt, lastSeenAt: v.lastSeenAt } : undefined;
    } catch {
      return undefined;
    }
  }

  protected async write(key: string, session: OperatorSession) {
    await this.client.set(PREFIX + key, JSON.stringify(session), { EX: Math.max(1, Math.ceil(this.idleSeconds)) })
      .catch((err: unknown) => { throw new StoreError('admin.set', err); });
  }

  protected async update(key: string, session: OperatorSession) {
    const ok = await this.client.set(PREFIX + key, JSON.stringify(session), { XX: true, EX: Math.max(1, Math.ceil(this.idleSeconds)) })
      .catch((err: unknown) => { throw new StoreError('admin.set', err); });
    return ok === 'OK';
  }

  protected async remove(key: string) {
    await this.client.del(PREFIX + key).catch((err: unknown) => { throw new StoreError('admin.destroy', err); });
  }
}
