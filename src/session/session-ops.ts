/** Promise wrappers around express-session's callback API. Store failures reject with a StoreError. */
import type { Request } from 'express';
import { StoreError } from '../http/errors.js';

export function saveSession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.save((err) => (err ? reject(storeError('set', err)) : resolve())));
}

/** New session id, same data: prevents fixation at login. The old id is destroyed. */
export function regenerateSession(req: Request): Promise<void> {
  const data = { ...req.session } as Record<string, unknown>;
  delete data.cookie;
  return new Promise((resolve, reject) =>
    req.session.regenerate((err) => {
      if (err) return reject(storeError('regenerate', err));
      Object.assign(req.session, data);
      resolve();
    }),
  );
}

export function destroySession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.destroy((err) => (err ? reject(storeError('destroy', err)) : resolve())));
}

function storeError(operation: string, err: unknown): StoreError {
  return err instanceof StoreError ? err : new StoreError(operation, err);
}
