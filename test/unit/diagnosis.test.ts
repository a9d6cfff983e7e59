import { decodeCernerErrorUri, diagnoseTokenFailure } from '../../src/smart/diagnosis.js';

const base = { grantType: 'authorization_code' as const, oauthError: 'invalid_grant' };

describe('diagnoseTokenFailure', () => {
  test('redirect_uri that differs between authorize and token request is named, byte for byte', () => {
    const d = diagnoseTokenFailure({ ...base, errorDescription: 'grant request is invalid', redirectUriAtAuthorize: 'https://a.example/callback', redirectUriAtToken: 'https://a.example/callback/' });
    expect(d.causes.join('\n')).toMatch(/redirect_uri differs byte for byte.*https:\/\/a\.example\/callback\).*https:\/\/a\.example\/callback\/\)/);
  });

  test('verifier that does not hash to the challenge is named', () => {
    const d = diagnoseTokenFailure({ ...base, pkceMatches: false, errorDescription: 'x' });
    expect(d.causes.some((c) => c.startsWith('PKCE'))).toBe(true);
  });

  test('a code sent before is named as reused; an old transaction as expired', () => {
    expect(diagnoseTokenFailure({ ...base, codeSeenBefore: true, errorDescription: 'x' }).causes.join()).toMatch(/Code reused/);
    expect(diagnoseTokenFailure({ ...base, transactionAgeMs: 5 * 60_000, errorDescription: 'x' }).causes.join()).toMatch(/Code probably expired: 300 s/);
    expect(diagnoseTokenFailure({ ...base, transactionAgeMs: 2_000, errorDescription: 'x' }).causes.join()).not.toMatch(/Code probably expired/);
  });

  test('clock skew from the server Date header', () => {
    const now = Date.parse('2026-01-01T00:10:00Z');
    const d = diagnoseTokenFailure({ ...base, errorDescription: 'x', serverDate: 'Thu, 01 Jan 2026 00:00:00 GMT', now });
    expect(d.clockSkewSeconds).toBe(600);
    expect(d.causes.join()).toMatch(/Clock skew: our clock is 600 s ahead/);
    expect(diagnoseTokenFailure({ ...base, errorDescription: 'x', serverDate: 'Thu, 01 Jan 2026 00:09:50 GMT', now }).causes.join()).not.toMatch(/Clock skew/);
  });

  test('v2 scopes against a v1-only server', () => {
    const d = diagnoseTokenFailure({ ...base, errorDescription: 'x', requestedScopes: ['patient/*.rs'], capabilities: ['permission-v1'] });
    expect(d.causes.join()).toMatch(/SMART v2 scopes \(\.rs\) were requested/);
  });

  test("Epic's empty error_description gets a checklist", () => {
    const d = diagnoseTokenFailure({ ...base });
    expect(d.causes.join()).toMatch(/Epic answers invalid_grant with an empty description/);
  });

  test('invalid_client names the client authentication we used, and what compatibility.ts found first', () => {
    const d = diagnoseTokenFailure({ grantType: 'authorization_code', oauthError: 'invalid_client', status: 401, clientAuthMethod: 'none' });
    expect(d.causes.join()).toMatch(/public client/);
    const k = diagnoseTokenFailure({ grantType: 'authorization_code', oauthError: 'invalid_client', status: 401, clientAuthMethod: 'client_secret_basic', clientAuthCauses: ['Client authentication client_secret_basic is not among the methods the server advertises (private_key_jwt).'] });
    expect(k.causes[0]).toMatch(/not among the methods the server advertises \(private_key_jwt\)/);
    expect(k.causes.join()).toMatch(/We sent a client secret/);
    const g = diagnoseTokenFailure({ grantType: 'authorization_code', oauthError: 'invalid_grant', errorDescription: 'x', clientAuthCauses: ['not about the grant'] });
    expect(g.causes.join()).not.toMatch(/not about the grant/);
  });

  test('Oracle Health error_uri codes are decoded', () => {
    const uri = 'https://authorization.cerner.com/errors/urn%3Acerner%3Aerror%3Aauthorization-server%3Aoauth2%3Atoken%3Ainvalid-tenant/instances/65b0a9f4?client=x&tenant=y';
    expect(decodeCernerErrorUri(uri)).toEqual({ urn: 'urn:cerner:error:authorization-server:oauth2:token:invalid-tenant', meaning: expect.stringMatching(/tenant is not valid/) });
    const d = diagnoseTokenFailure({ ...base, errorUri: uri });
    expect(d.vendorCode).toBe('urn:cerner:error:authorization-server:oauth2:token:invalid-tenant');
    expect(d.causes[0]).toMatch(/^Oracle Health says urn:cerner:error:.*invalid-tenant: /);
    for (const code of ['invalid-client-credentials', 'empty-scopes']) {
      expect(decodeCernerErrorUri(`https://x/errors/urn%3Acerner%3Aerror%3Aauthorization-server%3Aoauth2%3Atoken%3A${code}/instances/1`)?.meaning).toBeTruthy();
    }
    expect(decodeCernerErrorUri('https://authorization.cerner.com/errors/urn:cerner:error:authorization-server:smart-v1:grant:launch:invalid-code/instances/abc')?.meaning).toMatch(/launch code is invalid/);
    expect(decodeCernerErrorUri('https://example.com/help')).toBeUndefined();
  });

  test('refresh invalid_grant says to relaunch', () => {
    expect(diagnoseTokenFailure({ grantType: 'refresh_token', oauthError: 'invalid_grant' }).causes.join()).toMatch(/Launch again/);
  });
});
