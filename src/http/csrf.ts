/** Anti-forgery for programmatic endpoints: the `X-CSRF: 1` header (a cross-site form cannot set it). 401 JSON, never a redirect. */
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestHandler } from 'express';
import { AppError, ErrorCode } from './errors.js';

/** The request's anti-forgery header, or the error that refuses it (401 csrf_header_required). */
export function csrfHeaderError(headers: IncomingHttpHeaders): AppError | undefined {
  if (headers['x-csrf'] === '1') return undefined;
  return new AppError(ErrorCode.CSRF_HEADER_REQUIRED, 401, 'This endpoint requires the header X-CSRF: 1.');
}

export const requireCsrfHeader: RequestHandler = (req, _res, next) => next(csrfHeaderError(req.headers));
