/**
 * express-session with a hardened cookie: `__Host-` prefixed, Secure, HttpOnly, Path=/ whenever PUBLIC_URL is
 * https; SameSite=Lax by default (Strict would drop the cookie on the return from the authorization server);
 * in `embedded` mode SameSite=None; Secure; Partitioned (CHIPS) for EHRs that show the app in a cross-site
 * iframe. The cookie lives as long as the browser session; the server enforces the timeouts: the store entry
 * expires SESSION_IDLE_MINUTES after the last request (requests touch it, at most every idle/10 and once a
 * minute), and a session older than SESSION_MAX_HOURS is ended whatever its activity. However a session ends, its
 * launch contexts end with it and their tokens are revoked (session-endings.ts says how each ending is noticed).
 * Without a shared store, sessions live in a bounded in-memory store (single instance only).
 * Only signed-in browsers have a session: a launch in progress is a pending launch (transaction-store.ts), and
 * the session is created at the callback, so anonymous launches never occupy (or evict from) the session store.
 * Every failure the store reports reaches the error handler as a StoreError (503 session_store_unavailable);
 * no other error is ever taken for a store outage.
 */
import session, { type Store } from 'express-session';
import createMemoryStore from 'memorystore';
import { LazyLru } from '../lazy-lru.js';
import type { RequestHandler } from 'express';
import type { Config } from '../config.js';
import { StoreError } from '../http/errors.js';
import { sha256Short } from '../log.js';
import type { SessionEndings } from './session-endings.js';

export type SessionCookieConfig = Pick<Config, 'publicUrl' | 'cookieMode'>;

export function sessionCookieName(config: SessionCookieConfig): string {
  return cookieSecure(config) ? '__Host-smart-bff' : 'smart-bff.sid';
}

export function cookieSecure(config: SessionCookieConfig): boolean {
  return config.publicUrl.startsWith('https:') || config.cookieMode === 'embedded';
}

export function sessionCookieOptions(config: SessionCookieConfig): { httpOnly: true; secure: boolean; sameSite: 'lax' | 'none'; path: '/'; partitioned?: boolean } {
  const embedded = config.cookieMode === 'embedded';
  return { httpOnly: true, secure: cookieSecure(config), sameSite: embedded ? 'none' : 'lax', path: '/', ...(embedded ? { partitioned: true } : {}) };
}

/** Signed-in sessions in memory: an LRU of `max` sessions (single instance only). */
/** Sessions the in-memory session store holds at most (the least recently used goes first). */
export const MEMORY_SESSIONS_MAX = 10_000;

export function createMemorySessionStore(ttlSeconds = 8 * 3600, max = MEMORY_SESSIONS_MAX): Store {
  const MemoryStore = createMemoryStore(session);
  return new MemoryStore({ checkPeriod: 10 * 60 * 1000, max, ttl: ttlSeconds * 1000 });
}

/**
 * express-session leaves req.session undefined while its store is disconnected (and for request targets that
 * are not a path, which app.ts refuses before this runs): answer 503, never a crash and never a silent new
 * session.
 */
export function requireSessionStore(): RequestHandler {
  return (req, _res, next) => {
    if (!req.session) return next(new StoreError('connect'));
    next();
  };
}

const TYPED = Symbol('smart-bff.storeErrorsTyped');
const STORE_OPERATIONS = ['get', 'set', 'touch', 'destroy', 'length', 'clear', 'all'] as const;

/**
 * Makes every failure the store reports a StoreError, at the one boundary where it is known to come from the
 * store: each method's callback. A missing session (ENOENT, for stores that report it that way) is not a failure.
 * Wrapped once per store, however many apps share it.
 */
