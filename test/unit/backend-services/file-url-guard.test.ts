/** Which file URLs a manifest may send the Bulk Data client to (review L5, SSRF). */
import { FileUrlGuard } from '../../../src/backend-services/file-url-guard.js';

const u = (s: string) => new URL(s);

test('public https passes; plain http, non-public and loopback addresses are refused; the FHIR origin and trusted origins are exempt', () => {
  const g = new FileUrlGuard('https://fhir.example.org/r4', ['http://10.0.0.7:8080']);
  expect(g.problem(u('https://bucket.s3.amazonaws.com/x'))).toBeUndefined();
  expect(g.problem(u('https://93.184.216.34/x'))).toBeUndefined();
  expect(g.problem(u('http://files.example.org/x'))).toBe('plain http (not https)');
  for (const [url, kind] of [
    ['https://10.1.2.3/x', /10\.0\.0\.0\/8/], ['https://172.20.0.1/x', /172\.16\.0\.0\/12/], ['https://192.168.1.1/x', /192\.168/],
    ['https://169.254.169.254/x', /link-local/], ['https://100.64.0.1/x', /shared/], ['https://0.0.0.0/x', /unspecified/],
    ['https://[fe80::1]/x', /link-local/], ['https://[fd00::2]/x', /fc00::\/7/], ['https://[::ffff:10.0.0.1]/x', /10\.0\.0\.0\/8/],
    ['https://127.0.0.1/x', /loopback/], ['https://[::1]/x', /loopback/], ['https://localhost:8080/x', /loopback/],
  ] as const) expect([url, g.problem(u(url))]).toEqual([url, expect.stringMatching(kind)]);
  expect(g.problem(u('http://10.0.0.7:8080/x'))).toBeUndefined(); // trusted
  expect(g.problem(u('https://fhir.example.org/files/x'))).toBeUndefined(); // the FHIR server's own origin
});

test('loopback only for a FHIR server on loopback (local development)', () => {
  const local = new FileUrlGuard('http://127.0.0.1:8080/fhir', []);
  expect(local.problem(u('http://127.0.0.1:9000/bucket/x'))).toBeUndefined();
  expect(local.problem(u('http://localhost:9000/bucket/x'))).toBeUndefined();
  expect(local.problem(u('http://10.0.0.1/x'))).toMatch(/private/);
});

test('host names by the addresses they resolve to; an unresolvable name is left to fail as a network error', async () => {
  const g = new FileUrlGuard('https://fhir.example.org/r4', [], async (h) => (h === 'meta.example' ? ['169.254.169.254'] : h === 'local.example' ? ['::1'] : h === 'gone.example' ? Promise.reject(new Error('ENOTFOUND')) : ['93.184.216.34']));
  expect(await g.check(u('https://meta.example/x'), 'A file URL')).toMatch(/^A file URL is on https:\/\/meta\.example, a name for a link-local address .* \(169\.254\.169\.254\)/);
  expect(await g.check(u('https://local.example/x'), 'A file URL')).toMatch(/a name for a loopback address \(::1\)/);
  expect(await g.check(u('https://public.example/x'), 'A file URL')).toBeUndefined();
  expect(await g.check(u('https://gone.example/x'), 'A file URL')).toBeUndefined();
});
