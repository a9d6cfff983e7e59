import { adaptScopes, missingScopes, scopeSyntaxOf, toV1, toV2, withLaunchScope } from '../../src/smart/scopes.js';
import { splitScopes } from '../../src/oauth-scope.js';

describe('scopes', () => {
  test('split dedupes and drops empties', () => {
    expect(splitScopes('  openid  fhirUser openid\tlaunch ')).toEqual(['openid', 'fhirUser', 'launch']);
    expect(splitScopes(undefined)).toEqual([]);
  });

  test('syntax detection', () => {
    expect(scopeSyntaxOf('patient/Observation.rs')).toBe('v2');
    expect(scopeSyntaxOf('user/*.read')).toBe('v1');
    expect(scopeSyntaxOf('system/Patient.*')).toBe('v1');
    expect(scopeSyntaxOf('openid')).toBeUndefined();
  });

  test('v2 → v1', () => {
    expect(toV1('patient/*.rs')).toEqual(['patient/*.read']);
    expect(toV1('patient/Observation.cud')).toEqual(['patient/Observation.write']);
    expect(toV1('user/Patient.cruds')).toEqual(['user/Patient.*']);
    expect(toV1('patient/Observation.rs?category=laboratory')).toEqual(['patient/Observation.read']);
    expect(toV1('openid')).toEqual(['openid']);
  });

  test('v1 → v2', () => {
    expect(toV2('patient/*.read')).toBe('patient/*.rs');
    expect(toV2('user/Observation.write')).toBe('user/Observation.cud');
    expect(toV2('system/Patient.*')).toBe('system/Patient.cruds');
    expect(toV2('patient/Observation.rs')).toBe('patient/Observation.rs');
  });

  test('adapt follows the advertised permission-v1/permission-v2', () => {
    const configured = ['openid', 'patient/*.rs', 'user/Patient.read'];
    expect(adaptScopes(configured, ['permission-v2'])).toEqual(['openid', 'patient/*.rs', 'user/Patient.rs']);
    expect(adaptScopes(configured, ['permission-v1', 'launch-ehr'])).toEqual(['openid', 'patient/*.read', 'user/Patient.read']);
    expect(adaptScopes(configured, ['permission-v1', 'permission-v2'])).toEqual(['openid', 'patient/*.rs', 'user/Patient.rs']);
    expect(adaptScopes(configured, [])).toEqual(configured);
  });

  test('launch scope per mode', () => {
    expect(withLaunchScope(['openid', 'patient/*.rs'], 'ehr')).toEqual(['launch', 'openid', 'patient/*.rs']);
    expect(withLaunchScope(['launch/patient', 'openid', 'patient/*.rs'], 'ehr')).toEqual(['launch', 'openid', 'patient/*.rs']);
    expect(withLaunchScope(['launch', 'openid', 'patient/*.rs'], 'standalone')).toEqual(['launch/patient', 'openid', 'patient/*.rs']);
    expect(withLaunchScope(['openid', 'user/*.rs'], 'standalone')).toEqual(['openid', 'user/*.rs']);
  });

  test('missing scopes', () => {
    expect(missingScopes(['a', 'b', 'c'], ['a', 'c'])).toEqual(['b']);
  });
});
