/**
 * Maps `/fhir/<rest>?<query>` to `<fhir base>/<rest>?<query>` so that the token can only ever go to the FHIR
 * base of the launch that earned it. Works on the raw (undecoded) path: anything that could climb out of the
 * base or change the host is refused — `..` and its encodings, `//host`, `\host`, absolute URLs, encoded
 * slashes, backslashes and NUL — and the result is checked again after URL resolution.
 *
 * Most calls' paths and queries are made only of characters the URL parser copies as they are; for those the
 * target is the base's text followed by them, without running the parser (some 5 µs of every proxied call). The
 * tests compare that with the parser's result on random paths (target-url.test.ts).
 */
import { LRUCache } from 'lru-cache';
import { AppError, ErrorCode } from '../http/errors.js';

export class PathRejected extends AppError {
  constructor(reason: string) {
    super(ErrorCode.BAD_REQUEST, 400, `This FHIR path is not allowed through the proxy (${reason}).`);
  }
}

const FORBIDDEN_ENCODINGS = /%(2f|5c|00|2e)/i;

/** A FHIR base, parsed (with a trailing slash), and the parts a proxied call reads, read once (a URL's getters are not free). */
interface ParsedBase {
  readonly url: URL;
  readonly origin: string;
  readonly protocol: string;
  readonly hostname: string;
  readonly port: string;
  readonly pathname: string;
  /** No user, password, query or fragment: a verbatim path and query can simply follow it. */
  readonly plain: boolean;
}

/** The FHIR bases by the text the token set holds: a bounded cache, read per proxied call. */
const bases = new LRUCache<string, ParsedBase>({ max: 1000 });
function parsedBase(fhirBaseUrl: string): ParsedBase {
  let base = bases.get(fhirBaseUrl);
  if (!base) {
    const url = new URL(fhirBaseUrl.endsWith('/') ? fhirBaseUrl : `${fhirBaseUrl}/`);
    base = { url, origin: url.origin, protocol: url.protocol, hostname: url.hostname, port: url.port, pathname: url.pathname, plain: !url.username && !url.password && !url.search && !url.hash };
    bases.set(fhirBaseUrl, base);
  }
  return base;
}

/** Where a proxied call goes: the fields of a URL the upstream request is built from (a URL has them all). */
export interface TargetUrl {
  readonly href: string;
  /** `https://ehr.example.com:8443`: where the request goes (upstream-client.ts's pools are per origin). */
  readonly origin: string;
  readonly protocol: string;
  readonly hostname: string;
  readonly port: string;
  readonly pathname: string;
  readonly search: string;
}

/**
 * A path (after the first `/`) and query that the URL parser leaves exactly as they are: unreserved and
 * sub-delimiter characters (but `'`, which it escapes in a query), `:`, `@`, `/`, and well-formed percent-escapes;
 * the query may also hold `?`. Whatever else (a space, a quote, `|`, `^`, non-ASCII …) goes through the parser.
 */
const VERBATIM = /^(?:[A-Za-z0-9\-._~!$&()*+,;=:@/]|%[0-9A-Fa-f]{2})*(?:\?(?:[A-Za-z0-9\-._~!$&()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?$/;

/**
 * @param rawPathAndQuery the request's original URL after the `/fhir` mount point, e.g. `/Patient/1?_count=5`.
 * @param fhirBaseUrl the launch's FHIR base (the `aud`), with or without a trailing slash.
 */
export function buildTargetUrl(rawPathAndQuery: string, fhirBaseUrl: string): TargetUrl {
  const q = rawPathAndQuery.indexOf('?');
  const rawPath = q === -1 ? rawPathAndQuery : rawPathAndQuery.slice(0, q);
  const rawQuery = q === -1 ? '' : rawPathAndQuery.slice(q);
  if (/[\u0000-\u001f\u007f]/.test(rawPathAndQuery)) throw new PathRejected('control character');
  if (rawPath.includes('\\')) throw new PathRejected('backslash');
  if (FORBIDDEN_ENCODINGS.test(rawPath)) throw new PathRejected('encoded slash, backslash, dot or NUL');
  if (!rawPath.startsWith('/') && rawPath !== '') throw new PathRejected('relative path');
  const rest = rawPath.replace(/^\//, '');
  if (rest.startsWith('/') || rest.includes('//')) throw new PathRejected('empty path segment');
  const segments = rest.split('/');
  if (segments.some((s) => s === '.' || s === '..')) throw new PathRejected('dot segment');
  if (segments[0] && /^[A-Za-z][A-Za-z0-9+.-]*:/.test(segments[0])) throw new PathRejected('absolute URL');
  if (segments.some((s) => s.includes(':') && /^[A-Za-z][A-Za-z0-9+.-]*:$/.test(s))) throw new PathRejected('absolute URL');
  if (rawPathAndQuery.includes('#')) throw new PathRejected('fragment');

  const base = parsedBase(fhirBaseUrl);
  if (base.plain && VERBATIM.test(rest + rawQuery)) {
    // what the parser would make of it, checked above: no dot segment, no empty segment, no scheme
    const pathname = base.pathname + rest;
    return { href: `${base.origin}${pathname}${rawQuery}`, origin: base.origin, protocol: base.protocol, hostname: base.hostname, port: base.port, pathname, search: rawQuery === '?' ? '' : rawQuery };
  }
  return targetByParser(rest + rawQuery, base.url);
}

/** The target as the URL parser resolves it against the base, checked to stay under it: the reference for every path. */
export function targetByParser(relative: string, base: URL): URL {
  const target = new URL(relative, base);
  // Belt and braces: whatever the parser did, the result must stay under the base.
  if (target.origin !== base.origin || !(target.pathname === base.pathname.replace(/\/$/, '') || target.pathname.startsWith(base.pathname))) {
    throw new PathRejected('outside the FHIR base');
  }
  if (target.username || target.password) throw new PathRejected('credentials');
  return target;
}

/**
 * The other way: a URL the EHR sent back (Location, Content-Location) as the proxy's URL for it, when it points
 * under the launch's FHIR base; undefined (drop it) when it points anywhere else: another origin, elsewhere on the
 * EHR's origin, another scheme. A relative value is relative to the FHIR base, as FHIR's relative references are.
 */
export function proxyUrlFor(value: string, fhirBaseUrl: string, proxyBase: string): string | undefined {
  const base = parsedBase(fhirBaseUrl);
  let url: URL;
  try {
    url = new URL(value, base.url);
  } catch {
    return undefined;
  }
  if (url.origin !== base.origin || url.username || url.password) return undefined;
  const rest = url.pathname === base.pathname.slice(0, -1) ? '' : url.pathname.startsWith(base.pathname) ? url.pathname.slice(base.pathname.length) : undefined;
  if (rest === undefined) return undefined;
  return `${proxyBase.replace(/\/+$/, '')}${rest ? `/${rest}` : ''}${url.search}${url.hash}`;
}
