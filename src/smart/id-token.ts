/**
 * ID tokens: what openid-client checks, what we add, and which check failed.
 *
 * openid-client v6 (oauth4webapi) validates the claims of an id_token from the token endpoint: `iss` equal to the
 * configuration's issuer, `aud` the client id (and `azp` when there are several audiences), `exp` (30 s
 * tolerance), `iat` and `sub` present, `nonce` equal to the one sent (or absent when none was), and its `alg`
 * against `id_token_signing_alg_values_supported` (RS256 when that is not advertised). It does NOT verify the
 * signature of an id_token that comes from the token endpoint (OpenID Connect lets a client trust TLS there)
 * unless `enableNonRepudiationChecks` is on. We verify it here, with the keys at the server's `jwks_uri`, before
 * any claim is read (fhirUser) or the token is kept: an id_token that cannot be verified this way (no `issuer` or
 * no `jwks_uri`) is never asked for (the launch drops `openid fhirUser`), and one the server sends anyway is
 * ignored, with a logged note (oauth-config.ts strips it from the response).
 *
 * The remote key sets are cached per jwks_uri (jose's createRemoteJWKSet: fetched once, re-fetched when a token
 * names a key it does not hold, at most every 30 s), in a bounded LRU: a cache, and it says so.
 */
import * as jose from 'jose';
import { LRUCache } from 'lru-cache';
import { clip } from '../log.js';
import type { DiscoveredServer } from './discovery.js';
import { hasIssuer } from './oauth-config.js';

/** Signature algorithms accepted for an id_token: asymmetric only (never `none`, never an HMAC keyed with a secret). */
export const ID_TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/** Which check of an id_token failed. */
export type IdTokenCheck =
  | 'nonce' | 'iss' | 'aud' | 'azp' | 'exp' | 'iat' | 'nbf' | 'auth_time' | 'claims'
  | 'alg' | 'signature' | 'signing_key' | 'jwks' | 'malformed' | 'missing';

export interface IdTokenFailure {
  check: IdTokenCheck;
  /** One sentence for the log and the error page: which check, and what was found (never the token). */
  reason: string;
}

export class IdTokenError extends Error {
  constructor(readonly failure: IdTokenFailure, options?: { cause?: unknown }) {
    super(failure.reason, options);
    this.name = 'IdTokenError';
  }
}

/** An id_token from this server can be verified: it names its issuer (checked against `iss`) and its keys. */
export function canVerifyIdTokens(server: DiscoveredServer): boolean {
  return hasIssuer(server) && typeof server.configuration.jwks_uri === 'string';
}

export interface IdTokenVerifierOptions {
  timeoutMs: number;
  /** Key sets cached (one per jwks_uri, LRU). Default 1000. */
  maxEntries?: number;
  fetch?: typeof fetch;
}

export class IdTokenVerifier {
  private readonly sets: LRUCache<string, jose.JWTVerifyGetKey>;

  constructor(private readonly opts: IdTokenVerifierOptions) {
    this.sets = new LRUCache({ max: opts.maxEntries ?? 1000 });
  }

  /** Verifies the id_token's signature with the server's jwks_uri; throws an IdTokenError naming the check. */
  async verifySignature(idToken: string, server: DiscoveredServer): Promise<void> {
    const uri = server.configuration.jwks_uri;
    if (!uri || !hasIssuer(server)) throw new IdTokenError({ check: 'signing_key', reason: 'the SMART configuration has no jwks_uri (or no issuer), so the ID token cannot be verified' });
    let keys = this.sets.get(uri);
    if (!keys) {
      keys = jose.createRemoteJWKSet(new URL(uri), {
        timeoutDuration: this.opts.timeoutMs,
        ...(this.opts.fetch ? { [jose.customFetch]: this.opts.fetch } : {}),
      });
      this.sets.set(uri, keys);
    }
    try {
      // The signature only: the claims were checked by openid-client (with its clock tolerance).
      await jose.compactVerify(idToken, keys, { algorithms: ID_TOKEN_ALGORITHMS });
    } catch (err) {
      throw new IdTokenError(signatureFailure(err, idToken, uri), { cause: err });
    }
  }
}

function header(idToken: string): { alg?: string; kid?: string } {
  try {
    return jose.decodeProtectedHeader(idToken);
  } catch {
    return {};
  }
}

