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

  test('v2 → v1: the exact bundles', () => {
    expect(toV1('patient/*.rs')).toEqual({ scopes: ['patient/*.read'] });
    expect(toV1('patient/Observation.cud')).toEqual({ scopes: ['patient/Observation.write'] });
    expect(toV1('user/Patient.cruds')).toEqual({ scopes: ['user/Patient.*'] });
    expect(toV1('system/Group.rs')).toEqual({ scopes: ['system/Group.read'] });
    expect(toV1('openid')).toEqual({ scopes: ['openid'] });
    expect(toV1('patient/*.read')).toEqual({ scopes: ['patient/*.read'] }); // already v1
    expect(toV1('patient/Observation.sr')).toEqual({ scopes: ['patient/Observation.sr'] }); // neither syntax (out of order): left alone, never mapped
  });

  // Every v2 permission combination, c r u d s in order: what a v1-only server is asked for instead.
  const V1_IMAGE: Record<string, string | null> = {
    c: null, r: null, u: null, d: null, s: null,
    cr: null, cu: null, cd: null, cs: null, ru: null, rd: null, rs: 'read', ud: null, us: null, ds: null,
    cru: null, crd: null, crs: 'read', cud: 'write', cus: null, cds: null, rud: null, rus: 'read', rds: 'read', uds: null,
    crud: 'write', crus: 'read', crds: 'read', cuds: 'write', ruds: 'read',
    cruds: '*',
  };

  test.each(Object.entries(V1_IMAGE))('v2 .%s on a v1-only server → %s', (perms, v1) => {
    const out = toV1(`patient/Observation.${perms}`);
    expect(out.scopes).toEqual(v1 ? [`patient/Observation.${v1}`] : []);
    const exact = perms === 'rs' || perms === 'cud' || perms === 'cruds';
    if (exact) {
      expect(out.dropped).toBeUndefined();
    } else {
      expect(out.dropped).toMatchObject({ scope: `patient/Observation.${perms}`, sentInstead: out.scopes });
      expect(out.dropped!.reason).toMatch(/no v1 scope grants .* without more \(v1 \.(read|write) would also grant/);
    }
  });

  test('no combination is widened: what the v1 image grants is within the configured permissions, and every whole v1 bundle is kept', () => {
    const GRANTS: Record<string, string> = { read: 'rs', write: 'cud', '*': 'cruds' };
    expect(Object.keys(V1_IMAGE)).toHaveLength(31);
    for (const perms of Object.keys(V1_IMAGE)) {
      const granted = toV1(`user/*.${perms}`).scopes.map((s) => GRANTS[s.slice('user/*.'.length)]!).join('');
      for (const p of granted) expect(perms).toContain(p);
      if (/r/.test(perms) && /s/.test(perms)) expect(granted).toContain('r');
      if (/c/.test(perms) && /u/.test(perms) && /d/.test(perms)) expect(granted).toContain('c');
    }
  });

  test('the reason names what v1 would add', () => {
    expect(toV1('patient/Observation.s').dropped!.reason).toMatch(/no v1 scope grants search \(s\) without more \(v1 \.read would also grant read \(r\)\)/);
    expect(toV1('patient/Observation.c').dropped!.reason).toMatch(/no v1 scope grants create \(c\) without more \(v1 \.write would also grant update \(u\) and delete \(d\)\)/);
    expect(toV1('patient/Observation.r').dropped!.reason).toMatch(/v1 \.read would also grant search \(s\)/);
    expect(toV1('patient/Observation.crs')).toEqual({
      scopes: ['patient/Observation.read'],
      dropped: { scope: 'patient/Observation.crs', sentInstead: ['patient/Observation.read'], reason: expect.stringMatching(/grants create \(c\) without more/) },
    });
  });

  test('a filtered v2 scope is not asked of a v1-only server at all: the unfiltered v1 scope would be wider; the filter is named', () => {
    const out = toV1('patient/Observation.rs?category=laboratory');
    expect(out.scopes).toEqual([]);
    expect(out.dropped).toEqual({
      scope: 'patient/Observation.rs?category=laboratory', sentInstead: [],
      reason: expect.stringMatching(/no filters: patient\/Observation\.read would grant every Observation resource, not only those matching \?category=laboratory/),
    });
    expect(toV1('user/*.cruds?_security=N').scopes).toEqual([]);
    expect(toV1('patient/Observation.c?category=vital-signs').dropped!.reason).toMatch(/\?category=vital-signs/);
  });

  test('v1 → v2', () => {
    expect(toV2('patient/*.read')).toBe('patient/*.rs');
    expect(toV2('user/Observation.write')).toBe('user/Observation.cud');
    expect(toV2('system/Patient.*')).toBe('system/Patient.cruds');
    expect(toV2('patient/Observation.rs')).toBe('patient/Observation.rs');
  });

  test('adapt follows the advertised permission-v1/permission-v2', () => {
    const configured = ['openid', 'patient/*.rs', 'user/Patient.read'];
    expect(adaptScopes(configured, ['permission-v2'])).toEqual({ scopes: ['openid', 'patient/*.rs', 'user/Patient.rs'], dropped: [] });
    expect(adaptScopes(configured, ['permission-v1', 'launch-ehr'])).toEqual({ scopes: ['openid', 'patient/*.read', 'user/Patient.read'], dropped: [] });
    expect(adaptScopes(configured, ['permission-v1', 'permission-v2'])).toEqual({ scopes: ['openid', 'patient/*.rs', 'user/Patient.rs'], dropped: [] });
    expect(adaptScopes(configured, [])).toEqual({ scopes: configured, dropped: [] });
  });

  test('adapt to v1: each scope that cannot be expressed exactly is listed in dropped; the rest go through', () => {
    const out = adaptScopes(['openid', 'fhirUser', 'patient/Patient.rs', 'patient/Observation.s', 'patient/Condition.rs?category=problem-list-item', 'patient/MedicationRequest.crs'], ['permission-v1']);
    expect(out.scopes).toEqual(['openid', 'fhirUser', 'patient/Patient.read', 'patient/MedicationRequest.read']);
    expect(out.dropped.map((d) => [d.scope, d.sentInstead])).toEqual([
      ['patient/Observation.s', []],
      ['patient/Condition.rs?category=problem-list-item', []],
      ['patient/MedicationRequest.crs', ['patient/MedicationRequest.read']],
    ]);
    // a v2 server gets them all as configured, filters included
    expect(adaptScopes(['patient/Observation.s', 'patient/Condition.rs?category=problem-list-item'], ['permission-v2']).scopes).toEqual(['patient/Observation.s', 'patient/Condition.rs?category=problem-list-item']);
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
