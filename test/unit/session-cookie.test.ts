/**
 * The FHIR proxy reads the session cookie itself (session-cookie.ts): the same value express-session's parser
 * (the `cookie` package) finds in any Cookie header, and the same signature check (cookie-signature), compared
 * with those very packages; a verified value is remembered, a forged one never is.
 */
import { createRequire } from 'node:module';
import fc from 'fast-check';
import { cookieValue, SessionCookieReader, unsign } from '../../src/session/session-cookie.js';

// express-session's own dependencies, as the reference
// (resolved from express-session itself: the app's own `cookie` dependency may be another major version)
const require = createRequire(createRequire(import.meta.url).resolve('express-session'));
const cookie = require('cookie') as { parse(header: string): Record<string, string> };
const signature = require('cookie-signature') as { sign(value: string, secret: string): string; unsign(value: string, secret: string): string | false };

const SECRET = 'session-cookie-test-secret-0123456789abcdef';
const NAME = 'smart-bff.sid';

test('cookieValue finds what cookie.parse finds, for any header', () => {
  const piece = fc.oneof(fc.constantFrom(NAME, 'other', ' ', '\t', '=', ';', '"', '%', '%zz', '%41', 's:', '.', 'a'), fc.string({ maxLength: 6 }));
  fc.assert(fc.property(fc.array(piece, { maxLength: 24 }), (parts) => {
    const header = parts.join('');
    const expected = Object.hasOwn(cookie.parse(header), NAME) ? cookie.parse(header)[NAME] : undefined;
    expect(cookieValue(header, NAME)).toBe(expected);
  }), { numRuns: 5000 });
  expect(cookieValue(`a=1; ${NAME}="s%3Aabc.def"; ${NAME}=second`, NAME)).toBe('s:abc.def');
  expect(cookieValue(`x; ${NAME}=v`, NAME)).toBe('v');
});

test('unsign agrees with cookie-signature, for good, altered and foreign signatures', () => {
  fc.assert(fc.property(fc.string({ maxLength: 40 }), fc.string({ maxLength: 8 }), (value, tamper) => {
    const signed = signature.sign(value, SECRET);
    expect(unsign(signed, SECRET)).toBe(signature.unsign(signed, SECRET));
    expect(unsign(signed, SECRET)).toBe(value);
    const altered = `${signed}${tamper}`;
    expect(unsign(altered, SECRET)).toBe(signature.unsign(altered, SECRET));
    expect(unsign(signature.sign(value, 'another-secret'), SECRET)).toBe(false);
  }));
});

test('the reader: the session id of a signed cookie; nothing for an unsigned, forged or missing one; only good values remembered', () => {
  const reader = new SessionCookieReader(NAME, SECRET);
  const good = `s:${signature.sign('sid-1', SECRET)}`;
  const header = `${NAME}=${encodeURIComponent(good)}`;
  expect(reader.sessionId(header)).toBe('sid-1');
  expect(reader.sessionId(header)).toBe('sid-1');
  expect(reader.sessionId(undefined)).toBeUndefined();
  expect(reader.sessionId(`${NAME}=sid-1`)).toBeUndefined();
  const forged = `${NAME}=${encodeURIComponent(`s:${signature.sign('sid-2', 'not-the-secret')}`)}`;
  for (let i = 0; i < 3; i++) expect(reader.sessionId(forged)).toBeUndefined();
  expect((reader as unknown as { verified: { made?: { size: number } } }).verified.made?.size).toBe(1);
  // a cookie whose value was verified before, then altered by one character, is checked again and refused
  expect(reader.sessionId(header.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')))).toBeUndefined();
});
