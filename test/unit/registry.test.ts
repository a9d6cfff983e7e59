import { Registry } from '../../src/smart/registry.js';
import type { Registration } from '../../src/config.js';

const reg = (name: string, iss: string[]): Registration => ({ name, iss, clientId: name, clientType: 'public', scope: 'openid', standaloneScope: 'openid' });

describe('Registry (iss allow-list)', () => {
  const r = new Registry([reg('a', ['https://fhir.example.org/r4']), reg('cerner', ['https://fhir-ehr.cerner.com/r4/*'])]);

  test('exact match, trailing slash tolerated, iss kept verbatim', () => {
    expect(r.match('https://fhir.example.org/r4')?.registration.name).toBe('a');
    expect(r.match('https://fhir.example.org/r4/')?.iss).toBe('https://fhir.example.org/r4/');
  });

  test.each([
    'http://169.254.169.254/',
    'https://fhir.example.org.evil.com/r4',
    'https://allowed.example.evil.com',
    'https://fhir.example.org/r4/../admin',
    'https://fhir.example.org/r4?x=1',
    'https://fhir.example.org/r4#frag',
    'https://user@fhir.example.org/r4',
    'https://fhir.example.org/r4\\@evil.com',
    'https://fhir.example.org/r4\n',
    'https://fhir.example.org/R4',
    'http://fhir.example.org/r4',
    'javascript:alert(1)',
    '',
  ])('refuses %j', (iss) => {
    expect(r.match(iss)).toBeUndefined();
  });

  test('wildcard matches exactly one safe path segment on the same origin', () => {
    expect(r.match('https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d')?.registration.name).toBe('cerner');
    expect(r.match('https://fhir-ehr.cerner.com/r4/a/b')).toBeUndefined();
    expect(r.match('https://fhir-ehr.cerner.com/r4/..')).toBeUndefined();
    expect(r.match('https://fhir-ehr.cerner.com/r4/')).toBeUndefined();
    expect(r.match('https://fhir-ehr.cerner.com.evil.com/r4/x')).toBeUndefined();
  });

  test('an entry named exactly wins over a wildcard listed before it, and says it is not a wildcard match (#45)', () => {
    const both = new Registry([reg('wild', ['https://ehr.example.org/t/*']), reg('named', ['https://ehr.example.org/t/acme'])]);
    expect(both.match('https://ehr.example.org/t/acme')).toMatchObject({ registration: { name: 'named' }, wildcard: false });
    expect(both.match('https://ehr.example.org/t/other')).toMatchObject({ registration: { name: 'wild' }, wildcard: true });
  });

  test('defaultIss skips wildcards', () => {
    expect(r.defaultIss(r.byName('a')!)).toBe('https://fhir.example.org/r4');
    expect(r.defaultIss(r.byName('cerner')!)).toBeUndefined();
  });
});
