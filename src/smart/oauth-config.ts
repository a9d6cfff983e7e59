/**
 * The one openid-client Configuration for talking to one authorization server as one client: the authorization
 * URL, the code exchange, refresh, revocation (launches) and client_credentials (backend services) are all made
 * with a configuration built here. Client authentication comes from client-auth.ts, and only from there.
 *
 * A SMART configuration need not carry `issuer` (openid-client requires one): the FHIR base stands in for it,
 * and then the RFC 9207 `iss` authorization response parameter cannot be checked (the callback strips it) nor
 * an id_token's issuer (the launch does not ask for openid).
 */
import * as client from 'openid-client';
import type { DiscoveredServer } from './discovery.js';
import { clientAuth, type ClientCredentials } from './client-auth.js';

/** What is safe to log about one response (never a body). */
export interface HttpObservation {
  url: string;
  status: number;
  /** The server's Date header, for clock-skew diagnosis. */
  date: string | null;
  /** The Retry-After header (429, 503). */
  retryAfter: string | null;
  durationMs: number;
  /** The same, to a fraction of a millisecond (the callback's step times). */
  elapsedMs: number;
}

export interface OAuthConfigOptions {
  timeoutMs: number;
  /** ALLOW_INSECURE_HTTP (development): http:// endpoints are allowed when the server names any. */
  allowInsecureHttp: boolean;
  /** Called after every request openid-client makes, with what is safe to log. */
  observe?: (o: HttpObservation) => void;
}

export function hasIssuer(server: DiscoveredServer): boolean {
  return typeof server.configuration.issuer === 'string' && server.configuration.issuer.length > 0;
}

/**
 * The authorization servers' JWKS, per discovered server (a cache, and bounded like the discovery cache it hangs
 * from: an entry goes when its DiscoveredServer does). openid-client keeps a JWKS per Configuration, and a
 * Configuration is built per request, so without this every callback that checks an id_token's signature would
 * fetch the JWKS again. openid-client still refetches it after 5 minutes, or when a token names a key it does not
 * hold (key rotation).
 */
const jwksCaches = new WeakMap<DiscoveredServer, client.ExportedJWKSCache>();

/** Keeps what a grant learned of the server's JWKS for the next Configuration built for that server. */
export function rememberJwks(server: DiscoveredServer, config: client.Configuration): void {
  const jwks = client.getJwksCache(config);
  if (jwks) jwksCaches.set(server, jwks);
}

export function buildOAuthConfig(server: DiscoveredServer, credentials: ClientCredentials, opts: OAuthConfigOptions): client.Configuration {
  const smart = server.configuration;
  const metadata: client.ServerMetadata = {
    ...(smart as unknown as client.ServerMetadata),
    issuer: hasIssuer(server) ? smart.issuer! : server.iss,
  };
  if (!hasIssuer(server)) delete (metadata as Record<string, unknown>).authorization_response_iss_parameter_supported;
  const config = new client.Configuration(metadata, credentials.clientId, undefined, clientAuth(credentials, smart.token_endpoint));
  config.timeout = Math.max(1, Math.ceil(opts.timeoutMs / 1000));
  if (opts.allowInsecureHttp && Object.values(smart).some((v) => typeof v === 'string' && v.startsWith('http:'))) {
    client.allowInsecureRequests(config);
  }
  if (smart.jwks_uri && hasIssuer(server)) {
    client.enableNonRepudiationChecks(config);
    const jwks = jwksCaches.get(server);
    if (jwks) client.setJwksCache(config, jwks);
  }
  const { observe, timeoutMs } = opts;
  config[client.customFetch] = async (url, init) => {
    const started = Date.now();
    const startedHr = performance.now();
    const signal = init.signal ?? AbortSignal.timeout(timeoutMs);
    const res = await fetch(url, { ...init, signal } as RequestInit);
    observe?.({ url, status: res.status, date: res.headers.get('date'), retryAfter: res.headers.get('retry-after'), durationMs: Date.now() - started, elapsedMs: performance.now() - startedHr });
    return res;
  };
  return config;
}
