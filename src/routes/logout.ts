/**
 * `POST /logout`: ends every launch context of the session at once, revoking their tokens in parallel where the
 * EHR advertises a revocation endpoint, destroys the session and clears the cookie. The response waits for the
 * revocations at most LOGOUT_DEADLINE_MS in all, whatever SMART_HTTP_TIMEOUT_MS each request has (Heroku's router
 * cuts a request at 30 s): the tokens are dropped here at once, and revocations still in flight past the deadline
 * finish in the background (each within SMART_HTTP_TIMEOUT_MS) while the log names the contexts not confirmed.
 */
import type { Request, Response } from 'express';
import type { SmartDeps } from '../smart/deps.js';
import type { ContextEndOutcome } from '../smart/context-endings.js';
import { destroySession } from '../session/session-ops.js';
import { sessionCookieName, sessionCookieOptions } from '../session/session-middleware.js';
import { sha256Short } from '../log.js';

/** How long the logout response waits for the EHR's answers, in all. */
export const LOGOUT_DEADLINE_MS = 3000;

export function logoutHandler(deps: SmartDeps) {
  return async function logout(req: Request, res: Response): Promise<void> {
    const ids = Object.keys(req.session?.contexts ?? {});
    const ending = deps.endings.end(ids, { reason: 'logout', ...(req.session ? { sessionSha: sha256Short(req.sessionID) } : {}) }, req.log, { urgent: true });
    // the session ends now, whatever the EHR answers
    if (req.session) await destroySession(req);
    res.clearCookie(sessionCookieName(deps.config), sessionCookieOptions(deps.config));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), LOGOUT_DEADLINE_MS); });
    const outcomes: (ContextEndOutcome | undefined)[] = await Promise.all(ending.map((p) => Promise.race([p, deadline])));
    clearTimeout(timer);
    const revoked = outcomes.filter((o) => o?.status === 'revoked').length;
    const pending = ids.filter((_, i) => outcomes[i] === undefined);
    const notRevoked = outcomes.flatMap((o) => (o && o.status !== 'revoked' ? [{ contextId: o.contextId, status: o.status }] : []));
    const fields = { event: 'logout', contexts: ids.length, revoked, ...(pending.length ? { unconfirmed_in_flight: pending } : {}), ...(notRevoked.length ? { not_revoked: notRevoked } : {}) };
    if (pending.length) {
      req.log.warn(fields, `logout: session ended; ${pending.length} revocation(s) not confirmed within ${LOGOUT_DEADLINE_MS} ms (tokens dropped here; still trying in the background)`);
    } else {
      req.log.info(fields, 'logout: session ended');
    }
    res.setHeader('Cache-Control', 'no-store');
    res.json({ ok: true, revoked, ...(pending.length ? { unconfirmed: pending.length } : {}) });
  };
}
