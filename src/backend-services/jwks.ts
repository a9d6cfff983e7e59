/**
 * The public JWKS the app publishes at /.well-known/jwks.json: every signing key in use plus keys published
 * ahead of use or kept after retirement (rotation). Public members only; a key of the wrong type or size for
 * its algorithm stops startup (checked when the keys are parsed).
 */
import type { RequestHandler } from 'express';
import type * as jose from 'jose';
import { publicOnly } from '../keys.js';

export function buildJwks(keys: readonly jose.JWK[]): { keys: jose.JWK[] } {
  const seen = new Set<string>();
  const out: jose.JWK[] = [];
  for (const k of keys) {
    const pub = publicOnly(k);
    const id = String(pub.kid ?? JSON.stringify(pub));
    if (seen.has(id)) continue;
    seen.add(id);
    out.push(pub);
  }
  return { keys: out };
}

/** Cache one hour: a new key must be published at least this long before it signs anything. */
export const JWKS_MAX_AGE_SECONDS = 3600;

export function jwksHandler(jwks: { keys: jose.JWK[] }): RequestHandler {
  const body = JSON.stringify(jwks);
  return (_req, res) => {
    res.set({ 'content-type': 'application/json', 'cache-control': `public, max-age=${JWKS_MAX_AGE_SECONDS}`, 'access-control-allow-origin': '*' }).send(body);
  };
}
