/**
 * Request targets (RFC 9112 §3.2). The app serves the origin form (`/path?query`). The absolute form
 * (`http://host/path?query`), which a server must accept, is reduced to its path and query as text (no URL
 * parsing: nothing is decoded and no dot segment is resolved that the path checks downstream would not see).
 * Anything else (the asterisk form `GET *`, an authority form, garbage) is refused with 400 before anything reads
 * the path: express-session skips a request whose path does not start with its cookie path, and such a request
 * must never pass for a session store outage.
 */
import type { RequestHandler } from 'express';
import { AppError, ErrorCode } from './errors.js';

const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/;

export function originForm(url: string): string {
  if (url.startsWith('/')) return url;
  const authority = ABSOLUTE.exec(url);
  if (!authority) return url;
  const rest = url.slice(authority[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

export const requireOriginForm: RequestHandler = (req, _res, next) => {
  if (!req.url.startsWith('/')) return next(new AppError(ErrorCode.BAD_REQUEST, 400, 'The request target must be a path (such as /app).'));
  next();
};
