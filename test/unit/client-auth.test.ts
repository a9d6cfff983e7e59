/**
 * #48 client_secret_basic: what each encoding sends, byte for byte, and the pure compatibility checks that the
 * discovery warning, the invalid_client diagnosis and `smart-bff doctor` use.
 */
import { basicAuthorization, basicEncodingClasses, formEncodeCredential, launchCredentials } from '../../src/smart/client-auth.js';
import { authMethodCheck, basicEncodingCheck, clientCompatibility, discoveryWarnings, invalidClientCauses, signingAlgCheck } from '../../src/smart/compatibility.js';
import type { Registration } from '../../src/config.js';
import type { ClientKey } from '../../src/keys.js';

const decode = (header: string) => Buffer.from(header.replace(/^Basic /, ''), 'base64').toString('utf8');

describe('#48 the Basic encodings', () => {
  test('letters, digits and -._~ go as they are in both encodings (a UUID client id is never %2D-encoded)', () => {
    const id = '8c7a1d0e-3b2f-4a6e-9d5c-1f2e3d4c5b6a';
    const secret = 'Zk3-v9.q_T~7xW2';
    for (const enc of ['form', 'raw'] as const) expect(decode(basicAuthorization(id, secret, enc))).toBe(`${id}:${secret}`);
    expect(basicEncodingClasses(id + secret)).toEqual([]);
  });

  test('form encodes exactly %, +, :, the space, controls and non-ASCII, as %XX of their UTF-8 bytes', () => {
    expect(formEncodeCredential('a%b+c:d e')).toBe('a%25b%2Bc%3Ad%20e');
    expect(formEncodeCredential('tab\there\nnul\u0000del\u007f')).toBe('tab%09here%0Anul%00del%7F');
    expect(formEncodeCredential('café-😀')).toBe('caf%C3%A9-%F0%9F%98%80');
    // every other printable ASCII character goes as it is: form-decoding leaves it unchanged
    const printable = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => !'%+:'.includes(c)).join('');
    expect(printable).toHaveLength(94 - 3);
    expect(formEncodeCredential(printable)).toBe(printable);
    // and what form sends, a form-decoding server reads back as the original
    for (const v of ['a%b+c:d e', 'café 😀+%', printable]) expect(decodeURIComponent(formEncodeCredential(v).replace(/\+/g, '%20'))).toBe(v);
  });

  test('raw sends id:secret exactly as configured (UTF-8); a client id with ":" cannot be sent raw', () => {
    expect(decode(basicAuthorization('app', 'p+ss%20 wörd:x', 'raw'))).toBe('app:p+ss%20 wörd:x');
    expect(decode(basicAuthorization('app', 'p+ss%20 wörd:x', 'form'))).toBe('app:p%2Bss%2520%20w%C3%B6rd%3Ax');
    expect(() => basicAuthorization('urn:app', 's', 'raw')).toThrow(/cannot be sent raw/);
    expect(decode(basicAuthorization('urn:app', 's', 'form'))).toBe('urn%3Aapp:s');
  });

  test('the classes of character that differ between the two are named, never where they are', () => {
    expect(basicEncodingClasses('a+b%c d:e\tf€')).toEqual(['percent', 'plus', 'colon', 'space', 'control', 'non-ascii']);
    expect(basicEncodingClasses('abc/=!*')).toEqual([]);
  });
});

const reg = (over: Partial<Registration>): Registration => ({
  name: 'epic', iss: ['https://ehr.example/r4'], clientId: 'app', clientType: 'confidential-symmetric', clientSecret: 'secret', clientSecretMethod: 'client_secret_basic',
  clientAuthEncoding: 'form', configuredIn: 'env', scope: 'openid', standaloneScope: 'openid', ...over,
});
const key = (alg: 'RS384' | 'ES384') => ({ alg, kid: 'k1' }) as unknown as ClientKey;

