/**
 * The session cookie read the way express-session reads it (its getcookie: the `cookie` package's parsing, then
 * cookie-signature's HMAC-SHA256 check of an `s:`-prefixed value), for the FHIR proxy's own session lookup
 * (fhir-route.ts), which does not run express-session.
 *
 * A proxied call repeats the same cookie many times a second, so a verified value is remembered (a bounded LRU
 * keyed by the cookie's exact value): the HMAC is computed once per cookie, not per call. Only values whose
 * signature verified are remembered, so a forged or altered cookie is checked (and refused) every time, and
 * cannot push good entries out.
 */
import { createHmac } from 'node:crypto';
import { sameSecret } from '../http/secret-compare.js';
import { LazyLru } from '../lazy-lru.js';

/**
 * The first value of cookie `name` in a Cookie header, exactly as the `cookie` package's parse() finds it
 * (express-session's parser): pairs split at `;`, name and value trimmed of spaces and tabs, one pair of
 * surrounding double quotes removed, percent-decoded when that succeeds, the first pair with the name wins.
 */
export function cookieValue(header: string, name: string): string | undefined {
  const len = header.length;
  if (len < 2) return undefined;
  let index = 0;
  do {
    const eqIdx = header.indexOf('=', index);
    if (eqIdx === -1) break;
    let endIdx = header.indexOf(';', index);
    if (endIdx === -1) {
      endIdx = len;
    } else if (eqIdx > endIdx) {
      index = header.lastIndexOf(';', eqIdx - 1) + 1; // backtrack on the prior semicolon
      continue;
    }
    const keyStart = skipBlanks(header, index, eqIdx);
    const keyEnd = trimBlanks(header, eqIdx, keyStart);
    if (header.slice(keyStart, keyEnd) === name) {
      let valStart = skipBlanks(header, eqIdx + 1, endIdx);
      let valEnd = trimBlanks(header, endIdx, valStart);
      if (header.charCodeAt(valStart) === 0x22 && header.charCodeAt(valEnd - 1) === 0x22) {
        valStart++;
        valEnd--;
      }
      return decode(header.slice(valStart, valEnd));
    }
    index = endIdx + 1;
  } while (index < len);
  return undefined;
}

function skipBlanks(s: string, index: number, max: number): number {
  do {
    const c = s.charCodeAt(index);
    if (c !== 0x20 && c !== 0x09) return index;
  } while (++index < max);
  return max;
}

function trimBlanks(s: string, index: number, min: number): number {
  while (index > min) {
    const c = s.charCodeAt(--index);
    if (c !== 0x20 && c !== 0x09) return index + 1;
  }
  return min;
}

function decode(value: string): string {
  if (value.indexOf('%') === -1) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** cookie-signature's unsign: `value.signature`, the signature HMAC-SHA256(value) in base64 without padding. */
export function unsign(input: string, secret: string): string | false {
  const dot = input.lastIndexOf('.');
  const value = input.slice(0, dot);
  const expected = `${value}.${createHmac('sha256', secret).update(value).digest('base64').replace(/=+$/, '')}`;
  // compared as every secret is (secret-compare.ts); a cookie value is verified once, then remembered
  return sameSecret(input, expected) ? value : false;
}

/** Session ids from session cookies, each signature verified once (see the module comment). */
export class SessionCookieReader {
  /** Verified cookie values → session ids: a bounded cache, and it says so. */
  private readonly verified = new LazyLru<string, string>({ max: 10_000 });

  constructor(private readonly name: string, private readonly secret: string) {}

  /** The session id the request's cookie names, when its signature verifies; undefined otherwise. */
  sessionId(cookieHeader: string | undefined): string | undefined {
    if (!cookieHeader) return undefined;
    const raw = cookieValue(cookieHeader, this.name);
    if (!raw || !raw.startsWith('s:')) return undefined; // express-session ignores an unsigned value too
    const known = this.verified.made?.get(raw);
    if (known !== undefined) return known;
    const sid = unsign(raw.slice(2), this.secret);
    if (sid === false) return undefined;
    this.verified.cache.set(raw, sid);
    return sid;
  }
}
