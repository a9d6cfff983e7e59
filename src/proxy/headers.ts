/**
 * Header hygiene for the FHIR proxy, both ways, by allow-list: never the browser's credentials or framing going
 * up, nothing that acts on the app's origin coming down.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { FHIR_SECURITY_HEADERS } from '../http/error-handler.js';

/**
 * Request headers forwarded upstream; everything else (Cookie, Authorization, Host, X-Forwarded-*, hop-by-hop) is
 * dropped. So is the browser's framing (Content-Length, Transfer-Encoding, Expect, TE): the upstream request is
 * framed by Node from the body actually sent, so no browser can make the EHR read its request differently from
 * what the proxy meant (request smuggling on the shared keep-alive connection).
 */
const REQUEST_ALLOW = new Set([
  'accept', 'accept-language', 'accept-charset', 'content-type', 'content-language',
  'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-none-exist', 'prefer',
  'x-request-id', 'x-correlation-id',
]);

/**
 * Response headers passed to the browser: what FHIR clients use (content negotiation, versioning, conditional
 * requests, paging and async status, Binary downloads) and nothing else. Everything else is dropped: headers that
 * act on the app's origin (Set-Cookie, Refresh, Link, Clear-Site-Data, Content-Security-Policy, Service-Worker-
 * Allowed, Origin-Agent-Cluster, Permissions-Policy, Report-To, NEL, Timing-Allow-Origin, X-Frame-Options,
 * Cross-Origin-*, Access-Control-*, Strict-Transport-Security, Alt-Svc, Accept-CH, WWW-Authenticate …),
 * hop-by-hop headers, and the EHR's software banners. Location and Content-Location are then rewritten to the
 * proxy or dropped (fhir-proxy.ts).
 */
const RESPONSE_ALLOW = new Set([
  'content-type', 'content-length', 'content-encoding', 'content-language', 'content-disposition', 'content-range', 'accept-ranges',
  'etag', 'last-modified', 'expires', 'retry-after', 'location', 'content-location', 'allow',
  'x-progress', 'preference-applied', 'x-correlation-id',
]);

const NONE: ReadonlySet<string> = new Set();

/** Header names a Connection header lists (hop-by-hop); its usual values name none. */
function namedInConnection(headers: IncomingHttpHeaders): ReadonlySet<string> {
  const c = headers.connection;
  if (c === undefined || c === 'keep-alive' || c === 'close') return NONE;
  return new Set((Array.isArray(c) ? c.join(',') : c ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
}

export function upstreamRequestHeaders(incoming: IncomingHttpHeaders, accessToken: string, requestId: string): OutgoingHttpHeaders {
  const dropped = namedInConnection(incoming);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || !REQUEST_ALLOW.has(name) || dropped.has(name)) continue;
    out[name] = value;
  }
  out.accept ??= 'application/fhir+json';
  out['accept-encoding'] = 'identity';
  out['x-request-id'] = requestId;
  out.authorization = `Bearer ${accessToken}`;
  return out;
}

export function browserResponseHeaders(upstream: IncomingHttpHeaders, opts: { dropContentLength: boolean }): OutgoingHttpHeaders {
  const dropped = namedInConnection(upstream);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    if (value === undefined || !RESPONSE_ALLOW.has(name) || dropped.has(name)) continue;
    if (opts.dropContentLength && name === 'content-length') continue;
    out[name] = value;
  }
  Object.assign(out, FHIR_SECURITY_HEADERS); // with Cache-Control: no-store
  out.pragma = 'no-cache';
  return out;
}
