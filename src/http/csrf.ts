/** Anti-forgery for programmatic endpoints: the `X-CSRF: 1` header (a cross-site form cannot set it). 401 JSON, never a redirect. */
import type { RequestHandler } from 'express';
import { AppError, ErrorCode } from './errors.js';

export const requireCsrfHeader: RequestHandler = (req, _res, next) => {
  if (req.headers['x-csrf'] !== '1') {
    return next(new AppError(ErrorCode.CSRF_HEADER_REQUIRED, 401, 'This endpoint requires the header X-CSRF: 1.'));
  }
  next();
};
