import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as jose from 'jose';
import { generateSigningKey, parsePrivateKey, publicOnly } from '../../src/keys.js';
import { buildJwks } from '../../src/backend-services/jwks.js';

const PRIVATE = ['d', 'p', 'q', 'dp', 'dq', 'qi'];

describe('keys generate', () => {
  test.each(['RS384', 'ES384'] as const)('%s: private key mode 0600, kid = RFC 7638 thumbprint, usable by the client', async (alg) => {
    const dir = mkdtempSync(join(tmpdir(), 'keys-'));
    const k = await generateSigningKey(alg, dir);
    expect(statSync(k.privateKeyPath).mode & 0o777).toBe(0o600);
    const jwks = JSON.parse(readFileSync(k.jwksPath, 'utf8')) as { keys: jose.JWK[] };
    expect(jwks.keys).toHaveLength(1);
    const pub = jwks.keys[0]!;
    expect(pub).toMatchObject({ kid: k.kid, alg, use: 'sig' });
    expect(await jose.calculateJwkThumbprint(pub, 'sha256')).toBe(k.kid);
    for (const m of PRIVATE) expect(pub).not.toHaveProperty(m);
    if (alg === 'RS384') expect(Buffer.from(String(pub.n), 'base64url').length * 8).toBeGreaterThanOrEqual(2048);
    else expect(pub.crv).toBe('P-384');
    const parsed = await parsePrivateKey(readFileSync(k.privateKeyPath, 'utf8'));
    expect(parsed.kid).toBe(k.kid);
  });
});

describe('JWKS', () => {
  test('private members can never appear, whatever is configured', async () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }) as jose.JWK;
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ format: 'jwk' }) as jose.JWK;
    expect(rsa.d).toBeDefined();
    const jwks = buildJwks([{ ...rsa, kid: 'a' }, { ...ec, kid: 'b' }, { ...ec, kid: 'b' }]);
    expect(jwks.keys.map((k) => k.kid)).toEqual(['a', 'b']);
    const text = JSON.stringify(jwks);
    for (const m of PRIVATE) expect(text).not.toMatch(new RegExp(`"${m}"`));
    expect(publicOnly({ ...rsa, kid: 'x', key_ops: ['sign'] }).key_ops).toEqual(['verify']);
  });
});
