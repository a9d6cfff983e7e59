/**
 * Token revocation (RFC 7009) for a launch context's token set, where the EHR's SMART configuration advertises a
 * `revocation_endpoint`: the refresh token first (it outlives the access token; many servers then end the whole
 * grant), then the access token. The client authenticates as at the token endpoint: the configuration is built
 * by oauth-config.ts with the credentials from client-auth.ts, the one place that decides how they are sent.
 * Each request has SMART_HTTP_TIMEOUT_MS. Never throws: the outcome says what happened to each token.
 */
import * as client from 'openid-client';
import type { Logger } from '../log.js';
import type { TokenSet } from '../session/token-store.js';
import { describeNetworkError, isNetworkError, isTimeout } from '../http/network-errors.js';
import type { SmartDeps } from './deps.js';
import { buildOAuthConfig } from './oauth-config.js';
import { launchCredentials } from './client-auth.js';
import { oauthErrorDetails } from './oauth-errors.js';

/** What happened to one token: revoked (200), not sent (absent, or skipped: already dead), or not confirmed. */
export type TokenOutcome =
  | { outcome: 'revoked' | 'absent' | 'skipped' }
  | { outcome: 'refused'; error: string; status: number }
  | { outcome: 'timeout' | 'unreachable' | 'failed'; reason: string };

export interface RevocationResult {
  /** Whether the EHR can revoke at all: no revocation_endpoint, or the registration or discovery is gone. */
  supported: boolean;
  endpoint?: string;
  /** Why nothing was sent, when nothing was. */
  reason?: string;
  refresh: TokenOutcome;
  access: TokenOutcome;
}

export function confirmed(o: TokenOutcome): boolean {
  return o.outcome === 'revoked' || o.outcome === 'absent' || o.outcome === 'skipped';
}

export async function revokeTokenSet(
  deps: Pick<SmartDeps, 'config' | 'registry' | 'discovery'>,
  tokens: TokenSet,
  opts: { refreshTokenDead?: boolean; log: Logger },
): Promise<RevocationResult> {
  const notSent = (reason: string): RevocationResult => ({ supported: false, reason, refresh: { outcome: 'absent' }, access: { outcome: 'absent' } });
  const registration = deps.registry.byName(tokens.registration);
  if (!registration) return notSent('registration_gone');
  let server;
  try {
    server = await deps.discovery.get(tokens.fhirBaseUrl, opts.log);
  } catch (err) {
    const failed: TokenOutcome = { outcome: 'failed', reason: `discovery: ${(err as { code?: string }).code ?? (err as Error).name}` };
    return { supported: true, refresh: tokens.refreshToken && !opts.refreshTokenDead ? failed : { outcome: tokens.refreshToken ? 'skipped' : 'absent' }, access: failed };
  }
  const endpoint = server.configuration.revocation_endpoint;
  if (!endpoint) return notSent('no_revocation_endpoint');
  const oauth = buildOAuthConfig(server, launchCredentials(registration), { timeoutMs: deps.config.httpTimeoutMs, allowInsecureHttp: deps.config.allowInsecureHttp });
  const refresh: TokenOutcome = !tokens.refreshToken ? { outcome: 'absent' }
    : opts.refreshTokenDead ? { outcome: 'skipped' }
    : await revokeOne(oauth, tokens.refreshToken, 'refresh_token');
  const access = await revokeOne(oauth, tokens.accessToken, 'access_token');
  return { supported: true, endpoint, refresh, access };
}

async function revokeOne(oauth: client.Configuration, token: string, hint: 'refresh_token' | 'access_token'): Promise<TokenOutcome> {
  try {
    await client.tokenRevocation(oauth, token, { token_type_hint: hint });
    return { outcome: 'revoked' };
  } catch (err) {
    const details = oauthErrorDetails(err);
    if (details) return { outcome: 'refused', error: details.error.slice(0, 60), status: details.status };
    if (isTimeout(err)) return { outcome: 'timeout', reason: 'timeout' };
    if (isNetworkError(err)) return { outcome: 'unreachable', reason: describeNetworkError(err) };
    // openid-client's "unexpected HTTP status code" (a 5xx page, a 404) carries the Response as its cause
    const status = ((err as { cause?: unknown }).cause as Response | undefined)?.status;
    return { outcome: 'failed', reason: typeof status === 'number' ? `status ${status}` : ((err as { code?: string }).code ?? (err as Error).name ?? 'error') };
  }
}