describe('#48 compatibility checks (pure: the SMART configuration and the credentials)', () => {
  test('the method against token_endpoint_auth_methods_supported', () => {
    const creds = launchCredentials(reg({}));
    expect(authMethodCheck({ token_endpoint_auth_methods_supported: ['client_secret_basic'] }, creds).status).toBe('ok');
    expect(authMethodCheck({}, creds).status).toBe('unknown');
    const w = authMethodCheck({ token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_post'] }, creds);
    expect(w).toMatchObject({ status: 'warning', ours: 'client_secret_basic', advertised: ['private_key_jwt', 'client_secret_post'] });
    expect(w.fix).toMatch(/SMART_CLIENT_AUTH_METHOD=client_secret_post/);
    expect(authMethodCheck({ token_endpoint_auth_methods_supported: ['private_key_jwt'] }, launchCredentials(reg({ configuredIn: 'file' }))).fix).toMatch(/one of private_key_jwt/);
    expect(authMethodCheck({ token_endpoint_auth_methods_supported: ['private_key_jwt'] }, launchCredentials(reg({ clientType: 'public' }))).status).toBe('not_applicable');
  });

  test('the key algorithm against token_endpoint_auth_signing_alg_values_supported', () => {
    const creds = { method: 'private_key_jwt' as const, key: key('ES384') };
    expect(signingAlgCheck({ token_endpoint_auth_signing_alg_values_supported: ['RS384', 'ES384'] }, creds).status).toBe('ok');
    expect(signingAlgCheck({}, creds).status).toBe('unknown');
    const w = signingAlgCheck({ token_endpoint_auth_signing_alg_values_supported: ['RS256', 'RS384'] }, creds);
    expect(w).toMatchObject({ status: 'warning', ours: 'ES384', advertised: ['RS256', 'RS384'] });
    expect(w.fix).toMatch(/keys generate --alg RS384/);
    expect(signingAlgCheck({ token_endpoint_auth_signing_alg_values_supported: ['RS256'] }, creds).fix).toMatch(/none of SMART's algorithms/);
    expect(signingAlgCheck({ token_endpoint_auth_signing_alg_values_supported: ['RS256'] }, { method: 'client_secret_basic' }).status).toBe('not_applicable');
  });

  test('the Basic encoding: names the setting to try, in the environment or in SMART_CONFIG_FILE', () => {
    const form = basicEncodingCheck(launchCredentials(reg({ clientSecret: 'a+b c' })));
    expect(form).toMatchObject({ status: 'warning', ours: 'form' });
    expect(form.message).toMatch(/the secret contains '\+' and a space/);
    expect(form.fix).toBe('Try SMART_CLIENT_AUTH_ENCODING=raw, or SMART_CLIENT_AUTH_METHOD=client_secret_post.');
    const raw = basicEncodingCheck(launchCredentials(reg({ clientSecret: 'a%b', clientAuthEncoding: 'raw', configuredIn: 'file' })));
    expect(raw.fix).toBe('Try "clientAuthEncoding": "form" (registration "epic" in SMART_CONFIG_FILE), or "clientAuthMethod": "client_secret_post" (registration "epic" in SMART_CONFIG_FILE).');
    const colonId = basicEncodingCheck(launchCredentials(reg({ clientId: 'urn:x' })));
    expect(colonId.message).toMatch(/the client id contains ':'/);
    expect(colonId.fix).toMatch(/^Try SMART_CLIENT_AUTH_METHOD=client_secret_post \(a client id with ':' cannot be sent raw\)/);
    expect(basicEncodingCheck(launchCredentials(reg({ clientSecret: 'plain-secret' }))).status).toBe('ok');
    expect(basicEncodingCheck(launchCredentials(reg({ clientSecretMethod: 'client_secret_post', clientSecret: 'a+b' }))).status).toBe('not_applicable');
    for (const c of clientCompatibility({}, launchCredentials(reg({ clientSecret: 'top+secret%value' })))) expect(JSON.stringify(c)).not.toContain('top+secret');
  });

  test('discovery warns of the method and the algorithm only; invalid_client lists them and the encoding', () => {
    const creds = launchCredentials(reg({ clientSecret: 'a+b' }));
    const smart = { token_endpoint_auth_methods_supported: ['client_secret_post'] };
    expect(discoveryWarnings(smart, creds).map((c) => c.check)).toEqual(['auth_method']);
    const causes = invalidClientCauses(smart, creds);
    expect(causes).toHaveLength(2);
    expect(causes[0]).toMatch(/not among the methods the server advertises \(client_secret_post\)\. Set SMART_CLIENT_AUTH_METHOD=client_secret_post/);
    expect(causes[1]).toMatch(/the secret contains '\+'.*SMART_CLIENT_AUTH_ENCODING=raw/);
    expect(invalidClientCauses({}, launchCredentials(reg({ clientSecret: 'plain' })))).toEqual([expect.stringMatching(/cannot be why the server refuses them/)]);
  });
});
