/**
 * The FHIR proxy's session lookup, instead of express-session's middleware (which, per call, parsed the cookie,
 * checked its HMAC, read and parsed the stored session, then hashed the whole session twice to see whether it
 * changed). It reads the same store, through the same wrapped methods as express-session (typed store errors, the
 * touch throttle, the session endings' bookkeeping, the read caches' invalidation), and keeps every rule:
 *
 * - the session cookie is read and its signature checked as express-session does (session-cookie.ts); a cookie
 *   that does not verify, or names no stored session, is no session (express-session would make a new, empty one);
 * - the stored session comes from a read cache (read-cache.ts) that every write to a session invalidates, on this
 *   instance and, with Redis, on the others;
 * - the absolute timeout is checked on every call, from the session's own `createdAt`: a session past it ends
 *   there (its launch contexts end, the store entry is destroyed) and the call has no session;
 * - the idle timeout is the store's: a call that reads the session from the store touches the store entry through
 *   the same throttled `touch` express-session calls (at most once per session per touch interval). A cached
 *   session is kept at most the touch interval (app.ts), so a session in use is read from the store, and touched,
 *   at least once per interval: the entry lives as long as it would under express-session, and the calls served
 *   from the cache in between need not touch (the throttle would have let none of them through). The cache cannot
 *   outlive the entry: the entry, alive when it was read and touched then or within the interval before, lives at
 *   least the idle timeout minus the interval from that read;
 * - a store that is disconnected or fails is a StoreError (503 session_store_unavailable), never "no session".
 *
 * The session a call gets is shared with other calls (the cached object): it is read, never changed; a change is
 * a new object written to the store (`withoutContext`).
 */
import type { Store, SessionData } from 'express-session';
import type { Logger } from '../log.js';
import { StoreError } from '../http/errors.js';
import type { ReadCache } from './read-cache.js';
import type { SessionCookieReader } from './session-cookie.js';
import type { LaunchContextInfo } from './types.js';

/** A stored session as the store hands it over: its data and the cookie it was saved with. */
export type StoredSession = Partial<SessionData> & { cookie?: unknown };

export interface ProxySession {
  readonly id: string;
  readonly data: Readonly<StoredSession>;
}

export interface ProxySessionsOptions {
  /** The session store, with the same wrappers as express-session's (createSessionMiddleware adds them). */
  store: Store;
  cookies: SessionCookieReader;
  cache: ReadCache<StoredSession>;
  absoluteSeconds: number;
  /** A session past the absolute timeout: its contexts end (their tokens are revoked). Never throws. */
  onAbsoluteTimeout?: (contextIds: string[], sessionId: string, log: Logger) => void;
}

export class ProxySessions {
  /** Whether the store says it is connected (the 'connect' and 'disconnect' events express-session listens to). */
  private storeReady = true;

  constructor(private readonly opts: ProxySessionsOptions) {
    opts.store.on('disconnect', () => (this.storeReady = false));
    opts.store.on('connect', () => (this.storeReady = true));
  }

  /**
   * The session this request's cookie names when it is at hand: the cookie verifies, the store is connected, the
   * session is in the read cache and within its absolute timeout. What `forRequest` would answer, without waiting
   * for anything (a cached session needs no touch: see the module comment). Undefined otherwise, and the caller asks
   * `forRequest`, which decides everything else (no session, a store read, an ending). The proxy's fast path.
   */
  atHand(cookieHeader: string | undefined): ProxySession | undefined {
    if (!this.storeReady) return undefined;
    const id = this.opts.cookies.sessionId(cookieHeader);
    if (id === undefined) return undefined;
    const data = this.opts.cache.peek(id);
    return data && !this.pastAbsoluteTimeout(data) ? { id, data } : undefined;
  }

  /** The session this request's cookie names, or undefined when there is none. */
  async forRequest(cookieHeader: string | undefined, log: () => Logger): Promise<ProxySession | undefined> {
    if (!this.storeReady) throw new StoreError('connect');
    const id = this.opts.cookies.sessionId(cookieHeader);
    if (id === undefined) return undefined;
    let read = false;
    const data = await this.opts.cache.get(id, () => {
      read = true;
      return this.storeGet(id);
    });
    if (!data) return undefined;
    if (this.pastAbsoluteTimeout(data)) {
      log().info({ event: 'session.expired', reason: 'absolute_timeout' }, 'session: absolute timeout reached; ending it');
      this.opts.onAbsoluteTimeout?.(Object.keys(data.contexts ?? {}), id, log());
      await this.storeCall('destroy', (cb) => this.opts.store.destroy(id, cb));
      return undefined;
    }
    if (read) this.touch(id, data, log);
    return { id, data };
  }

  private pastAbsoluteTimeout(data: StoredSession): boolean {
    return data.createdAt !== undefined && Date.now() - data.createdAt > this.opts.absoluteSeconds * 1000;
  }

  /**
   * Writes the session without one of its contexts (its tokens are gone). Like a save by express-session: the
   * whole session, with the cookie it was stored with; but from the store as it is now, not the cached copy: a
   * session destroyed meanwhile (a logout on another instance) stays destroyed, and a save made meanwhile is kept.
   */
  async withoutContext(session: ProxySession, contextId: string): Promise<void> {
    const current = await this.storeGet(session.id);
    if (!current || !Object.hasOwn(current.contexts ?? {}, contextId)) return;
    const contexts: Record<string, LaunchContextInfo> = { ...current.contexts };
    delete contexts[contextId];
    const next = { ...current, contexts } as SessionData;
    await this.storeCall('set', (cb) => this.opts.store.set(session.id, next, cb));
  }

  /** Pushes the store entry's expiry forward (the store's wrapper throttles it), as express-session does at every request. */
  private touch(id: string, data: StoredSession, log: () => Logger): void {
    const touch = this.opts.store.touch;
    if (!touch) return;
    touch.call(this.opts.store, id, data as SessionData, ((err?: unknown) => {
      if (err) log().warn({ event: 'session.touch_failed', reason: (err as Error)?.message }, 'session: the store could not push the idle expiry forward; the next call tries again');
    }) as () => void);
  }

  private storeGet(id: string): Promise<StoredSession | undefined> {
    return this.storeCall<StoredSession | null | undefined>('get', (cb) => this.opts.store.get(id, cb as never)).then(
      (s) => s ?? undefined,
      // as express-session: a store that reports a missing session as ENOENT has no session there
      (err: StoreError) => ((err.cause as { code?: unknown } | undefined)?.code === 'ENOENT' ? undefined : Promise.reject(err)),
    );
  }

  /** A store operation as a promise; its failures are StoreErrors (the wrapper makes them so; this covers a store without it). */
  private storeCall<T = void>(operation: string, run: (cb: (err?: unknown, value?: T) => void) => void): Promise<T> {
    return new Promise((resolve, reject) => {
      try {
        run((err, value) => (err ? reject(err instanceof StoreError ? err : new StoreError(operation, err)) : resolve(value as T)));
      } catch (err) {
        reject(err instanceof StoreError ? err : new StoreError(operation, err));
      }
    });
  }
}
