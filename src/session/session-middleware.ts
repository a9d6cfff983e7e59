/**
 * express-session with a hardened cookie: `__Host-` prefixed and Secure when PUBLIC_URL is https, HttpOnly,
 * Path=/, SameSite=Lax (Strict would drop the cookie on the return from the authorization server).
 * Without a shared store, sessions live in a bounded in-memory store (single instance only).
 */
import session, { type Store } from 'express-session';
import createMemoryStore from 'memorystore';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';
import type { Config } from '../config.js';

export const SESSION_MAX_AGE_MS = 8 * 60 * 60 * 1000;

export function sessionCookieName(config: Pick<Config, 'publicUrl'>): string {
  return config.publicUrl.startsWith('https:') ? '__Host-smart-bff' : 'smart-bff.sid';
}

export function createMemorySessionStore(): Store {
  const MemoryStore = createMemoryStore(session);
  return new MemoryStore({ checkPeriod: 10 * 60 * 1000, max: 10_000, ttl: SESSION_MAX_AGE_MS });
}

/**
 * express-session leaves req.session undefined while its store is disconnected: answer 503, never a crash and
 * never a silent new session.
 */
export const requireSessionStore: RequestHandler = (req, _res, next) => {
  if (!req.session) return next(sessionStoreUnavailable());
  next();
};

function sessionStoreUnavailable(cause?: unknown): AppError {
  return new AppError(ErrorCode.SESSION_STORE_UNAVAILABLE, 503, 'The session store is unavailable right now. Try again in a moment.', { cause });
}

export function createSessionMiddleware(config: Config, store: Store): (RequestHandler | ErrorRequestHandler)[] {
  const secure = config.publicUrl.startsWith('https:');
  const middleware = session({
    name: sessionCookieName(config),
    secret: config.sessionSecret,
    store,
    resave: false,
    saveUninitialized: false,
    rolling: false,
    unset: 'destroy',
    proxy: config.trustProxy !== false ? true : undefined,
    cookie: { httpOnly: true, secure, sameSite: 'lax', path: '/', maxAge: SESSION_MAX_AGE_MS },
  });
  // A store that fails while loading a session (Redis down) is a 503, not a 500.
  const storeErrors: ErrorRequestHandler = (err, _req, _res, next) => next(err instanceof AppError ? err : sessionStoreUnavailable(err));
  return [middleware, storeErrors];
}
