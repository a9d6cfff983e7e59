/**
 * The access token of a launch context, refreshed before it expires (expires_at minus a skew) or once after
 * an upstream 401. Concurrent callers that find the same stale token share one refresh (single flight, per
 * process); the new refresh token replaces the old one in one store write, so the old one is never sent again.
 * Refresh `invalid_grant` ends the launch context (401 session_expired) and revokes its access token, which may
 * still be live; 5xx or timeout keeps the refresh token for the next try (503). New tokens for a context that
 * ended while they were being fetched are revoked, never stored. The client authenticates as in the code exchange (fresh private_key_jwt assertion,
 * or Basic for symmetric clients).
 */
import * as client from 'openid-client';
import { AppError, ErrorCode } from '../http/errors.js';
import { clip, fingerprint, type Logger } from '../log.js';
import type { TokenSet } from '../session/token-store.js';
import type { LaunchContextInfo } from '../session/types.js';
import type { SmartDeps } from './deps.js';
import { buildOAuthConfig, type HttpObservation } from './oauth-config.js';
import { launchCredentials } from './client-auth.js';
import { invalidClientCauses } from './compatibility.js';
import { IdTokenError, idTokenClaimFailure, type IdTokenFailure } from './id-token.js';
import { diagnoseTokenFailure } from './diagnosis.js';
import { describeNetworkError, isTimeout } from '../http/network-errors.js';
import { oauthErrorDetails } from './oauth-errors.js';

export class TokenRefresher {
  /** In-flight refreshes by context id (a per-process cache of promises; entries live only while in flight). */
  private readonly inflight = new Map<string, Promise<TokenSet>>();

  constructor(private readonly deps: SmartDeps) {}

  /**
   * A usable token set for this context. `rejectedToken`: the access token an upstream just answered 401 to;
   * a refresh happens unless another request already replaced it. `log` is called only when there is something
   * to log: most calls find a fresh token and log nothing, so they never build a request logger.
   */
  async tokensFor(ctx: LaunchContextInfo, log: () => Logger, rejectedToken?: string): Promise<TokenSet> {
    // a call reads through the store's cache when it has one; after a 401 the store itself (a refresh elsewhere may
    // have replaced the token), and a refresh re-reads it once it holds the lock
    const store = this.deps.tokenStore;
    const tokens = rejectedToken === undefined && store.cached ? await store.cached(ctx.id) : await store.get(ctx.id);
    if (!tokens) throw sessionExpired('The tokens of this launch are gone (the launch ended or the server restarted).');
    const stale = rejectedToken !== undefined ? tokens.accessToken === rejectedToken : this.expiring(tokens);
    if (!stale) return tokens;
    if (!tokens.refreshToken) {
      if (rejectedToken !== undefined || (tokens.expiresAt !== undefined && tokens.expiresAt <= Date.now())) {
        await this.deps.tokenStore.delete(ctx.id);
        throw sessionExpired('The access token expired and this launch has no refresh token (ask for online_access or offline_access).');
      }
      return tokens;
    }
    let pending = this.inflight.get(ctx.id);
    if (!pending) {
      pending = this.refreshOnce(ctx, tokens, log()).finally(() => this.inflight.delete(ctx.id));
      this.inflight.set(ctx.id, pending);
    }
    return pending;
  }

  /**
   * The context's token set when it is at hand (in this process's memory, TokenStore.peek) and not about to
   * expire: what `tokensFor` would answer, without waiting for anything. Undefined otherwise, and the caller asks
   * `tokensFor`, which reads the store and refreshes as needed. The proxy's fast path.
   */
  freshAtHand(ctx: LaunchContextInfo): TokenSet | undefined {
    const tokens = this.deps.tokenStore.peek?.(ctx.id);
    return tokens && !this.expiring(tokens) ? tokens : undefined;
  }

  /** Whether a token set is due a refresh: it expires within the skew (TOKEN_REFRESH_SKEW_SECONDS). */
  private expiring(tokens: TokenSet): boolean {
    return tokens.expiresAt !== undefined && tokens.expiresAt - this.deps.config.tokenRefreshSkewSeconds * 1000 <= Date.now();
  }

