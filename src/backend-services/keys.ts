/**
 * Signing keys for SMART Backend Services: generation (RS384 with RSA 3072, or ES384 on P-384), the RFC 7638
 * thumbprint as `kid`, and the public JWK that goes into a JWKS. Private keys are written as PKCS#8 PEM with
 * file mode 0600 and never logged.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import * as jose from 'jose';
import { parsePrivateKey, type ClientKey, type SigningAlg } from '../config.js';

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

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** Only public members, whatever was given: a private JWK can never leak through here. */
export function publicOnly(jwk: jose.JWK): jose.JWK {
  const out: Record<string, unknown> = {};
  const allowed = new Set(['kty', 'kid', 'alg', 'use', 'key_ops', 'n', 'e', 'crv', 'x', 'y', 'x5c', 'x5t', 'x5t#S256', 'x5u']);
  for (const [k, v] of Object.entries(jwk)) if (allowed.has(k) && !(PRIVATE_MEMBERS as readonly string[]).includes(k)) out[k] = v;
  if (out.key_ops) out.key_ops = ['verify'];
  return out as jose.JWK;
}

export type { ClientKey };
