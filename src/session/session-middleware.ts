/**
 * express-session with a hardened cookie: `__Host-` prefixed and Secure when PUBLIC_URL is https, HttpOnly,
 * Path=/, SameSite=Lax (Strict would drop the cookie on the return from the authorization server).
 * Without a shared store, sessions live in a bounded in-memory store (single instance only).
 */
import session, { type Store } from 'express-session';
import createMemoryStore from 'memorystore';
import type { RequestHandler } from 'express';
import type { Config } from '../config.js';

export const SESSION_MAX_AGE_MS = 8 * 60 * 60 * 1000;

export function sessionCookieName(config: Pick<Config, 'publicUrl'>): string {
  return config.publicUrl.startsWith('https:') ? '__Host-smart-bff' : 'smart-bff.sid';
}

export function createMemorySessionStore(): Store {
  const MemoryStore = createMemoryStore(session);
  return new MemoryStore({ checkPeriod: 10 * 60 * 1000, max: 10_000, ttl: SESSION_MAX_AGE_MS });
}

export function createSessionMiddleware(config: Config, store: Store): RequestHandler {
  const secure = config.publicUrl.startsWith('https:');
  return session({
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
}
