import fc from 'fast-check';
import { buildTargetUrl, proxyUrlFor, targetByParser } from '../../src/proxy/target-url.js';

const BASE = 'https://ehr.example.com/fhir/r4';

describe('buildTargetUrl', () => {
  test.each([
    ['/Patient/123', 'https://ehr.example.com/fhir/r4/Patient/123'],
    ['/Observation?patient=123&_count=10', 'https://ehr.example.com/fhir/r4/Observation?patient=123&_count=10'],
    ['/', 'https://ehr.example.com/fhir/r4/'],
    ['', 'https://ehr.example.com/fhir/r4/'],
    ['/Patient/123/$everything', 'https://ehr.example.com/fhir/r4/Patient/123/$everything'],
    ['/Observation?date=ge2020-01-01T00:00:00Z', 'https://ehr.example.com/fhir/r4/Observation?date=ge2020-01-01T00:00:00Z'],
    ['/Patient?name=Jos%C3%A9', 'https://ehr.example.com/fhir/r4/Patient?name=Jos%C3%A9'],
    ['/Patient?identifier=http://hospital.example/mrn|123', 'https://ehr.example.com/fhir/r4/Patient?identifier=http://hospital.example/mrn|123'],
  ])('%j → %s', (path, expected) => {
    expect(buildTargetUrl(path, BASE).href).toBe(expected);
  });

  test.each([
    '/../x', '/%2e%2e/x', '/.%2e/x', '/%2E%2E/x', '/Patient/../../x', '/./Patient',
    '//evil.com/x', '/\\evil.com', '/https://evil.com', '/https:/evil.com', '/Patient%2f..%2f..%2fx', '/Patient%5c..',
    '/Patient%00', '/Patient\u0000', '/Patient\r\nX: y', '/a//b', '/javascript:alert(1)', '/Patient/1#x',
  ])('refuses %j', (path) => {
    expect(() => buildTargetUrl(path, BASE)).toThrow(/not allowed through the proxy/);
  });

  test('a base with a trailing slash works the same', () => {
    expect(buildTargetUrl('/Patient/1', `${BASE}/`).href).toBe(`${BASE}/Patient/1`);
  });
});

describe('proxyUrlFor (Location, Content-Location)', () => {
  const PROXY = 'https://app.example.org/fhir';
  test.each([
    [`${BASE}/Patient/1/_history/2`, `${PROXY}/Patient/1/_history/2`],
    [`${BASE}`, PROXY],
    [`${BASE}/`, PROXY],
    ['Patient/1', `${PROXY}/Patient/1`],
    ['/fhir/r4/Patient/1?x=1', `${PROXY}/Patient/1?x=1`],
    ['HTTPS://EHR.EXAMPLE.COM:443/fhir/r4/Patient/1', `${PROXY}/Patient/1`],
  ])('%s → %s', (value, expected) => {
    expect(proxyUrlFor(value, BASE, PROXY)).toBe(expected);
  });

  test.each([
    'https://elsewhere.example/x', '//elsewhere.example/fhir/r4/Patient/1', 'http://ehr.example.com/fhir/r4/Patient/1', 'https://ehr.example.com/other',
    'https://ehr.example.com/fhir/r4x/Patient/1', '/fhir/r4/../../x', 'https://user:pw@ehr.example.com/fhir/r4/Patient/1', 'javascript:alert(1)',
    'data:text/html,x', 'https://ehr.example.com:8443/fhir/r4/Patient/1',
  ])('drops %s', (value) => {
    expect(proxyUrlFor(value, BASE, PROXY)).toBeUndefined();
  });
});

describe('buildTargetUrl without the URL parser (most paths): what the parser makes of the same path, always', () => {
  // characters a FHIR path and query hold, those the parser escapes or rewrites, and the ones the checks refuse
  const piece = fc.oneof(
    fc.constantFrom('Patient', 'Observation', '_history', '$everything', '1', 'a-b.c_d~e', '?', '&', '=', '/', '%C3%A9', '%2e', '%2f', '%zz', '%', '..', '.', ':', '@',
      '|', '^', ' ', '"', "'", '<', '>', '`', '{', '}', '[', ']', '\\', '#', 'é', '\u0000', '\t', '*', '(', ')', '!', '$', ',', ';', '+', 'http:', 'https://x'),
    fc.string({ maxLength: 3 }),
  );
  const bases = ['https://ehr.example.com/fhir/r4', 'https://ehr.example.com:8443/fhir/r4/', 'http://[::1]:8080/fhir', 'https://ehr.example.com', 'https://user:pw@ehr.example.com/fhir', 'https://ehr.example.com/fhir?tenant=1#x'];

  test('the same target (href, host, port, path and query) or the same refusal', () => {
    fc.assert(fc.property(fc.array(piece, { maxLength: 8 }), fc.constantFrom(...bases), (pieces, base) => {
      const path = `/${pieces.join('')}`;
      let fast: unknown;
      let reference: unknown;
      try {
        const t = buildTargetUrl(path, base);
        fast = { href: t.href, protocol: t.protocol, hostname: t.hostname, port: t.port, pathname: t.pathname, search: t.search };
      } catch (err) {
        fast = (err as Error).message;
      }
      try {
        // the reference: the same checks, then the parser for every path
        buildTargetUrl(path, base); // throws as the fast path does when a check refuses it
        const q = path.indexOf('?');
        const t = targetByParser(`${(q === -1 ? path : path.slice(0, q)).replace(/^\//, '')}${q === -1 ? '' : path.slice(q)}`, new URL(base.endsWith('/') ? base : `${base}/`));
        reference = { href: t.href, protocol: t.protocol, hostname: t.hostname, port: t.port, pathname: t.pathname, search: t.search };
      } catch (err) {
        reference = (err as Error).message;
      }
      expect(fast).toEqual(reference);
    }), { numRuns: 3000 });
  });

  test('paths the parser would change still go through it', () => {
    expect(buildTargetUrl('/Patient?name=a b', BASE).href).toBe(`${BASE}/Patient?name=a%20b`);
    expect(buildTargetUrl("/Patient?name=O'Brien", BASE).href).toBe(`${BASE}/Patient?name=O%27Brien`);
    expect(buildTargetUrl('/Patient/é', BASE).href).toBe(`${BASE}/Patient/%C3%A9`);
    expect(buildTargetUrl('/Patient?', BASE)).toMatchObject({ href: `${BASE}/Patient?`, search: '' });
  });
});
