/**
 * Operator sign-in for the console's pages (/admin). The operator enters ADMIN_TOKEN once, on the sign-in page;
 * the server compares it in constant time, limits failed attempts per address, and answers with its own cookie
 * naming a server-side operator session (operator-sessions.ts): `__Host-smart-bff-admin` on https (Secure),
 * `smart-bff.admin` on http; HttpOnly, SameSite=Strict, Path=/, no Domain, no Max-Age (it ends with the browser;
 * the server ends it after ADMIN_SESSION_IDLE_MINUTES idle). It is apart from the clinicians' session cookie. The
 * token itself is never kept by the browser: not in a cookie, not in storage, not in a page.
 *
 * Anti-forgery on every state change (sign-in, sign-out, start, cancel): they are made by the console's own
 * script with `fetch` and the header `X-CSRF: 1` (a cross-site form cannot send it, and a cross-site fetch with
 * it is stopped by the CORS preflight, which this server never grants), and the browser's `Origin` and
 * `Sec-Fetch-Site` headers, when sent, must say the request comes from this origin (PUBLIC_URL).
 *
 * Pages without a valid session redirect to the sign-in page; JSON endpoints answer 401 JSON.
 */
import { readCookie } from '../http/cookies.js';
import { sameSecret } from '../http/secret-compare.js';
import express, { type Request, type RequestHandler, type Response } from 'express';
import { rateLimit } from 'express-rate-limit';
import { RedisStore, type RedisReply } from 'rate-limit-redis';
import type { Config } from '../config.js';
import { AppError, ErrorCode } from '../http/errors.js';
import { sendCommandLoadingScriptsLater } from '../http/rate-limit.js';
import type { RedisClient } from '../session/redis-client.js';
import type { OperatorSessionStore } from './operator-sessions.js';

/** Failed sign-ins allowed per client address per window. */
export const SIGN_IN_ATTEMPTS = 10;
const SIGN_IN_WINDOW_MS = 15 * 60_000;
export const SIGN_IN_PATH = '/admin/sign-in';
const DEFAULT_NEXT = '/admin/launches';

type CookieConfig = Pick<Config, 'publicUrl'>;

export function operatorCookieName(config: CookieConfig): string {
  return config.publicUrl.startsWith('https:') ? '__Host-smart-bff-admin' : 'smart-bff.admin';
}

function cookieOptions(config: CookieConfig) {
  return { httpOnly: true, secure: config.publicUrl.startsWith('https:'), sameSite: 'strict' as const, path: '/' };
}

/** Where to go after signing in: a page of the console, never elsewhere. */
export function safeNext(value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/admin') || value.length > 300) return DEFAULT_NEXT;
  const path = value.split('?')[0]!;
  if (!/^\/admin(\/[A-Za-z0-9._~\-/]*)?(\?[A-Za-z0-9._~\-=&%]*)?$/.test(value) || path.includes('//') || /(^|\/)\.\.?(\/|$)/.test(path) || path.startsWith(SIGN_IN_PATH)) {
    return DEFAULT_NEXT;
  }
  return value;
}

declare module 'express-serve-static-core' {
  interface Locals {
    operator?: { createdAt: number; lastSeenAt: number };
  }
}

export interface OperatorAuth {
  /** Pages: a signed-in operator, or a redirect to the sign-in page. */
  requirePage: RequestHandler;
  /** JSON endpoints: a signed-in operator, or 401 JSON. */
  requireApi: RequestHandler;
  /** Every state change: X-CSRF: 1, and Origin / Sec-Fetch-Site of this origin. */
  antiForgery: RequestHandler;
  signInPage: RequestHandler;
  /** POST /admin/api/sign-in: rate limit, JSON body, the check. */
  signIn: RequestHandler[];
  signOut: RequestHandler;
}

