/** Backend-services URL settings checked at startup, every problem at once (review L1). */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../../src/config.js';
import { configProblems, STRONG_SECRET } from '../../helpers/config-problems.js';

const dir = mkdtempSync(join(tmpdir(), 'backend-config-'));
const keyFile = join(dir, 'k.pem');
writeFileSync(keyFile, generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
const base = { PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: STRONG_SECRET, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1', SMART_BACKEND_CLIENT_ID: 'b', SMART_BACKEND_KEY_FILE: keyFile };

test('SMART_BACKEND_ISS and SMART_BACKEND_JKU that are not URLs, or not https, are reported together with every other problem', async () => {
  const p = await configProblems({ ...base, NODE_ENV: 'production', SESSION_SECRET: '', SMART_BACKEND_ISS: 'fhir.example.org/r4', SMART_BACKEND_JKU: 'http://keys.example.org/jwks.json', BULK_DATA_LEASE_SECONDS: '0' });
  const text = p.join('\n');
  expect(text).toMatch(/SMART_BACKEND_ISS: not a URL: "fhir\.example\.org\/r4"/);
  expect(text).toMatch(/SMART_BACKEND_JKU: http:\/\/keys\.example\.org\/jwks\.json is not https \(http is never accepted in production\)/);
  expect(text).toMatch(/SESSION_SECRET: required in production/);
  expect(text).toMatch(/BULK_DATA_LEASE_SECONDS/);
});

test('https always; http only outside production, for a loopback host or with ALLOW_INSECURE_HTTP', async () => {
  await expect(loadConfig({ ...base, SMART_BACKEND_ISS: 'http://127.0.0.1:8080/fhir' })).resolves.toBeDefined();
  await expect(loadConfig({ ...base, SMART_BACKEND_ISS: 'http://localhost:8080/fhir', SMART_BACKEND_JKU: 'http://[::1]:3000/.well-known/jwks.json' })).resolves.toBeDefined();
  expect((await configProblems({ ...base, SMART_BACKEND_ISS: 'http://fhir.internal:8080/fhir' })).join()).toMatch(/SMART_BACKEND_ISS: http:\/\/fhir\.internal:8080\/fhir is not https \(http is accepted in development for a loopback host, or with ALLOW_INSECURE_HTTP=1\)/);
  await expect(loadConfig({ ...base, SMART_BACKEND_ISS: 'http://fhir.internal:8080/fhir', ALLOW_INSECURE_HTTP: '1' })).resolves.toBeDefined();
  expect((await configProblems({ ...base, NODE_ENV: 'production', SMART_BACKEND_ISS: 'http://127.0.0.1/fhir' })).join()).toMatch(/SMART_BACKEND_ISS: .* is not https/);
  for (const [iss, why] of [['ftp://fhir.example.org/r4', /not an http\(s\) URL/], ['https://u:p@fhir.example.org/r4', /credentials/], ['https://fhir.example.org/r4?x=1', /no query or fragment/]] as const) {
    expect([iss, (await configProblems({ ...base, SMART_BACKEND_ISS: iss })).join()]).toEqual([iss, expect.stringMatching(why)]);
  }
});

test('BACKEND_CONFIG_FILE: each registration\'s iss and jku, named by their place in the file, all at once', async () => {
  const file = join(dir, 'backend.json');
  writeFileSync(file, JSON.stringify({ registrations: [
    { name: 'a', iss: 'not a url', clientId: 'a', privateKeyFile: keyFile },
    { name: 'b', iss: 'https://fhir.example.org/r4', clientId: 'b', privateKeyFile: keyFile, jku: 'https://' },
    { name: 'c', iss: 'https://fhir.example.org/r4', clientId: 'c', privateKeyFile: join(dir, 'missing.pem') },
  ] }));
  const p = (await configProblems({ ...base, SMART_BACKEND_CLIENT_ID: '', SMART_BACKEND_KEY_FILE: '', BACKEND_CONFIG_FILE: file })).join('\n');
  expect(p).toMatch(/BACKEND_CONFIG_FILE registrations\[0\]\.iss: not a URL/);
  expect(p).toMatch(/BACKEND_CONFIG_FILE registrations\[1\]\.jku: not a URL/);
  expect(p).toMatch(/registrations\[2\] key file .*missing\.pem: cannot read/);
});
