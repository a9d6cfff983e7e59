/**
 * One way of doing each thing (review L8): one cookie parser (the `cookie` package), one constant-time comparison
 * of secrets that does not leak their length, one list of NDJSON format names, one list of private JWK members.
 * Checked on the source (the modules another change owns are left out) and on behaviour.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readLaunchBinding } from '../../src/session/launch-cookie.js';
import { bearerMatches, sameSecret } from '../../src/http/secret-compare.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));
const OWNED_ELSEWHERE = ['proxy/', 'session/token-store.ts', 'session/redis-store.ts', 'http/csrf.ts', 'http/request-context.ts', 'session/contexts.ts', 'smart/token-refresher.ts'];
const files = (dir: string): string[] => readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? files(join(dir, n)) : n.endsWith('.ts') ? [join(dir, n)] : []));
const sources = files(SRC).map((f) => ({ path: relative(SRC, f), text: readFileSync(f, 'utf8') })).filter((f) => !OWNED_ELSEWHERE.some((o) => f.path.startsWith(o)));
const where = (re: RegExp) => sources.filter((f) => re.test(f.text)).map((f) => f.path).sort();

test('one cookie parser: no module splits a Cookie header by hand', () => {
  expect(where(/headers\.cookie[^\n]*split\(|cookie[^\n]*\.split\(';'\)/)).toEqual([]);
  expect(where(/from 'cookie'/)).toEqual(['http/cookies.ts']);
});

test('one constant-time comparison of secrets: timingSafeEqual only in secret-compare.ts (and the binding hashes of equal length)', () => {
  expect(where(/timingSafeEqual/)).toEqual(['http/secret-compare.ts', 'session/transaction-store.ts']);
  expect(where(/length !== expected\.length/)).toEqual([]);
});

test('one list of NDJSON format names, one list of private JWK members', () => {
  expect(where(/'application\/ndjson'/)).toEqual(['backend-services/ndjson.ts']);
  expect(where(/\['d', 'p', 'q'/)).toEqual(['keys.ts']);
});

test('secrets compare equal only when equal, whatever their lengths; never a throw on a length difference', () => {
  expect(sameSecret('a'.repeat(32), 'a'.repeat(32))).toBe(true);
  expect(sameSecret('a'.repeat(31), 'a'.repeat(32))).toBe(false);
  expect(sameSecret('', 'x')).toBe(false);
  expect(bearerMatches('Bearer tok-123', 'tok-123')).toBe(true);
  expect(bearerMatches('bearer tok-123', 'tok-123')).toBe(false);
  expect(bearerMatches(undefined, 'tok-123')).toBe(false);
  expect(bearerMatches('Bearer tok-1234', 'tok-123')).toBe(false);
});

test('the launch cookie is read among other cookies, whatever the spacing; a look-alike name or a malformed value is not it', () => {
  const binding = 'A'.repeat(43);
  const config = { publicUrl: 'http://localhost:3000', cookieMode: 'default' as const };
  const read = (cookie: string) => readLaunchBinding({ headers: { cookie } }, config);
  expect(read(`theme=dark;   smart-bff.launch=${binding}`)).toBe(binding);
  expect(read(`smart-bff.launch=${binding};theme=dark`)).toBe(binding);
  expect(read(`smart-bff.launchx=${binding}`)).toBeUndefined();
  expect(read('smart-bff.launch=short')).toBeUndefined();
});
