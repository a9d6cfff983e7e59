/** Promise wrappers around express-session's callback API. */
import type { Request } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';

export function saveSession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.save((err) => (err ? reject(storeError(err)) : resolve())));
}

/** New session id, same data: prevents fixation at login. The old id is destroyed. */
export function regenerateSession(req: Request): Promise<void> {
  const data = { ...req.session } as Record<string, unknown>;
  delete data.cookie;
  return new Promise((resolve, reject) =>
    req.session.regenerate((err) => {
      if (err) return reject(storeError(err));
      Object.assign(req.session, data);
      resolve();
    }),
  );
}

export function destroySession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.destroy((err) => (err ? reject(storeError(err)) : resolve())));
}

function storeError(err: unknown): AppError {
  return new AppError(ErrorCode.SESSION_STORE_UNAVAILABLE, 503, 'The session store is unavailable. Try again in a moment.', { cause: err });
}
