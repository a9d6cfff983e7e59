/**
 * The sandbox's backend-services clients (client_credentials + private_key_jwt, system scopes), registered the
 * way EHR consoles do it, with no manual step on the README path:
 *
 *   sandbox-backend   its keys are the public JWKS files (`*.jwks.json`, what `smart-bff keys generate` writes)
 *                     in a keys directory (default ./keys), read at every token request: generate a key, use it
 *   registered        a JWKS pasted on the sandbox's page (or POSTed as JSON), or registered in-process by the
 *                     server for its own `sandbox` backend registration; kept in memory, at most 100
 *
 * Nobody takes over another's client: `sandbox-backend` and the interactive clients cannot be registered at all,
 * and a registered client's keys are replaced only with the registration token handed out (once) when it was
 * registered (as RFC 7592's registration_access_token; only a hash is kept, compared in constant time). The server's own registration keeps
 * its token to itself, so its keys can never be replaced from the page.
 *
 * Only public keys are ever held or served: a pasted JWKS with private members is refused; a keys-directory
 * file that has them contributes its public part only. Keys must fit SMART: RS384 (RSA ≥ 2048) or ES384 (P-384).
 */
import { createHash, randomBytes } from 'node:crypto';
import { sameSecret } from '../http/secret-compare.js';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as jose from 'jose';
import type { ClientMetadata } from 'oidc-provider';
import { PRIVATE_MEMBERS, publicOnly } from '../keys.js';

export const KEYS_DIR_CLIENT_ID = 'sandbox-backend';
const MAX_REGISTERED = 100;

export class JwksProblem extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'JwksProblem';
  }
}

/** Checks a public JWKS for SMART backend services; every problem reported. Returns the public keys. */
export function validatePublicJwks(input: unknown, opts: { allowPrivateMembers?: boolean } = {}): { keys: jose.JWK[] } {
  const problems: string[] = [];
  const keys = (input as { keys?: unknown } | null)?.keys;
  if (!input || typeof input !== 'object' || !Array.isArray(keys)) throw new JwksProblem(['not a JWK Set: expected {"keys":[…]}']);
  if (keys.length === 0) throw new JwksProblem(['the JWK Set has no keys']);
  if (keys.length > 10) problems.push('at most 10 keys');
  const out: jose.JWK[] = [];
  const kids = new Set<string>();
  keys.forEach((raw: Record<string, unknown>, i) => {
    const at = `keys[${i}]${typeof raw?.kid === 'string' ? ` (kid ${raw.kid})` : ''}`;
    if (!raw || typeof raw !== 'object') return void problems.push(`${at}: not a JWK`);
    const priv = PRIVATE_MEMBERS.filter((m) => m in raw);
    if (priv.length && !opts.allowPrivateMembers) return void problems.push(`${at}: contains private key material (${priv.join(', ')}); register the public JWKS only (the .jwks.json file), never the private key`);
    if (typeof raw.kid !== 'string' || !raw.kid) return void problems.push(`${at}: needs a kid`);
    if (kids.has(raw.kid)) return void problems.push(`${at}: duplicate kid`);
    kids.add(raw.kid);
    if (raw.kty === 'RSA') {
      if (typeof raw.n !== 'string' || typeof raw.e !== 'string') return void problems.push(`${at}: RSA key without n and e`);
      const bits = Buffer.from(raw.n, 'base64url').length * 8;
      if (bits < 2048) return void problems.push(`${at}: RSA key of ${bits} bits; SMART requires at least 2048`);
      if (raw.alg !== undefined && raw.alg !== 'RS384') return void problems.push(`${at}: alg ${String(raw.alg)}; SMART backend services sign with RS384 or ES384`);
      out.push(publicOnly({ ...(raw as jose.JWK), alg: 'RS384' }));
    } else if (raw.kty === 'EC') {
      if (raw.crv !== 'P-384' || typeof raw.x !== 'string' || typeof raw.y !== 'string') return void problems.push(`${at}: EC keys must be on P-384 (ES384) with x and y`);
      if (raw.alg !== undefined && raw.alg !== 'ES384') return void problems.push(`${at}: alg ${String(raw.alg)}; SMART backend services sign with RS384 or ES384`);
      out.push(publicOnly({ ...(raw as jose.JWK), alg: 'ES384' }));
    } else {
      problems.push(`${at}: kty ${String(raw.kty)} is not supported (RSA or EC P-384)`);
    }
  });
  if (problems.length) throw new JwksProblem(problems);
  return { keys: out };
}

export interface BackendClientSummary {
  clientId: string;
  source: 'keys-directory' | 'registered';
  keys: { kid: string; alg: string }[];
  registeredAt?: string;
}

const tokenHash = (token: string) => createHash('sha256').update(token).digest('base64url');

export class BackendClients {
  /** Registered clients, in memory: a bounded map (the oldest goes beyond MAX_REGISTERED). */
  private readonly registered = new Map<string, { keys: jose.JWK[]; registeredAt: string; tokenHash: string }>();

