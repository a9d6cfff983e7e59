import { buildTargetUrl, proxyUrlFor } from '../../src/proxy/target-url.js';

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
