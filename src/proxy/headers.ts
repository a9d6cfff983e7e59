/** Header hygiene for the FHIR proxy, both ways: allow-lists, never the browser's credentials. */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Request headers forwarded upstream; everything else (Cookie, Authorization, Host, X-Forwarded-*, hop-by-hop) is dropped. */
const REQUEST_ALLOW = new Set([
  'accept', 'accept-language', 'accept-charset', 'content-type', 'content-length', 'content-language',
  'if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since', 'if-none-exist', 'prefer',
  'x-request-id', 'x-correlation-id',
]);

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'trailers', 'transfer-encoding', 'upgrade', 'proxy-connection']);

/** Response headers never passed to the browser. */
const RESPONSE_DROP = new Set([...HOP_BY_HOP, 'set-cookie', 'set-cookie2', 'www-authenticate', 'strict-transport-security', 'alt-svc', 'server', 'x-powered-by']);

function namedInConnection(headers: IncomingHttpHeaders): Set<string> {
  const c = headers.connection;
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
    if (value === undefined || RESPONSE_DROP.has(name) || dropped.has(name) || name.startsWith('access-control-')) continue;
    if (opts.dropContentLength && name === 'content-length') continue;
    out[name] = value;
  }
  out['cache-control'] = 'no-store';
  out.pragma = 'no-cache';
  return out;
}