  constructor(private readonly o: { keysDir: string | undefined; isTaken: (clientId: string) => boolean }) {}

  get keysDir(): string | undefined {
    return this.o.keysDir;
  }

  /** The public keys in the keys directory now, and why any file there was skipped. */
  async keysDirectory(): Promise<{ keys: jose.JWK[]; problems: string[] }> {
    if (!this.o.keysDir) return { keys: [], problems: [] };
    const names = await readdir(this.o.keysDir).catch(() => [] as string[]);
    const keys: jose.JWK[] = [];
    const problems: string[] = [];
    for (const name of names.filter((n) => n.endsWith('.jwks.json')).sort()) {
      try {
        for (const k of validatePublicJwks(JSON.parse(await readFile(join(this.o.keysDir, name), 'utf8')), { allowPrivateMembers: true }).keys) {
          if (!keys.some((x) => x.kid === k.kid)) keys.push(k);
        }
      } catch (err) {
        problems.push(`${name}: ${(err as Error).message}`);
      }
    }
    return { keys, problems };
  }

  /**
   * Registers a client with a public JWKS; a client id is made up when none is given. The registration token it
   * returns is the only way to replace the client's keys later (`registrationToken`); it is not kept, only its hash.
   */
  register(input: { clientId?: string | undefined; jwks: unknown; registrationToken?: string | undefined }): { clientId: string; registrationToken: string; replaced: boolean } {
    const { keys } = validatePublicJwks(input.jwks);
    const clientId = input.clientId?.trim() || `backend-${randomBytes(6).toString('hex')}`;
    if (!/^[A-Za-z0-9._-]{3,64}$/.test(clientId)) throw new JwksProblem(['client id: 3 to 64 letters, digits, ".", "_" or "-"']);
    if (clientId === KEYS_DIR_CLIENT_ID || this.o.isTaken(clientId)) throw new JwksProblem([`client id ${clientId} is taken`]);
    const existing = this.registered.get(clientId);
    if (existing) {
      const given = input.registrationToken?.trim();
      if (!given) throw new JwksProblem([`client id ${clientId} is registered already: choose another id, or, to replace its keys, give the registration token you received when you registered it`]);
      if (!sameSecret(tokenHash(given), existing.tokenHash)) throw new JwksProblem([`the registration token does not match client id ${clientId}: its keys are unchanged`]);
      this.registered.delete(clientId);
      this.registered.set(clientId, { ...existing, keys, registeredAt: new Date().toISOString() });
      return { clientId, registrationToken: given, replaced: true };
    }
    const registrationToken = randomBytes(24).toString('base64url');
    this.registered.set(clientId, { keys, registeredAt: new Date().toISOString(), tokenHash: tokenHash(registrationToken) });
    while (this.registered.size > MAX_REGISTERED) this.registered.delete(this.registered.keys().next().value!);
    return { clientId, registrationToken, replaced: false };
  }

  /** oidc-provider client metadata, built at request time (so a key generated a second ago is known). */
  async metadataFor(clientId: string): Promise<ClientMetadata | undefined> {
    const keys = clientId === KEYS_DIR_CLIENT_ID && this.o.keysDir ? (await this.keysDirectory()).keys : this.registered.get(clientId)?.keys;
    if (!keys) return undefined;
    return {
      client_id: clientId, token_endpoint_auth_method: 'private_key_jwt', jwks: { keys } as unknown as ClientMetadata['jwks'],
      grant_types: ['client_credentials'], response_types: [], redirect_uris: [],
    } as ClientMetadata;
  }

  async list(): Promise<BackendClientSummary[]> {
    const out: BackendClientSummary[] = [];
    const describe = (keys: jose.JWK[]) => keys.map((k) => ({ kid: String(k.kid), alg: String(k.alg) }));
    if (this.o.keysDir) out.push({ clientId: KEYS_DIR_CLIENT_ID, source: 'keys-directory', keys: describe((await this.keysDirectory()).keys) });
    for (const [clientId, r] of this.registered) out.push({ clientId, source: 'registered', keys: describe(r.keys), registeredAt: r.registeredAt });
    return out;
  }

  /** Why a kid is not accepted for a client of ours, for the token endpoint's error_description; undefined when it is known. */
  async unknownKid(clientId: string, kid: string | undefined): Promise<string | undefined> {
    const metadata = await this.metadataFor(clientId);
    if (!metadata) return undefined;
    const kids = (metadata.jwks?.keys ?? []).map((k) => String((k as { kid?: string }).kid));
    if (kid && kids.includes(kid)) return undefined;
    const where = clientId === KEYS_DIR_CLIENT_ID ? `the public keys in ${this.o.keysDir}` : `the JWKS registered for ${clientId}`;
    const fix = clientId === KEYS_DIR_CLIENT_ID ? ` Run \`npx smart-bff keys generate --out ${this.o.keysDir}\` and sign with the key it writes there.` : '';
    return `The assertion's kid ${kid ?? '(none)'} is not among ${where} (${kids.length ? kids.join(', ') : 'none'}).${fix}`;
  }
}
