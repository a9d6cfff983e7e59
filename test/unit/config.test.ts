import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../src/config.js';
import { configProblems, STRONG_SECRET } from '../helpers/config-problems.js';
import { parsePrivateKey } from '../../src/keys.js';

const STRONG = STRONG_SECRET;
const base = { PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: STRONG, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1' };

const problems = configProblems;

describe('loadConfig', () => {
  test('every problem at once: values the schema refuses and what the checks after it find, together', async () => {
    const p = await problems({ ...base, NODE_ENV: 'production', PORT: 'abc', PUBLIC_URL: 'http://app.example.com', COOKIE_MODE: 'iframe', SESSION_SECRET: 'short' });
    expect(p).toEqual([
      'PORT: not a number (got "abc")',
      'COOKIE_MODE: Invalid option: expected one of "default"|"embedded" (got "iframe")',
      'PUBLIC_URL: must be https in production (NODE_ENV=production)',
      expect.stringMatching(/^SESSION_SECRET: too weak/),
    ]);
  });

  test('an unknown NODE_ENV (prod) is an error, not a silent development mode; the rest is checked as for production', async () => {
    const p = await problems({ ...base, NODE_ENV: 'prod', PUBLIC_URL: 'http://app.example.com' });
    expect(p).toEqual([
      'NODE_ENV: must be production, development or test (got "prod"); the rest of the configuration was checked as for production',
      'PUBLIC_URL: must be https in production (NODE_ENV=production)',
    ]);
    for (const bad of ['Production', 'dev', 'staging']) expect((await problems({ ...base, NODE_ENV: bad }))[0]).toMatch(/^NODE_ENV: must be production, development or test/);
  });

  test('NODE_ENV unset or empty is development (npm start on a fresh clone); test and development are accepted', async () => {
    const dev = { SMART_ISS: base.SMART_ISS, SMART_CLIENT_ID: base.SMART_CLIENT_ID };
    for (const env of [dev, { ...dev, NODE_ENV: '' }, { ...dev, NODE_ENV: 'development' }]) {
      const c = await loadConfig(env);
      expect(c).toMatchObject({ nodeEnv: 'development', isProduction: false, publicUrl: 'http://localhost:3000' });
    }
    expect(await loadConfig({ ...dev, NODE_ENV: 'test' })).toMatchObject({ nodeEnv: 'test', isProduction: false });
  });

  test('a minimal production configuration', async () => {
    const c = await loadConfig({ ...base, NODE_ENV: 'production' });
    expect(c.redirectUri).toBe('https://app.example.com/callback');
    expect(c.registrations).toHaveLength(1);
    expect(c.registrations[0]).toMatchObject({ name: 'default', clientId: 'client-1', clientType: 'public', iss: ['https://fhir.example.com/r4'] });
    expect(c.registrations[0]!.scope).toBe('openid fhirUser online_access patient/*.rs');
    expect(c.sandbox).toBe(false);
    expect(Object.isFrozen(c)).toBe(true);
  });

  test('production reports every problem at once, each with its variable name', async () => {
    const p = await problems({ NODE_ENV: 'production', PUBLIC_URL: 'http://app.example.com', SESSION_SECRET: 'secret', SMART_CLIENT_ID: 'x' });
    expect(p.some((m) => m.startsWith('PUBLIC_URL:') && /https/.test(m))).toBe(true);
    expect(p.some((m) => m.startsWith('SESSION_SECRET:') && /weak/.test(m))).toBe(true);
    expect(p.some((m) => m.startsWith('SMART_ISS:'))).toBe(true);
    expect(p.length).toBeGreaterThanOrEqual(3);
  });

  test('no default secret: production without SESSION_SECRET refuses to start', async () => {
    const p = await problems({ ...base, NODE_ENV: 'production', SESSION_SECRET: '' });
    expect(p).toEqual([expect.stringMatching(/^SESSION_SECRET: required in production/)]);
  });

  test('development without SESSION_SECRET gets a random per-process secret and a warning', async () => {
    const a = await loadConfig({ ...base, SESSION_SECRET: '' });
    const b = await loadConfig({ ...base, SESSION_SECRET: '' });
    expect(a.sessionSecret).not.toBe(b.sessionSecret);
    expect(a.sessionSecret.length).toBeGreaterThanOrEqual(40);
    expect(a.warnings.join()).toMatch(/SESSION_SECRET is not set/);
  });

  test('an iss allow-list of several, comma separated', async () => {
    const c = await loadConfig({ ...base, SMART_ISS: 'https://a.example/r4, https://b.example/fhir/' });
    expect(c.registrations[0]!.iss).toEqual(['https://a.example/r4', 'https://b.example/fhir/']);
  });

  test('http iss is refused unless ALLOW_INSECURE_HTTP (never in production)', async () => {
    expect((await problems({ ...base, SMART_ISS: 'http://localhost:8080/fhir' })).join()).toMatch(/SMART_ISS: http:\/\/localhost:8080\/fhir is not https/);
    await expect(loadConfig({ ...base, SMART_ISS: 'http://localhost:8080/fhir', ALLOW_INSECURE_HTTP: '1' })).resolves.toBeDefined();
    expect((await problems({ ...base, NODE_ENV: 'production', ALLOW_INSECURE_HTTP: '1' })).join()).toMatch(/ALLOW_INSECURE_HTTP: not allowed in production/);
  });

  test('no registration and no sandbox', async () => {
    expect((await problems({ NODE_ENV: 'production', PUBLIC_URL: 'https://x.example', SESSION_SECRET: STRONG })).join()).toMatch(/SMART_ISS and SMART_CLIENT_ID/);
    const dev = await loadConfig({});
    expect(dev.sandbox).toBe(true);
    expect(dev.publicUrl).toBe('http://localhost:3000');
  });

  test('startup warning when neither online_access nor offline_access is requested', async () => {
    const c = await loadConfig({ ...base, SMART_SCOPE: 'openid fhirUser patient/*.rs' });
    expect(c.warnings.join()).toMatch(/neither online_access nor offline_access.*Oracle Health/);
    const ok = await loadConfig({ ...base, SMART_SCOPE: 'openid offline_access patient/*.rs' });
    expect(ok.warnings.join()).not.toMatch(/online_access/);
  });

  test('confidential symmetric and asymmetric clients', async () => {
    const sym = await loadConfig({ ...base, SMART_CLIENT_SECRET: 's3cr3t' });
    expect(sym.registrations[0]).toMatchObject({ clientType: 'confidential-symmetric', clientSecretMethod: 'client_secret_basic' });
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const asym = await loadConfig({ ...base, SMART_PRIVATE_KEY: pem, SMART_KEY_ID: 'my-kid' });
    expect(asym.registrations[0]).toMatchObject({ clientType: 'confidential-asymmetric' });
    expect(asym.registrations[0]!.key).toMatchObject({ alg: 'ES384', kid: 'my-kid' });
    expect(JSON.stringify(asym.registrations[0]!.key!.publicJwk)).not.toMatch(/"d"/);
    expect((await problems({ ...base, SMART_PRIVATE_KEY: pem, SMART_CLIENT_SECRET: 'x' })).join()).toMatch(/both a client secret and a private key/);
  });

  test('#48 SMART_CLIENT_AUTH_ENCODING: form by default, raw on request; raw refuses a client id with ":" at startup', async () => {
    expect((await loadConfig({ ...base, SMART_CLIENT_SECRET: 's3cr3t' })).registrations[0]).toMatchObject({ clientAuthEncoding: 'form', configuredIn: 'env' });
    expect((await loadConfig({ ...base, SMART_CLIENT_SECRET: 's3cr3t', SMART_CLIENT_AUTH_ENCODING: 'raw' })).registrations[0]).toMatchObject({ clientAuthEncoding: 'raw' });
    expect(await problems({ ...base, SMART_CLIENT_SECRET: 's3cr3t', SMART_CLIENT_AUTH_ENCODING: 'latin1' })).toEqual(['SMART_CLIENT_AUTH_ENCODING: must be form or raw (got "latin1")']);
    const colon = await problems({ ...base, SMART_CLIENT_ID: 'urn:app:1', SMART_CLIENT_SECRET: 's3cr3t', SMART_CLIENT_AUTH_ENCODING: 'raw' });
    expect(colon).toEqual([expect.stringMatching(/^SMART_CLIENT_AUTH_ENCODING: raw cannot send the client id "urn:app:1": it contains ':'.*SMART_CLIENT_AUTH_ENCODING=form.*SMART_CLIENT_AUTH_METHOD=client_secret_post/)]);
    // form sends ':' as %3A; client_secret_post does not use Basic at all
    await expect(loadConfig({ ...base, SMART_CLIENT_ID: 'urn:app:1', SMART_CLIENT_SECRET: 's3cr3t' })).resolves.toBeDefined();
    await expect(loadConfig({ ...base, SMART_CLIENT_ID: 'urn:app:1', SMART_CLIENT_SECRET: 's3cr3t', SMART_CLIENT_AUTH_ENCODING: 'raw', SMART_CLIENT_AUTH_METHOD: 'client_secret_post' })).resolves.toBeDefined();
  });

  test('#48 the encoding where it does nothing, and a secret with whitespace at its ends, are warnings', async () => {
    const post = await loadConfig({ ...base, SMART_CLIENT_SECRET: 's3cr3t', SMART_CLIENT_AUTH_METHOD: 'client_secret_post', SMART_CLIENT_AUTH_ENCODING: 'raw' });
    expect(post.warnings.join()).toMatch(/SMART_CLIENT_AUTH_ENCODING \(default\): ignored, it only applies to client_secret_basic \(this client uses client_secret_post\)/);
    expect(post.registrations[0]!.clientAuthEncoding).toBeUndefined();
    expect((await loadConfig({ ...base, SMART_CLIENT_AUTH_ENCODING: 'raw' })).warnings.join()).toMatch(/ignored.*no client authentication/);
    const spaced = await loadConfig({ ...base, SMART_CLIENT_SECRET: 's3cr3t\n' });
    expect(spaced.warnings.join()).toMatch(/SMART_CLIENT_SECRET \(default\): the client secret begins or ends with whitespace/);
    expect(spaced.warnings.join()).not.toContain('s3cr3t');
  });

  test('SMART_CONFIG_FILE lists several registrations; errors name the entry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'smart-bff-config-'));
    const file = join(dir, 'ehrs.json');
    writeFileSync(file, JSON.stringify({ registrations: [
      { name: 'cerner', iss: ['https://fhir-ehr-code.cerner.com/r4/*'], clientId: 'c1', scope: 'openid fhirUser launch online_access user/*.read' },
      { name: 'epic', iss: 'https://fhir.epic.example/api/FHIR/R4', clientId: 'e1', clientType: 'confidential-symmetric', clientSecretEnv: 'EPIC_SECRET' },
    ] }));
    const c = await loadConfig({ PUBLIC_URL: base.PUBLIC_URL, SESSION_SECRET: STRONG, SMART_CONFIG_FILE: file, EPIC_SECRET: 'shh' });
    expect(c.registrations.map((r) => [r.name, r.clientType])).toEqual([['cerner', 'public'], ['epic', 'confidential-symmetric']]);
    const p = await problems({ PUBLIC_URL: base.PUBLIC_URL, SESSION_SECRET: STRONG, SMART_CONFIG_FILE: file });
    expect(p.join()).toMatch(/registrations\[1\]\.clientSecretEnv: environment variable EPIC_SECRET is not set/);
    expect(c.registrations.map((r) => [r.configuredIn, r.clientAuthEncoding])).toEqual([['file', undefined], ['file', 'form']]);
    writeFileSync(file, JSON.stringify({ registrations: [{ name: 'epic', iss: 'https://x.example', clientId: 'a:b', clientSecret: 'x', clientAuthEncoding: 'raw' }] }));
    expect(await problems({ PUBLIC_URL: base.PUBLIC_URL, SESSION_SECRET: STRONG, SMART_CONFIG_FILE: file })).toEqual([
      expect.stringMatching(/^SMART_CONFIG_FILE registrations\[0\]\.clientAuthEncoding: raw cannot send the client id "a:b".*"clientAuthEncoding": "form"/),
    ]);
    writeFileSync(file, JSON.stringify({ registrations: [{ iss: 'https://x.example' }] }));
    expect((await problems({ SMART_CONFIG_FILE: file })).join()).toMatch(/SMART_CONFIG_FILE .*registrations\.0\.clientId/);
  });
});

describe('parsePrivateKey', () => {
  test('RSA ≥ 2048 → RS384, EC P-384 → ES384; kid defaults to the RFC 7638 thumbprint', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const k = await parsePrivateKey(rsa);
    expect(k.alg).toBe('RS384');
    expect(k.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const jwk = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'jwk' });
    const e = await parsePrivateKey(JSON.stringify({ ...jwk, kid: 'k1' }));
    expect(e).toMatchObject({ alg: 'ES384', kid: 'k1' });
  });

  test.each([
    ['RSA 1024', () => generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), /1024 bits; SMART requires at least 2048/],
    ['EC P-256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), /prime256v1; ES384 requires P-384/],
    ['a public JWK', () => JSON.stringify({ kty: 'EC', crv: 'P-384', x: 'a', y: 'b' }), /no private part/],
    ['garbage', () => 'not a key', /not a readable private key/],
  ])('refuses %s', async (_name, make, message) => {
    await expect(parsePrivateKey(make())).rejects.toThrow(message);
  });
});
