/**
 * Signing keys for private_key_jwt (confidential asymmetric launch clients and backend services): parsing a
 * configured private key (PEM or JWK) and checking it fits RS384 or ES384, generation (RS384 with RSA 3072, or
 * ES384 on P-384), the RFC 7638 thumbprint as `kid`, and the public JWK that goes into a JWKS. Private keys are
 * written as PKCS#8 PEM with file mode 0600 and never logged.
 */
import { createPrivateKey, generateKeyPairSync, type KeyObject, type webcrypto } from 'node:crypto';
import { mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
// jose's subpath modules: the package index loads all of jose (some 180 modules) at start-up.
import type * as jose from 'jose';
import { calculateJwkThumbprint } from 'jose/jwk/thumbprint';
import { importJWK } from 'jose/key/import';

export type SigningAlg = 'RS384' | 'ES384';

export interface ClientKey {
  /** Private key usable by jose / openid-client. Never logged. */
  readonly privateKey: webcrypto.CryptoKey;
  readonly alg: SigningAlg;
  readonly kid: string;
  /** Public JWK (for publishing in a JWKS). */
  readonly publicJwk: jose.JWK;
}

/** Parses a PEM (PKCS#8, PKCS#1 or SEC1) or JWK private key and checks it fits RS384 or ES384. */
export async function parsePrivateKey(input: string | Record<string, unknown>, keyId?: string): Promise<ClientKey> {
  let keyObject: KeyObject;
  let jwkKid: string | undefined;
  let jwkAlg: string | undefined;
  const text = typeof input === 'string' ? input.trim() : undefined;
  try {
    if (typeof input !== 'string' || text!.startsWith('{')) {
      const jwk = (typeof input === 'string' ? JSON.parse(text!) : input) as jose.JWK & { keys?: jose.JWK[] };
      const single = Array.isArray(jwk.keys) ? (jwk.keys.length === 1 ? jwk.keys[0]! : undefined) : jwk;
      if (!single) throw new Error('a JWKS with several keys was given; give one private JWK');
      if (!('d' in single)) throw new Error('the JWK has no private part ("d"); give the private key, not the public one');
      jwkKid = single.kid;
      jwkAlg = single.alg;
      keyObject = createPrivateKey({ key: single as import('node:crypto').JsonWebKey, format: 'jwk' });
    } else {
      keyObject = createPrivateKey({ key: text!.replace(/\\n/g, '\n'), format: 'pem' });
    }
  } catch (err) {
    const msg = (err as Error).message;
    if (msg.startsWith('a JWKS') || msg.startsWith('the JWK')) throw err;
    throw new Error('not a readable private key (expected a PEM "-----BEGIN PRIVATE KEY-----" or a private JWK)');
  }
  let alg: SigningAlg;
  const details = keyObject.asymmetricKeyDetails ?? {};
  if (keyObject.asymmetricKeyType === 'rsa') {
    if ((details.modulusLength ?? 0) < 2048) throw new Error(`RSA key is ${details.modulusLength} bits; SMART requires at least 2048`);
    alg = 'RS384';
  } else if (keyObject.asymmetricKeyType === 'ec') {
    if (details.namedCurve !== 'secp384r1') throw new Error(`EC key is on curve ${details.namedCurve}; ES384 requires P-384 (secp384r1)`);
    alg = 'ES384';
  } else {
    throw new Error(`key type ${keyObject.asymmetricKeyType} is not supported; use RSA (RS384) or EC P-384 (ES384)`);
  }
  if (jwkAlg && jwkAlg !== alg) throw new Error(`the JWK says alg ${jwkAlg} but the key fits ${alg}; SMART allows RS384 and ES384`);
  const privateJwk = keyObject.export({ format: 'jwk' }) as jose.JWK;
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = privateJwk;
  const kid = jwkKid ?? keyId ?? (await calculateJwkThumbprint(publicJwk as jose.JWK, 'sha256'));
  const privateKey = (await importJWK({ ...privateJwk, alg }, alg)) as webcrypto.CryptoKey;
  return Object.freeze({ privateKey, alg, kid, publicJwk: Object.freeze({ ...publicJwk, kid, alg, use: 'sig' }) });
}

export interface GeneratedKey {
  alg: SigningAlg;
  kid: string;
  privateKeyPath: string;
  jwksPath: string;
  publicJwk: jose.JWK;
}

export async function generateSigningKey(alg: SigningAlg, outDir: string): Promise<GeneratedKey> {
  const { privateKey } = alg === 'RS384'
    ? generateKeyPairSync('rsa', { modulusLength: 3072 })
    : generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const key = await parsePrivateKey(pem);
  mkdirSync(outDir, { recursive: true });
  const base = `${alg.toLowerCase()}-${key.kid.slice(0, 12)}`;
  const privateKeyPath = join(outDir, `${base}.private.pem`);
  const jwksPath = join(outDir, `${base}.jwks.json`);
  writeFileSync(privateKeyPath, pem, { mode: 0o600 });
  chmodSync(privateKeyPath, 0o600);
  writeFileSync(jwksPath, `${JSON.stringify({ keys: [publicOnly(key.publicJwk)] }, null, 2)}\n`, { mode: 0o644 });
  return { alg, kid: key.kid, privateKeyPath, jwksPath, publicJwk: publicOnly(key.publicJwk) };
}

/** The JWK members that hold private key material (RSA, EC, and a symmetric key's `k`): the one list. */
export const PRIVATE_MEMBERS: readonly string[] = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** Only public members, whatever was given: a private JWK can never leak through here. */
export function publicOnly(jwk: jose.JWK): jose.JWK {
  const out: Record<string, unknown> = {};
  const allowed = new Set(['kty', 'kid', 'alg', 'use', 'key_ops', 'n', 'e', 'crv', 'x', 'y', 'x5c', 'x5t', 'x5t#S256', 'x5u']);
  for (const [k, v] of Object.entries(jwk)) if (allowed.has(k) && !PRIVATE_MEMBERS.includes(k)) out[k] = v;
  if (out.key_ops) out.key_ops = ['verify'];
  return out as jose.JWK;
}