export function typeStoreErrors(store: Store): void {
  const marked = store as Store & { [TYPED]?: true };
  if (marked[TYPED]) return;
  marked[TYPED] = true;
  const methods = store as unknown as Record<string, ((...args: unknown[]) => unknown) | undefined>;
  for (const operation of STORE_OPERATIONS) {
    const method = methods[operation];
    if (typeof method !== 'function') continue;
    methods[operation] = (...args: unknown[]) => {
      const last = args.length - 1;
      const callback = typeof args[last] === 'function' ? (args[last] as (err?: unknown, ...rest: unknown[]) => void) : undefined;
      if (callback) {
        args[last] = (err?: unknown, ...rest: unknown[]) => callback(typed(operation, err), ...rest);
      }
      try {
        return method.apply(store, args);
      } catch (err) {
        if (!callback) throw typed(operation, err);
        callback(typed(operation, err));
        return undefined;
      }
    };
  }
}

function typed(operation: string, err: unknown): unknown {
  if (!err || err instanceof StoreError || (err as { code?: unknown }).code === 'ENOENT') return err;
  return new StoreError(operation, err);
}

/**
 * express-session touches the store on every request to push the idle expiry forward: on the proxy's hot path
 * that is a store write (a Redis round trip) per FHIR call. Touch each session at most once per `intervalMs`
 * instead; the idle timeout then holds to within that interval. The record of recent touches is a bounded
 * per-process cache (LRU with TTL), not state: losing it only costs an extra touch.
 */
const THROTTLED = Symbol('smart-bff.touchesThrottled');

export function throttleTouches(store: Store, intervalMs: number): void {
  const touch = store.touch?.bind(store);
  const marked = store as Store & { [THROTTLED]?: true };
  if (!touch || intervalMs <= 0 || marked[THROTTLED]) return; // a store shared by several apps is wrapped once
  marked[THROTTLED] = true;
  // made at the first touch (lazy-lru.ts)
  const touched = new LazyLru<string, true>({ max: 100_000, ttl: intervalMs });
  const recent = () => touched.cache;
  store.touch = (sid, sess, callback) => {
    if (recent().has(sid)) return callback?.();
    recent().set(sid, true);
    touch(sid, sess, ((err?: unknown) => {
      if (err) recent().delete(sid);
      (callback as ((err?: unknown) => void) | undefined)?.(err);
    }) as () => void);
  };
  const destroy = store.destroy.bind(store);
  store.destroy = (sid, callback) => {
    touched.made?.delete(sid);
    destroy(sid, callback);
  };
}

/** How often a session is touched: a tenth of the idle timeout, at most once a minute. */
export function touchIntervalMs(idleSeconds: number): number {
  return Math.min(60_000, Math.floor((idleSeconds * 1000) / 10));
}

/**
 * `endings` has already wrapped the store (session-endings.ts); the throttle goes around it, so that what it does
 * at a touch happens at the throttled moments only.
 */
export function createSessionMiddleware(config: Config, store: Store, endings: SessionEndings): RequestHandler[] {
  endings.track(store);
  throttleTouches(store, touchIntervalMs(config.sessionIdleSeconds));
  typeStoreErrors(store);
  const middleware = session({
    name: sessionCookieName(config),
    secret: config.sessionSecret,
    store,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    unset: 'keep',
    proxy: config.trustProxy !== false ? true : undefined,
    cookie: sessionCookieOptions(config),
  });
  // Absolute timeout, enforced on the server whatever the cookie says.
  const absolute: RequestHandler = (req, _res, next) => {
    const created = req.session?.createdAt;
    if (created !== undefined && Date.now() - created > config.sessionAbsoluteSeconds * 1000) {
      req.log?.info({ event: 'session.expired', reason: 'absolute_timeout' }, 'session: absolute timeout reached; ending it');
      // its contexts end here (tokens revoked in the background); the regenerated session holds none
      endings.endContexts(Object.keys(req.session.contexts ?? {}), { reason: 'absolute_timeout', noticed: 'request', sessionSha: sha256Short(req.sessionID) }, req.log);
      req.session.regenerate((err) => next(err ? typed('regenerate', err) : undefined));
      return;
    }
    next();
  };
  return [middleware, absolute];
}