export function operatorAuth(o: { config: Config; adminToken: string; sessions: OperatorSessionStore; redis?: RedisClient }): OperatorAuth {
  const { config, sessions } = o;
  const name = operatorCookieName(config);
  const origin = new URL(config.publicUrl).origin;

  const current = async (req: Request, res: Response): Promise<boolean> => {
    const id = readCookie(req, name);
    if (!id) return false;
    const session = await sessions.touch(id);
    if (!session) {
      res.clearCookie(name, cookieOptions(config));
      return false;
    }
    res.locals.operator = session;
    return true;
  };

  const requirePage: RequestHandler = async (req, res, next) => {
    if (await current(req, res)) return next();
    res.redirect(303, `${SIGN_IN_PATH}?${new URLSearchParams({ next: safeNext(req.originalUrl) })}`);
  };

  const requireApi: RequestHandler = async (req, res, next) => {
    if (await current(req, res)) return next();
    next(new AppError(ErrorCode.NOT_AUTHENTICATED, 401, 'Sign in to the operator console first.', { hint: `Open ${SIGN_IN_PATH}.` }));
  };

  const antiForgery: RequestHandler = (req, _res, next) => {
    const site = req.get('sec-fetch-site');
    const from = req.get('origin');
    if ((site !== undefined && site !== 'same-origin') || (from !== undefined && from !== origin)) {
      return next(new AppError(ErrorCode.CROSS_SITE_REQUEST, 403, `This request did not come from the console's own pages (${origin}).`, {
        hint: from && from !== origin ? `The browser says it came from ${from.slice(0, 100)}. If that is this server, set PUBLIC_URL to it.` : undefined,
      }));
    }
    if (req.get('x-csrf') !== '1') return next(new AppError(ErrorCode.CSRF_HEADER_REQUIRED, 401, 'This endpoint requires the header X-CSRF: 1.'));
    next();
  };

  const limiter = rateLimit({
    windowMs: SIGN_IN_WINDOW_MS,
    limit: SIGN_IN_ATTEMPTS,
    skipSuccessfulRequests: true,
    standardHeaders: 'draft-7',
    legacyHeaders: false,
    ...(o.redis ? { store: new RedisStore({ prefix: 'smart-bff:rl-admin:', sendCommand: (...args: string[]) => sendCommandLoadingScriptsLater(o.redis!, args) as Promise<RedisReply> }) } : {}),
    // Redis down: the operator sessions (in Redis too) answer 503 on their own; the limiter does not turn it into a 500.
    passOnStoreError: true,
    handler: (_req, _res, next) => next(new AppError(ErrorCode.RATE_LIMITED, 429, 'Too many failed sign-ins from this address. Wait 15 minutes and try again.')),
  });

  const check: RequestHandler = async (req, res) => {
    const given = (req.body as { token?: unknown } | undefined)?.token;
    if (typeof given !== 'string' || given.length > 1024 || !sameSecret(given, o.adminToken)) {
      req.log.warn({ event: 'admin.sign_in', outcome: 'refused', ip: req.ip }, 'operator console: sign-in refused (wrong token)');
      throw new AppError(ErrorCode.NOT_AUTHENTICATED, 401, 'That is not the operator token (ADMIN_TOKEN).');
    }
    // A new session every time: an id someone else planted before the sign-in never becomes a signed-in one.
    const previous = readCookie(req, name);
    if (previous) await sessions.destroy(previous);
    const id = await sessions.create();
    res.cookie(name, id, cookieOptions(config));
    req.log.info({ event: 'admin.sign_in', outcome: 'ok', ip: req.ip }, 'operator console: signed in');
    res.json({ ok: true, next: safeNext((req.body as { next?: unknown }).next) });
  };

  const signOut: RequestHandler = async (req, res) => {
    const id = readCookie(req, name);
    if (id) await sessions.destroy(id);
    res.clearCookie(name, cookieOptions(config));
    req.log.info({ event: 'admin.sign_out' }, 'operator console: signed out');
    res.json({ ok: true, next: SIGN_IN_PATH });
  };

  const signInPage: RequestHandler = async (req, res) => {
    const next = safeNext(req.query.next);
    if (await current(req, res)) return res.redirect(303, next);
    res.render('admin/sign-in', { title: 'Operator sign-in', next, section: 'sign-in' });
  };

  return { requirePage, requireApi, antiForgery, signInPage, signIn: [antiForgery, limiter, express.json({ limit: '4kb' }), check], signOut };
}
