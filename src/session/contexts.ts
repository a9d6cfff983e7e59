/**
 * Launch contexts: one per completed launch (tokens, FHIR base, patient), several per browser session so that
 * two tabs with two patients never cross. The page names its context with the `X-SMART-Context` header; without
 * it, the session's only context is used, and with several the request is refused (`context_required`).
 * The header is user input: only the session's own keys can match (never `__proto__`, `constructor`, …).
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Request } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';
import type { LaunchContextInfo } from './types.js';

export const CONTEXT_HEADER = 'x-smart-context';

/** Adds a context; evicts the oldest beyond `max`. Returns the ids evicted (their tokens must be dropped). */
export function addContext(req: Request, info: LaunchContextInfo, max: number): string[] {
  const contexts = { ...(req.session.contexts ?? {}) };
  contexts[info.id] = info;
  const byAge = Object.values(contexts).sort((a, b) => a.createdAt - b.createdAt);
  const evicted: string[] = [];
  while (byAge.length > max) {
    const oldest = byAge.shift()!;
    delete contexts[oldest.id];
    evicted.push(oldest.id);
  }
  req.session.contexts = contexts;
  return evicted;
}

/** The launch context a request names (or the session's only one); `session` is the request's session data, if any. */
export function selectContext(req: { session?: { contexts?: Record<string, LaunchContextInfo> } | undefined; headers: IncomingHttpHeaders }): LaunchContextInfo {
  const contexts = req.session?.contexts ?? {};
  const ids = Object.keys(contexts);
  const named = req.headers[CONTEXT_HEADER] as string | undefined; // Node joins repeated x- headers into one string
  if (named !== undefined) {
    const ctx = Object.hasOwn(contexts, named) ? contexts[named] : undefined;
    if (!ctx) {
      throw new AppError(ErrorCode.CONTEXT_UNKNOWN, 401, 'This launch context is unknown or has ended.', { hint: 'Launch the app again.', relaunch: true });
    }
    return ctx;
  }
  if (ids.length === 1) return contexts[ids[0]!]!;
  if (ids.length === 0) {
    throw new AppError(ErrorCode.NOT_AUTHENTICATED, 401, 'No active launch in this session.', { hint: 'Launch the app from the EHR, or sign in with /login.', relaunch: true });
  }
  throw new AppError(ErrorCode.CONTEXT_REQUIRED, 400, `This session holds ${ids.length} launches; name one with the ${CONTEXT_HEADER} header.`);
}