  /**
   * One refresh across all instances: the holder of the store's lock refreshes; the others wait for the token
   * set to change. Whoever gets the lock re-reads first, in case the refresh already happened elsewhere.
   */
  private async refreshOnce(ctx: LaunchContextInfo, stale: TokenSet, log: Logger): Promise<TokenSet> {
    const lockMs = this.deps.config.httpTimeoutMs + 5000;
    const release = await this.deps.tokenStore.tryLock(ctx.id, lockMs);
    if (!release) {
      log.debug({ event: 'token.refresh.wait', contextId: ctx.id }, 'refresh: another instance holds the lock; waiting for its result');
      const deadline = Date.now() + lockMs;
      while (Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        const now = await this.deps.tokenStore.get(ctx.id);
        if (!now) throw sessionExpired('This launch ended while its token was being refreshed.');
        if (now.accessToken !== stale.accessToken) return now;
      }
      throw refreshUnavailable('The access token is being refreshed elsewhere and it is taking too long.', undefined);
    }
    try {
      const current = await this.deps.tokenStore.get(ctx.id);
      if (!current) throw sessionExpired('This launch ended.');
      if (current.accessToken !== stale.accessToken) return current;
      return await this.refresh(ctx, current, log);
    } finally {
      await release().catch(() => undefined);
    }
  }

  private async refresh(ctx: LaunchContextInfo, tokens: TokenSet, log: Logger): Promise<TokenSet> {
    const registration = this.deps.registry.byName(tokens.registration);
    if (!registration) throw sessionExpired('The app configuration changed; launch again.');
    const server = await this.deps.discovery.get(ctx.iss, log);
    const credentials = launchCredentials(registration);
    let observed: HttpObservation | undefined;
    const oauth = buildOAuthConfig(server, credentials, {
      timeoutMs: this.deps.config.httpTimeoutMs, allowInsecureHttp: this.deps.config.allowInsecureHttp, observe: (o) => (observed = o),
      // An id_token in a refresh response is kept only when openid was asked for (and so can be verified); one sent
      // anyway is set aside (and logged).
      ...(ctx.scopesRequested.includes('openid') ? {} : { ignoreIdToken: { log, step: 'refresh' as const, contextId: ctx.id } }),
    });
    const refreshToken = tokens.refreshToken!;
    const started = Date.now();
    log.info(
      { event: 'token.refresh.request', contextId: ctx.id, endpoint: server.configuration.token_endpoint, grant_type: 'refresh_token', client_auth: credentials.method, refresh_fp: fingerprint(refreshToken) },
      'refresh: requesting a new access token',
    );
    let res: Awaited<ReturnType<typeof client.refreshTokenGrant>>;
    try {
      res = await client.refreshTokenGrant(oauth, refreshToken);
    } catch (err) {
      const durationMs = Date.now() - started;
      const details = oauthErrorDetails(err);
      this.deps.metrics.tokenRefreshes.inc({ result: details?.error.slice(0, 40) ?? 'unavailable' });
      if (details) {
        const diagnosis = diagnoseTokenFailure({
          grantType: 'refresh_token', oauthError: details.error, errorDescription: details.errorDescription, status: details.status,
          errorUri: details.errorUri, serverDate: observed?.date ?? details.date, clientAuthMethod: credentials.method,
          clientAuthCauses: invalidClientCauses(server.configuration, credentials),
        });
        log.warn(
          { event: 'token.refresh.response', contextId: ctx.id, status: details.status, error: clip(details.error, 100), error_description: clip(details.errorDescription, 300) ?? null, vendor_code: diagnosis.vendorCode ?? null, duration_ms: durationMs, likely_causes: diagnosis.causes },
          `refresh: refused (${clip(details.error, 60)})`,
        );
        if (details.error === 'invalid_grant') {
          // the context ends; its access token may still be live: revoked in the background (the refresh token is dead)
          this.deps.endings.end([ctx.id], { reason: 'refresh_invalid_grant' }, log, { refreshTokenDead: true });
          throw sessionExpired('The EHR no longer accepts this launch\'s refresh token.', diagnosis.causes);
        }
        if (details.status >= 500) throw refreshUnavailable(`The EHR's token endpoint answered ${details.status}.`, err);
        throw new AppError(ErrorCode.TOKEN_EXCHANGE_FAILED, 502, `The EHR refused to refresh the access token (${clip(details.error, 60)}).`, { causes: diagnosis.causes, cause: err });
      }
      const idToken = idTokenClaimFailure(err, { issuer: server.configuration.issuer, clientId: registration.clientId });
      if (idToken) {
        // the response's tokens never reached us (openid-client refused the response); the launch ends
        this.deps.endings.end([ctx.id], { reason: 'refresh_id_token_invalid' }, log);
        throw refreshIdTokenInvalid(idToken, ctx, log, err);
      }
      const timedOut = isTimeout(err);
      const reason = !timedOut && err instanceof client.ClientError && observed && observed.status >= 500 ? `status ${observed.status}` : describeNetworkError(err);
      log.warn({ event: 'token.refresh.response', contextId: ctx.id, outcome: 'unavailable', reason, status: observed?.status ?? null, duration_ms: durationMs }, 'refresh: token endpoint unavailable; the refresh token is kept');
      throw refreshUnavailable(timedOut ? 'The EHR\'s token endpoint did not answer in time.' : `The EHR's token endpoint is unavailable (${reason}).`, err);
    }
    if (res.id_token) {
      try {
        await this.deps.idTokens.verifySignature(res.id_token, server);
      } catch (err) {
        this.deps.metrics.tokenRefreshes.inc({ result: 'id_token_invalid' });
        const failed = refreshIdTokenInvalid(err instanceof IdTokenError ? err.failure : { check: 'signature', reason: 'its signature could not be verified' }, ctx, log, err);
        // the launch ends: its stored tokens and the ones this response carried (never kept) are revoked
        this.deps.endings.end([ctx.id], { reason: 'refresh_id_token_invalid' }, log);
        void this.deps.endings.revokeTaken(ctx.id, {
          accessToken: res.access_token, tokenType: 'Bearer', fhirBaseUrl: tokens.fhirBaseUrl, registration: tokens.registration,
          ...(res.refresh_token && res.refresh_token !== refreshToken ? { refreshToken: res.refresh_token } : {}),
        }, { reason: 'refresh_id_token_invalid' }, log);
        throw failed;
      }
    }
    this.deps.metrics.tokenRefreshes.inc({ result: 'success' });
    const expiresAt = typeof res.expires_in === 'number' ? Date.now() + res.expires_in * 1000 : undefined;
    const next: TokenSet = {
      accessToken: res.access_token,
      tokenType: 'Bearer',
      fhirBaseUrl: tokens.fhirBaseUrl,
      registration: tokens.registration,
      // A rotated refresh token replaces the old one in the same write; without rotation the old one stays valid.
      refreshToken: res.refresh_token ?? refreshToken,
      ...(res.id_token ?? tokens.idToken ? { idToken: res.id_token ?? tokens.idToken } : {}),
      ...(expiresAt ? { expiresAt } : {}),
    };
    // kept as long as the old set was (its session's life); not stored if the context ended during the refresh
    if (!(await this.deps.tokenStore.replace(ctx.id, next))) {
      void this.deps.endings.revokeTaken(ctx.id, next, { reason: 'ended_during_refresh' }, log);
      throw sessionExpired('This launch ended while its token was being refreshed.');
    }
    log.info(
      { event: 'token.refresh.response', contextId: ctx.id, status: observed?.status ?? 200, duration_ms: Date.now() - started, expires_in: res.expires_in ?? null, rotated: Boolean(res.refresh_token && res.refresh_token !== refreshToken), scope: res.scope ?? null },
      'refresh: new access token stored',
    );
    return next;
  }
}

