/**
 * The launch cookie: a random browser-binding id that ties pending launches to the browser that started them,
 * so that a `state` used from another browser matches nothing (and cannot use up its owner's launch). One id per
 * browser, reused by every launch it starts, so several tabs can launch at once. Only its SHA-256 is stored with a
 * pending launch. Same rules as the session cookie (sessionCookieOptions): `__Host-` prefixed, Secure, HttpOnly,
 * Path=/ on https; SameSite=Lax by default, which the top-level redirect back from the authorization server
 * carries; SameSite=None; Partitioned in the embedded mode. Like express-session, a Secure cookie is only sent on
 * a request the app knows is secure (behind a TLS-terminating router that needs TRUST_PROXY): otherwise the
 * callback reports the missing cookie (`session_cookie_missing`) instead of a mysterious state error.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Request, Response } from 'express';
import { cookieSecure, sessionCookieOptions, type SessionCookieConfig } from './session-middleware.js';
import { readCookie } from '../http/cookies.js';

const BINDING = /^[A-Za-z0-9_-]{43}$/;

export function launchCookieName(config: SessionCookieConfig): string {
  return cookieSecure(config) ? '__Host-smart-bff-launch' : 'smart-bff.launch';
}

/** The browser's binding id from its launch cookie, when it sent a well-formed one. */
export function readLaunchBinding(req: Pick<IncomingMessage, 'headers'>, config: SessionCookieConfig): string | undefined {
  const value = readCookie(req, launchCookieName(config));
  return value !== undefined && BINDING.test(value) ? value : undefined;
}

/** The browser's binding id: the one its launch cookie carries, or a new one. */
export function launchBindingFor(req: Pick<IncomingMessage, 'headers'>, config: SessionCookieConfig): string {
  return readLaunchBinding(req, config) ?? randomBytes(32).toString('base64url');
}

/**
 * (Re)issues the launch cookie to last `maxAgeSeconds`. Called only once the pending launch is stored: a launch the
 * store refused (503) leaves no cookie behind.
 */
export function setLaunchCookie(req: Request, res: Response, config: SessionCookieConfig, binding: string, maxAgeSeconds: number): void {
  const options = sessionCookieOptions(config);
  if (!options.secure || req.secure) res.cookie(launchCookieName(config), binding, { ...options, maxAge: maxAgeSeconds * 1000 });
}

/** What a pending launch stores of the binding id. */
export function bindingHash(binding: string): string {
  return createHash('sha256').update(binding).digest('base64url');
}