function signatureFailure(err: unknown, idToken: string, jwksUri: string): IdTokenFailure {
  const { alg, kid } = header(idToken);
  const code = (err as { code?: string })?.code;
  switch (code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return { check: 'signature', reason: `its signature does not verify with the key${kid ? ` ${clip(kid, 80)}` : ''} published at ${jwksUri} (signed by another key, or altered)` };
    case 'ERR_JWKS_NO_MATCHING_KEY':
    case 'ERR_JWKS_MULTIPLE_MATCHING_KEYS':
      return { check: 'signing_key', reason: `it is signed with a key (kid ${kid ? clip(kid, 80) : 'not given'}, alg ${clip(alg, 20) ?? '?'}) that is not among the keys published at ${jwksUri}` };
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
    case 'ERR_JOSE_NOT_SUPPORTED':
      return { check: 'alg', reason: `its algorithm (alg ${JSON.stringify(clip(alg, 20) ?? null)}) is not accepted: only signatures with a published public key are (never none or a shared secret)` };
    case 'ERR_JWS_INVALID':
      return { check: 'malformed', reason: 'it is not a well-formed signed JWT' };
    case 'ERR_JWKS_TIMEOUT':
      return { check: 'jwks', reason: `the keys at ${jwksUri} did not arrive in time, so its signature could not be checked` };
    default:
      return { check: 'jwks', reason: `the keys at ${jwksUri} could not be read (${clip((err as Error)?.message, 160) ?? 'error'}), so its signature could not be checked` };
  }
}

const CLAIM_CHECKS = new Set<IdTokenCheck>(['nonce', 'iss', 'aud', 'azp', 'exp', 'iat', 'nbf', 'auth_time']);

/**
 * The id_token check that an openid-client error reports, if it is one (undefined for any other failure of the
 * token response). Reads the OperationProcessingError openid-client wraps: its claim name, or its message.
 */
export function idTokenClaimFailure(err: unknown, expected: { issuer?: string; clientId?: string } = {}): IdTokenFailure | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++, e = (e as { cause?: unknown }).cause) {
    const message = e.message;
    const cause = (e as { cause?: unknown }).cause as { claim?: unknown; claims?: Record<string, unknown> } | undefined;
    const claim = cause && typeof cause === 'object' && typeof cause.claim === 'string' ? cause.claim : undefined;
    if (claim && CLAIM_CHECKS.has(claim as IdTokenCheck)) return claimFailure(claim as IdTokenCheck, cause?.claims ?? {}, expected);
    if (/nonce/.test(message) && /ID Token/.test(message)) return claimFailure('nonce', cause?.claims ?? {}, expected);
    if (/"response" body "id_token" property/.test(message)) return { check: 'missing', reason: 'the token response has no id_token although openid was requested' };
    if (/unexpected JWT "alg" header parameter|missing client or server configuration to verify used JWT "alg"/.test(message)) {
      return { check: 'alg', reason: 'its algorithm (alg) is not one the server advertises for ID tokens (RS256 when it advertises none)' };
    }
    if (/JWT "[a-z_]+" \([^)]*\) claim (missing|type)|unexpected JWT "sub"/.test(message)) return { check: 'claims', reason: `a required claim is missing or of the wrong type (${clip(message, 120)})` };
    if (/Invalid JWT|JWT Header|JWT Payload|JWE decryption|"crit" header/.test(message)) return { check: 'malformed', reason: `it is not a well-formed signed JWT (${clip(message, 120)})` };
  }
  return undefined;
}

function claimFailure(check: IdTokenCheck, claims: Record<string, unknown>, expected: { issuer?: string; clientId?: string }): IdTokenFailure {
  const text = (v: unknown) => JSON.stringify(typeof v === 'string' ? clip(v, 200) : Array.isArray(v) ? v.slice(0, 5).map((x) => clip(String(x), 100)) : v ?? null);
  switch (check) {
    case 'nonce': return { check, reason: 'its nonce is not the one sent with this launch (an ID token from another sign-in, or replayed)' };
    case 'iss': return { check, reason: `its issuer (iss ${text(claims.iss)}) is not the SMART configuration's issuer${expected.issuer ? ` (${text(expected.issuer)})` : ''}` };
    case 'aud': return { check, reason: `its audience (aud ${text(claims.aud)}) is not this app's client id${expected.clientId ? ` (${text(expected.clientId)})` : ''}` };
    case 'azp': return { check, reason: `its authorized party (azp ${text(claims.azp)}) is not this app's client id` };
    case 'exp': {
      const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
      return { check, reason: `it has expired${exp !== undefined ? ` (exp ${new Date(exp * 1000).toISOString()}, ${Math.round(Date.now() / 1000 - exp)} s ago)` : ''}: check the EHR's clock and ours` };
    }
    case 'nbf': return { check, reason: 'it is not valid yet (nbf in the future): check the EHR\'s clock and ours' };
    case 'iat': return { check, reason: 'its issue time (iat) is unusable' };
    case 'auth_time': return { check, reason: 'its authentication time (auth_time) is too old' };
    default: return { check, reason: 'a claim failed validation' };
  }
}