export function sessionExpired(message: string, causes: string[] = []): AppError {
  return new AppError(ErrorCode.SESSION_EXPIRED, 401, message, { hint: 'Launch the app again from the EHR (or sign in again).', causes, relaunch: true });
}

/**
 * A refresh whose id_token fails a check: nothing of the response is kept, and the launch ends (its tokens, and
 * the response's when it got that far, are revoked): a server whose ID tokens cannot be trusted gets no more
 * refreshes, and the person launches again.
 */
function refreshIdTokenInvalid(failure: IdTokenFailure, ctx: LaunchContextInfo, log: Logger, cause: unknown): AppError {
  log.warn(
    { event: 'token.refresh.response', contextId: ctx.id, outcome: 'id_token_invalid', id_token_check: failure.check, reason: failure.reason },
    `refresh: the ID token failed the ${failure.check} check: ${failure.reason}`,
  );
  return new AppError(ErrorCode.ID_TOKEN_INVALID, 502, `The EHR's refreshed ID token failed validation: ${failure.reason}.`, { hint: 'Launch the app again; if it keeps failing, give the correlation id to the operator.', relaunch: true, cause });
}

function refreshUnavailable(message: string, cause: unknown): AppError {
  return new AppError(ErrorCode.TOKEN_ENDPOINT_UNAVAILABLE, 503, message, { hint: 'Try again in a moment; the launch is kept.', cause });
}
