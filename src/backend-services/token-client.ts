/**
 * SMART Backend Services tokens: client_credentials with a private_key_jwt assertion that follows SMART exactly
 * (smart/client-auth.ts; the openid-client configuration is oauth-config.ts's, as for launches), scopes adapted
 * to the server's v1/v2 syntax (never wider), the token endpoint from `<fhir base>/.well-known/smart-configuration`.
 * A cache keyed by server, client and scope reuses a token until shortly before it expires, with one request in flight per key however many callers ask. Every failure carries
 * its retry decision (retry.ts): OAuth errors such as `invalid_client`, `invalid_grant`, `invalid_scope` and
 * `unauthorized_client` are permanent and explained (the likely causes travel with the error to the CLI and to a
 * failed job's JSON); network errors, timeouts and 5xx are transient; 429 is throttling. This client never
 * retries by itself: its callers do, with one policy.
 */
import * as client from 'openid-client';
import { clip, type Logger } from '../log.js';
import type { ClientKey } from '../keys.js';
import type { DiscoveredServer, DiscoveryCache } from '../smart/discovery.js';
import { backendCredentials } from '../smart/client-auth.js';
import { invalidClientCauses } from '../smart/compatibility.js';
import { buildOAuthConfig } from '../smart/oauth-config.js';
import { splitScopes } from '../oauth-scope.js';
import { adaptScopes, droppedScopeLog } from '../smart/scopes.js';
import { oauthErrorDetails } from '../smart/oauth-errors.js';
import { describeNetworkError, isTimeout } from '../http/network-errors.js';
import { isAppError } from '../http/errors.js';
import { PERMANENT, decideStatus, type RetryDecision } from './retry.js';

export interface BackendClient {
  iss: string;
  clientId: string;
  key: ClientKey;
  scope: string;
  /** Optional `jku` header: the registered JWKS URL. */
  jku?: string;
}

export interface SystemToken {
  accessToken: string;
  tokenType: string;
  /** Epoch ms. */
  expiresAt: number;
  scope: string;
  tokenEndpoint: string;
}

export class BackendTokenError extends Error {
  constructor(message: string, readonly code: string, readonly causes: string[], readonly retry: RetryDecision) {
    super(message);
    this.name = 'BackendTokenError';
  }

  get retryable(): boolean {
    return this.retry.kind !== 'permanent';
  }
}

/** Discovery failures: unreachable or 5xx is transient; a 4xx or a document we cannot use is permanent. */
function discoveryDecision(err: unknown): RetryDecision {
  if (!isAppError(err)) return { kind: 'transient', reason: describeNetworkError(err) };
  if (err.upstreamStatus !== undefined) return decideStatus(err.upstreamStatus) ?? PERMANENT;
  return err.code === 'discovery_failed' ? { kind: 'transient', reason: describeNetworkError((err as { cause?: unknown }).cause) } : PERMANENT;
}

export interface TokenClientOptions {
  discovery: DiscoveryCache;
  logger: Logger;
  timeoutMs: number;
  allowInsecureHttp: boolean;
  /** Renew this many seconds before expiry (default 60). */
  skewSeconds?: number;
}

export class BackendTokenClient {
  /** Tokens by server|client|scope: a cache, bounded by the number of configured clients and scopes. */
  private readonly cache = new Map<string, SystemToken>();
  private readonly inflight = new Map<string, Promise<SystemToken>>();
  /** Token requests sent (tests and metrics). */
  requestCount = 0;

  constructor(private readonly opts: TokenClientOptions) {}

