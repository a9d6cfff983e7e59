/**
 * `POST /logout`: revoke tokens where the server advertises a revocation endpoint (best effort), drop them,
 * destroy the session and clear the cookie.
 */
import * as client from 'openid-client';
import type { Request, Response } from 'express';
import type { SmartDeps } from '../smart/deps.js';
import { destroySession } from '../session/session-ops.js';
import { sessionCookieName, sessionCookieOptions } from '../session/session-middleware.js';
import { buildOAuthConfig } from '../smart/oauth-config.js';
import { launchCredentials } from '../smart/client-auth.js';

export function logoutHandler(deps: SmartDeps) {
  return async function logout(req: Request, res: Response): Promise<void> {
    const contexts = Object.values(req.session?.contexts ?? {});
    let revoked = 0;
    for (const ctx of contexts) {
      const tokens = await deps.tokenStore.get(ctx.id);
      await deps.tokenStore.delete(ctx.id);
      const registration = deps.registry.byName(ctx.registration);
      if (!tokens || !registration) continue;
      try {
        const server = await deps.discovery.get(ctx.iss, req.log);
        if (!server.configuration.revocation_endpoint) continue;
        const oauth = buildOAuthConfig(server, launchCredentials(registration), { timeoutMs: deps.config.httpTimeoutMs, allowInsecureHttp: deps.config.allowInsecureHttp });
        if (tokens.refreshToken) await client.tokenRevocation(oauth, tokens.refreshToken, { token_type_hint: 'refresh_token' });
        await client.tokenRevocation(oauth, tokens.accessToken, { token_type_hint: 'access_token' });
        revoked++;
      } catch (err) {
        req.log.warn({ event: 'logout.revoke_failed', contextId: ctx.id, reason: (err as Error).name }, 'logout: token revocation failed (tokens dropped locally)');
      }
    }
    if (req.session) await destroySession(req);
    res.clearCookie(sessionCookieName(deps.config), sessionCookieOptions(deps.config));
    req.log.info({ event: 'logout', contexts: contexts.length, revoked }, 'logout: session ended');
    res.setHeader('Cache-Control', 'no-store');
    res.json({ ok: true, revoked });
  };
}
