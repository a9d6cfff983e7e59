/** Where the access token may go. */
import { parseTrustedOrigins, TokenOrigins } from '../../../src/backend-services/token-origins.js';

test('trusted origins: origins only, https unless insecure http is allowed, every problem reported', () => {
  expect(parseTrustedOrigins(['https://files.example.org/, https://b.example.org:8443'], false)).toEqual({ origins: ['https://files.example.org', 'https://b.example.org:8443'], problems: [] });
  const bad = parseTrustedOrigins(['https://x.example.org/path', 'http://plain.example.org', 'ftp://f.example.org', 'https://u:p@x.example.org', 'nope'], false);
  expect(bad.origins).toEqual([]);
  expect(bad.problems).toHaveLength(5);
  expect(parseTrustedOrigins(['http://127.0.0.1:9000'], true).origins).toEqual(['http://127.0.0.1:9000']);
});

test('the FHIR server\'s origin and the trusted ones, nothing else: not a look-alike host, port or scheme', () => {
  const o = new TokenOrigins('https://fhir.example.org/r4', ['https://files.example.org']);
  expect(o.allows('https://fhir.example.org/r4/bulk/1')).toBe(true);
  expect(o.allows('https://files.example.org/bucket/x.ndjson')).toBe(true);
  for (const url of ['https://fhir.example.org.evil.com/x', 'https://fhir.example.org:8443/x', 'http://fhir.example.org/x', 'https://evil.com/https://fhir.example.org/x', 'https://x@evil.com/']) {
    expect([url, o.allows(url)]).toEqual([url, false]);
  }
  expect(o.refusal('https://evil.com/a', 'A file URL')).toMatch(/^A file URL is on https:\/\/evil\.com, but the access token is only sent to the FHIR server's origin \(https:\/\/fhir\.example\.org\) and to https:\/\/files\.example\.org\. .*BULK_DATA_TRUSTED_ORIGINS/);
});