  async getToken(c: BackendClient, opts: { forceRenew?: boolean } = {}): Promise<SystemToken> {
    const key = `${c.iss}|${c.clientId}|${splitScopes(c.scope).sort().join(' ')}`;
    const cached = this.cache.get(key);
    const skew = (this.opts.skewSeconds ?? 60) * 1000;
    if (cached && !opts.forceRenew && cached.expiresAt - skew > Date.now()) return cached;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.request(c)
        .then((t) => {
          this.cache.set(key, t);
          return t;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  private async request(c: BackendClient): Promise<SystemToken> {
    const log = this.opts.logger.child({ clientId: c.clientId });
    let server: DiscoveredServer;
    try {
      server = await this.opts.discovery.get(c.iss, log);
    } catch (err) {
      throw new BackendTokenError(`Could not read ${c.iss}/.well-known/smart-configuration: ${(err as Error).message}`, 'discovery_failed', [], discoveryDecision(err));
    }
    const smart = server.configuration;
    const credentials = backendCredentials(c);
    this.opts.discovery.checkClient(server, `backend:${c.clientId}:${c.key.kid}`, credentials, log);
    const adapted = adaptScopes(splitScopes(c.scope), smart.capabilities);
    for (const d of adapted.dropped) {
      const { fields, message } = droppedScopeLog(d);
      log.warn({ event: 'backend.token.scope_dropped', ...fields }, `backend token: ${message}`);
    }
    if (adapted.scopes.length === 0) {
      throw new BackendTokenError(
        `None of the configured scopes (${c.scope}) can be asked of ${c.iss} without asking for more: it only speaks SMART v1 scopes.`,
        'scope_not_expressible', adapted.dropped.map((d) => `${d.scope}: ${d.reason}.`), PERMANENT,
      );
    }
    const scope = adapted.scopes.join(' ');
    let date: string | null = null;
    let retryAfter: string | null = null;
    let status = 0;
    const config = buildOAuthConfig(server, credentials, {
      timeoutMs: this.opts.timeoutMs,
      allowInsecureHttp: this.opts.allowInsecureHttp,
      observe: (o) => {
        date = o.date;
        retryAfter = o.retryAfter;
        status = o.status;
      },
    });
    const started = Date.now();
    this.requestCount++;
    log.info({ event: 'backend.token.request', endpoint: smart.token_endpoint, grant_type: 'client_credentials', kid: c.key.kid, alg: c.key.alg, scope }, 'backend token: requesting a system token');
    try {
      const res = await client.clientCredentialsGrant(config, { scope });
      const expiresIn = typeof res.expires_in === 'number' ? res.expires_in : 300;
      const token: SystemToken = {
        accessToken: res.access_token, tokenType: res.token_type, expiresAt: Date.now() + expiresIn * 1000, scope: res.scope ?? scope, tokenEndpoint: smart.token_endpoint,
      };
      log.info({ event: 'backend.token.response', status: 200, duration_ms: Date.now() - started, expires_in: expiresIn, scope: token.scope }, 'backend token: received');
      return token;
    } catch (err) {
      const details = oauthErrorDetails(err);
      if (details) {
        const causes = explain(details.error, details.errorDescription, {
          tokenEndpoint: smart.token_endpoint, kid: c.key.kid, alg: c.key.alg, clientId: c.clientId, scope, serverDate: details.date ?? date, capabilities: smart.capabilities,
          clientAuthCauses: invalidClientCauses(smart, credentials),
        });
        log.warn({ event: 'backend.token.response', status: details.status, error: clip(details.error, 80), error_description: clip(details.errorDescription, 300) ?? null, duration_ms: Date.now() - started, likely_causes: causes }, `backend token: refused (${clip(details.error, 60)})`);
        // The server's error_description is among the causes ("The server says: …").
        throw new BackendTokenError(`The token endpoint refused the request: ${clip(details.error, 80)} (status ${details.status})`, details.error, causes, decideStatus(details.status, retryAfter) ?? PERMANENT);
      }
      if (status && !isTimeout(err)) {
        // An answer that is not an OAuth error (an HTML 503 from a proxy, a 200 without access_token, …).
        const decision = decideStatus(status, retryAfter);
        log.warn({ event: 'backend.token.response', status, outcome: decision ? 'unavailable' : 'invalid', reason: clip((err as Error)?.message, 200), duration_ms: Date.now() - started }, 'backend token: unusable answer from the token endpoint');
        if (decision) throw new BackendTokenError(`The token endpoint is unavailable (status ${status}).`, 'unavailable', [], decision);
        throw new BackendTokenError(`The token endpoint's answer (status ${status}) is not a usable token response: ${clip((err as Error)?.message, 200)}`, 'invalid_token_response', [], PERMANENT);
      }
      const reason = describeNetworkError(err);
      log.warn({ event: 'backend.token.response', outcome: 'unavailable', reason, duration_ms: Date.now() - started }, 'backend token: token endpoint unavailable');
      throw new BackendTokenError(`The token endpoint is unavailable (${reason}).`, 'unavailable', [], { kind: 'transient', reason });
    }
  }
}

export function explain(
  error: string,
  description: string | undefined,
  f: {
    tokenEndpoint: string; kid: string; alg: string; clientId: string; scope: string; serverDate: string | null; capabilities: readonly string[];
    /** compatibility.ts's invalidClientCauses(): an assertion algorithm the server does not advertise. */
    clientAuthCauses?: readonly string[];
  },
): string[] {
  const causes: string[] = [];
  if (f.serverDate) {
    const skew = Math.round((Date.now() - Date.parse(f.serverDate)) / 1000);
    if (Math.abs(skew) > 60) causes.push(`Clock skew: our clock is ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} the server's; the assertion's exp/iat look wrong to it. Sync the clock (NTP).`);
  }
  // Some servers answer invalid_grant, not invalid_client, for an assertion they cannot accept.
  if (error === 'invalid_client' || error === 'invalid_grant') causes.push(...(f.clientAuthCauses ?? []));
  if (error === 'invalid_client') {
    causes.push(`Unknown client: is ${f.clientId} the client id registered for this server (non-production and production ids differ)?`);
    causes.push(`Key not registered: the assertion is signed with kid ${f.kid} (${f.alg}); that kid must be in the JWKS registered with the EHR or served at its registered JWKS URL.`);
    causes.push(`Audience: the assertion's aud is the token endpoint ${f.tokenEndpoint}; a server that expects another value refuses it.`);
  }
  if (error === 'invalid_grant') {
    causes.push(`The assertion was refused: some servers answer invalid_grant (not invalid_client) for an assertion they cannot accept — a kid (${f.kid}) they do not know, an aud other than ${f.tokenEndpoint}, an exp too far ahead, or a jti seen before.`);
  }
  if (error === 'unauthorized_client') {
    causes.push(`Grant not allowed: the registration of ${f.clientId} may not use client_credentials (register it as a backend services / system app).`);
  }
  if (error === 'invalid_scope' || error === 'unauthorized_client') {
    causes.push(`Scope not granted: ${f.scope} must be among the system scopes registered for this client.`);
    if (!f.capabilities.includes('permission-v2') && /\.[cruds]+(\s|$)/.test(f.scope)) causes.push('The server does not advertise permission-v2: it may only accept v1 scopes (system/Patient.read).');
  }
  if (description) causes.push(`The server says: ${clip(description, 500)}`);
  return causes;
}
