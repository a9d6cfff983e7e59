/**
 * express-session with a hardened cookie: `__Host-` prefixed, Secure, HttpOnly, Path=/ whenever PUBLIC_URL is
 * https; SameSite=Lax by default (Strict would drop the cookie on the return from the authorization server);
 * in `embedded` mode SameSite=None; Secure; Partitioned (CHIPS) for EHRs that show the app in a cross-site
 * iframe. The cookie lives as long as the browser session; the server enforces the timeouts: the store entry
 * expires SESSION_IDLE_MINUTES after the last request (requests touch it, at most every idle/10 and once a
 * minute), and a session older than SESSION_MAX_HOURS is ended whatever its activity.
 * Without a shared store, sessions live in a bounded in-memory store (single instance only).
 */
import session, { type Store } from 'express-session';
import createMemoryStore from 'memorystore';
import { LRUCache } from 'lru-cache';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Config } from '../config.js';
import { AppError, ErrorCode } from '../http/errors.js';

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

export function createMemorySessionStore(ttlSeconds = 8 * 3600): Store {
  const MemoryStore = createMemoryStore(session);
  return new MemoryStore({ checkPeriod: 10 * 60 * 1000, max: 10_000, ttl: ttlSeconds * 1000 });
}

/**
 * express-session leaves req.session undefined while its store is disconnected: answer 503, never a crash and
 * never a silent new session.
 */
export function requireSessionStore(onError?: () => void): RequestHandler {
  return (req, _res, next) => {
    if (!req.session) {
      onError?.();
      return next(sessionStoreUnavailable());
    }
    next();
  };
}

function sessionStoreUnavailable(cause?: unknown): AppError {
  return new AppError(ErrorCode.SESSION_STORE_UNAVAILABLE, 503, 'The session store is unavailable right now. Try again in a moment.', { cause });
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
  const recent = new LRUCache<string, true>({ max: 100_000, ttl: intervalMs });
  store.touch = (sid, sess, callback) => {
    if (recent.has(sid)) return callback?.();
    recent.set(sid, true);
    touch(sid, sess, ((err?: unknown) => {
      if (err) recent.delete(sid);
      (callback as ((err?: unknown) => void) | undefined)?.(err);
    }) as () => void);
  };
  const destroy = store.destroy.bind(store);
  store.destroy = (sid, callback) => {
    recent.delete(sid);
    destroy(sid, callback);
  };
}

/** How often a session is touched: a tenth of the idle timeout, at most once a minute. */
export function touchIntervalMs(idleSeconds: number): number {
  return Math.min(60_000, Math.floor((idleSeconds * 1000) / 10));
}

export function createSessionMiddleware(config: Config, store: Store, onStoreError?: () => void): (RequestHandler | ErrorRequestHandler)[] {
  throttleTouches(store, touchIntervalMs(config.sessionIdleSeconds));
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
  // A store that fails while loading a session (Redis down) is a 503, not a 500.
  const storeErrors: ErrorRequestHandler = (err, _req, _res, next) => {
    if (err instanceof AppError) return next(err);
    onStoreError?.();
    next(sessionStoreUnavailable(err));
  };
  // Absolute timeout, enforced on the server whatever the cookie says.
  const absolute: RequestHandler = (req, _res, next) => {
    const created = req.session?.createdAt;
    if (created !== undefined && Date.now() - created > config.sessionAbsoluteSeconds * 1000) {
      req.log?.info({ event: 'session.expired', reason: 'absolute_timeout' }, 'session: absolute timeout reached; ending it');
      req.session.regenerate((err) => next(err ? sessionStoreUnavailable(err) : undefined));
      return;
    }
    next();
  };
  return [middleware, storeErrors, absolute];
}
