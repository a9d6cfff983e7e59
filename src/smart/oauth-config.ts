/**
 * The one openid-client Configuration for talking to one authorization server as one client: the authorization
 * URL, the code exchange, refresh, revocation (launches) and client_credentials (backend services) are all made
 * with a configuration built here. Client authentication comes from client-auth.ts, and only from there.
 *
 * A SMART configuration need not carry `issuer` (openid-client requires one): the FHIR base stands in for it,
 * and then the RFC 9207 `iss` authorization response parameter cannot be checked (the callback strips it) nor
 * an id_token's issuer (the launch does not ask for openid).
 *
 * An id_token's claims are checked by openid-client; its signature by id-token.ts (openid-client does not verify
 * the signature of a token-endpoint id_token). When the caller did not ask for one (`ignoreIdToken`), an
 * id_token the server sends anyway is taken out of the response before openid-client reads it and noted in the
 * caller's log by its fingerprint: it is never validated half-way nor read, and the token itself never leaves
 * this module.
 */
import * as client from 'openid-client';
import type { DiscoveredServer } from './discovery.js';
import { clientAuth, type ClientCredentials } from './client-auth.js';
import { fingerprint, type Logger } from '../log.js';

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
  /**
   * No id_token is wanted (openid was not requested, so none could be checked): one a token response carries anyway
   * is removed before openid-client reads it, and noted in `log` by its fingerprint only (`token.id_token_ignored`,
   * a line of `step`, with `contextId` when there is one). The token itself never leaves this module.
   */
  ignoreIdToken?: { log: Logger; step: 'token' | 'refresh'; contextId?: string };
}

export function hasIssuer(server: DiscoveredServer): boolean {
  return typeof server.configuration.issuer === 'string' && server.configuration.issuer.length > 0;
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
  const { observe, timeoutMs, ignoreIdToken } = opts;
  config[client.customFetch] = async (url, init) => {
    const started = Date.now();
    const startedHr = performance.now();
    const signal = init.signal ?? AbortSignal.timeout(timeoutMs);
    const res = await fetch(url, { ...init, signal } as RequestInit);
    observe?.({ url, status: res.status, date: res.headers.get('date'), retryAfter: res.headers.get('retry-after'), durationMs: Date.now() - started, elapsedMs: performance.now() - startedHr });
    if (ignoreIdToken && url === smart.token_endpoint && res.status === 200) return withoutIdToken(res, ignoreIdToken);
    return res;
  };
  return config;
}

/** The same token response without its id_token (noted by its fingerprint when there was one); anything not JSON passes. */
async function withoutIdToken(res: Response, ignore: NonNullable<OAuthConfigOptions['ignoreIdToken']>): Promise<Response> {
  const text = await res.text();
  const headers = new Headers(res.headers);
  headers.delete('content-length');
  const init = { status: res.status, statusText: res.statusText, headers };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return new Response(text, init);
  }
  if (!body || typeof body !== 'object' || Array.isArray(body) || !Object.hasOwn(body, 'id_token')) return new Response(text, init);
  const idToken = (body as Record<string, unknown>).id_token;
  delete (body as Record<string, unknown>).id_token;
  ignore.log.info(
    { event: 'token.id_token_ignored', ...(ignore.contextId ? { contextId: ignore.contextId } : {}), reason: 'openid_not_requested', id_token_fp: fingerprint(typeof idToken === 'string' ? idToken : JSON.stringify(idToken)) },
    `${ignore.step}: the server sent an ID token although openid was not requested; it was set aside unread (not validated, not kept)`,
  );
  return new Response(JSON.stringify(body), init);
}
