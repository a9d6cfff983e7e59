/**
 * Backend services configuration (part of the one startup validation in config.ts): the registrations used
 * for system tokens and Bulk Data exports, the keys published in the JWKS, and the operators' HTTP API.
 *
 *   SMART_BACKEND_ISS, SMART_BACKEND_CLIENT_ID, SMART_BACKEND_KEY_FILE (or SMART_BACKEND_PRIVATE_KEY),
 *   SMART_BACKEND_KEY_ID, SMART_BACKEND_SCOPE, SMART_BACKEND_JKU   one registration, named "default"
 *   BACKEND_CONFIG_FILE   a JSON file with several: {"registrations":[{"name","iss","clientId","privateKeyFile",…}]}
 *   JWKS_EXTRA_KEYS_FILE  public keys to publish besides the signing keys (rotation: the next key, retired keys)
 *   ADMIN_TOKEN           enables /api/bulk-data (bearer token, 24+ characters) and the operator console /admin;
 *                         off when unset
 *   BULK_DATA_DIR         where export jobs and their files are kept (default ./bulk-data, or the OS temp
 *                         directory when the working directory is read-only, as on App Engine)
 *   BULK_DATA_TRUSTED_ORIGINS  origins besides each FHIR server's own that may receive its access token (a file
 *                         host of the FHIR server), comma-separated; a registration in BACKEND_CONFIG_FILE may add
 *                         its own `trustedOrigins`
 */
import { existsSync, mkdtempSync, readFileSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type * as jose from 'jose';
import { z } from 'zod';
import { parsePrivateKey, type ClientKey } from '../keys.js';
import { parseTrustedOrigins } from './token-origins.js';
import { readRegistrationsFile } from '../registrations-file.js';

export interface BackendRegistration {
  readonly name: string;
  readonly iss: string;
  readonly clientId: string;
  readonly key: ClientKey;
  readonly scope: string;
  readonly jku?: string;
  /** Origins besides the FHIR server's that may receive this registration's access token (file hosts). */
  readonly trustedOrigins: readonly string[];
}

export interface BackendConfig {
  readonly registrations: readonly BackendRegistration[];
  /** Extra public keys published in the JWKS (rotation). */
  readonly extraPublicKeys: readonly jose.JWK[];
  readonly adminToken: string | undefined;
  readonly bulkDataDir: string;
  /** BULK_DATA_TRUSTED_ORIGINS: trusted by every registration. */
  readonly trustedOrigins: readonly string[];
  /** Where bulkDataDir comes from: BULK_DATA_DIR, ./bulk-data in the working directory, or the OS temp directory. */
  readonly bulkDataDirSource: 'BULK_DATA_DIR' | 'cwd' | 'tmp';
  /** BULK_DATA_LEASE_SECONDS: how long an instance's hold on an export job lasts unrenewed (with Redis). */
  readonly jobLeaseSeconds: number;
}

const entry = z.object({
  name: z.string().min(1),
  iss: z.string().min(1),
  clientId: z.string().min(1),
  privateKeyFile: z.string().min(1).optional(),
  privateKeyEnv: z.string().min(1).optional(),
  keyId: z.string().min(1).optional(),
  scope: z.string().min(1).optional(),
  jku: z.string().min(1).optional(),
  trustedOrigins: z.array(z.string().min(1)).optional(),
});

export async function loadBackendConfig(env: NodeJS.ProcessEnv, problems: string[], opts: { isProduction: boolean; allowInsecureHttp: boolean; sandbox?: boolean }): Promise<BackendConfig> {
  const insecureOk = opts.allowInsecureHttp && !opts.isProduction;
  const trusted = parseTrustedOrigins([env.BULK_DATA_TRUSTED_ORIGINS ?? ''], insecureOk);
  for (const p of trusted.problems) problems.push(`BULK_DATA_TRUSTED_ORIGINS: ${p}`);
  type Entry = z.infer<typeof entry> & { privateKeyText?: string; where: string };
  const entries: Entry[] = [];
  if (env.BACKEND_CONFIG_FILE) {
    readRegistrationsFile('BACKEND_CONFIG_FILE', env.BACKEND_CONFIG_FILE, entry, problems)
      .forEach((r, i) => entries.push({ ...r, where: `BACKEND_CONFIG_FILE registrations[${i}]` }));
  } else if (env.SMART_BACKEND_ISS || env.SMART_BACKEND_CLIENT_ID) {
    if (!env.SMART_BACKEND_ISS) problems.push('SMART_BACKEND_ISS: required with SMART_BACKEND_CLIENT_ID (the FHIR base URL for system tokens and exports)');
    if (!env.SMART_BACKEND_CLIENT_ID) problems.push('SMART_BACKEND_CLIENT_ID: required with SMART_BACKEND_ISS');
    if (!env.SMART_BACKEND_KEY_FILE && !env.SMART_BACKEND_PRIVATE_KEY) problems.push('SMART_BACKEND_KEY_FILE: required (the private key registered for backend services; `smart-bff keys generate` makes one)');
    if (env.SMART_BACKEND_ISS && env.SMART_BACKEND_CLIENT_ID) {
      entries.push({
        name: 'default', iss: env.SMART_BACKEND_ISS, clientId: env.SMART_BACKEND_CLIENT_ID, where: 'SMART_BACKEND_*',
        ...(env.SMART_BACKEND_KEY_FILE ? { privateKeyFile: env.SMART_BACKEND_KEY_FILE } : {}),
        ...(env.SMART_BACKEND_PRIVATE_KEY ? { privateKeyText: env.SMART_BACKEND_PRIVATE_KEY } : {}),
        ...(env.SMART_BACKEND_KEY_ID ? { keyId: env.SMART_BACKEND_KEY_ID } : {}),
        ...(env.SMART_BACKEND_SCOPE ? { scope: env.SMART_BACKEND_SCOPE } : {}),
        ...(env.SMART_BACKEND_JKU ? { jku: env.SMART_BACKEND_JKU } : {}),
      });
    }
  }

  const registrations: BackendRegistration[] = [];
  for (const e of entries) {
    // Every problem of an entry is reported (its URLs, its key), and an entry with any is left out.
    const urlProblems = [
      backendUrlProblem(e.where === 'SMART_BACKEND_*' ? 'SMART_BACKEND_ISS' : `${e.where}.iss`, e.iss, { ...opts, base: true }),
      e.jku === undefined ? undefined : backendUrlProblem(e.where === 'SMART_BACKEND_*' ? 'SMART_BACKEND_JKU' : `${e.where}.jku`, e.jku, opts),
    ].filter((p): p is string => p !== undefined);
    problems.push(...urlProblems);
    let text = e.privateKeyText;
    const source = e.privateKeyFile ? `${e.where} key file ${e.privateKeyFile}` : e.privateKeyEnv ?? e.where;
    if (e.privateKeyFile) {
      try {
        text = readFileSync(e.privateKeyFile, 'utf8');
      } catch (err) {
        problems.push(`${source}: cannot read (${(err as NodeJS.ErrnoException).code})`);
        continue;
      }
    } else if (e.privateKeyEnv) {
      text = env[e.privateKeyEnv];
      if (!text) problems.push(`${e.where}.privateKeyEnv: ${e.privateKeyEnv} is not set`);
    }
    const own = parseTrustedOrigins(e.trustedOrigins ?? [], insecureOk);
    for (const p of own.problems) problems.push(`${e.where}.trustedOrigins: ${p}`);
    const trustedOrigins = Object.freeze([...new Set([...trusted.origins, ...own.origins])]);
    if (!text || urlProblems.length) continue;
    try {
      const key = await parsePrivateKey(text, e.keyId);
      registrations.push(Object.freeze({ name: e.name, iss: e.iss, clientId: e.clientId, key, scope: e.scope ?? 'system/*.rs', ...(e.jku ? { jku: e.jku } : {}), trustedOrigins }));
    } catch (err) {
      problems.push(`${source}: ${(err as Error).message}`);
    }
  }

  const extraPublicKeys: jose.JWK[] = [];
  if (env.JWKS_EXTRA_KEYS_FILE) {
    try {
      const jwks = JSON.parse(readFileSync(env.JWKS_EXTRA_KEYS_FILE, 'utf8')) as { keys?: jose.JWK[] };
      if (!Array.isArray(jwks.keys)) throw new Error('not a JWKS ({"keys":[…]})');
      for (const k of jwks.keys) {
        if (k.kty === 'RSA' && Buffer.from(String(k.n ?? ''), 'base64url').length * 8 < 2048) throw new Error(`key ${k.kid}: RSA keys must have at least 2048 bits`);
        if (k.kty === 'EC' && k.crv !== 'P-384') throw new Error(`key ${k.kid}: EC keys must be on P-384 (ES384)`);
        if (k.kty !== 'RSA' && k.kty !== 'EC') throw new Error(`key ${k.kid}: kty ${k.kty} is not supported`);
        if (!k.kid) throw new Error('every key needs a kid');
        extraPublicKeys.push(k);
      }
    } catch (err) {
      problems.push(`JWKS_EXTRA_KEYS_FILE: ${(err as Error).message}`);
    }
  }

  const adminToken = env.ADMIN_TOKEN || undefined;
  if (adminToken && adminToken.length < 24) problems.push('ADMIN_TOKEN: use at least 24 random characters (`openssl rand -base64 32`)');
  // ADMIN_TOKEN alone is enough for the operator console's launch trace; exports need a backend registration, and
  // the console and the API say so. With the sandbox (development), the server adds a registration for it at
  // startup (sandbox/backend-registration.ts).
  return Object.freeze({
    registrations: Object.freeze(registrations),
    extraPublicKeys: Object.freeze(extraPublicKeys),
    adminToken,
    ...chooseBulkDataDir(env.BULK_DATA_DIR),
    trustedOrigins: Object.freeze(trusted.origins),
    jobLeaseSeconds: leaseSeconds(env.BULK_DATA_LEASE_SECONDS, problems),
  });
}

function leaseSeconds(value: string | undefined, problems: string[]): number {
  if (value === undefined || value.trim() === '') return 30;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 1 || n > 3600) {
    problems.push(`BULK_DATA_LEASE_SECONDS: expected a number of seconds from 1 to 3600, got ${JSON.stringify(value)}`);
    return 30;
  }
  return n;
}

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])$/i;

/**
 * A backend-services URL setting (SMART_BACKEND_ISS, SMART_BACKEND_JKU, their BACKEND_CONFIG_FILE fields), checked
 * at startup: an absolute http(s) URL without credentials or fragment (a FHIR base URL without a query either),
 * https, or http outside production for a loopback host (a local FHIR server) or with ALLOW_INSECURE_HTTP=1.
 */
export function backendUrlProblem(name: string, value: string, opts: { isProduction: boolean; allowInsecureHttp: boolean; base?: boolean }): string | undefined {
  let u: URL;
  try {
    u = new URL(value.trim());
  } catch {
    return `${name}: not a URL: ${JSON.stringify(value)} (expected an absolute URL such as https://fhir.example.org/r4)`;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return `${name}: not an http(s) URL: ${JSON.stringify(value)}`;
  if (u.username || u.password) return `${name}: a URL with credentials in it is refused (${u.origin}${u.pathname})`;
  if (u.hash || (opts.base && u.search)) return `${name}: ${opts.base ? 'a FHIR base URL has no query or fragment' : 'a URL with a fragment'}: ${JSON.stringify(value)}`;
  if (u.protocol === 'http:') {
    if (opts.isProduction) return `${name}: ${value} is not https (http is never accepted in production)`;
    if (!LOOPBACK.test(u.hostname) && !opts.allowInsecureHttp) {
      return `${name}: ${value} is not https (http is accepted in development for a loopback host, or with ALLOW_INSECURE_HTTP=1)`;
    }
  }
  return undefined;
}

/**
 * BULK_DATA_DIR when set; otherwise ./bulk-data when this process can write there, else
 * <OS temp dir>/smart-bff-bulk-data (App Engine standard: the application directory is read-only, /tmp is
 * writable, in memory and per instance).
 */
export function chooseBulkDataDir(explicit: string | undefined, cwd = process.cwd()): Pick<BackendConfig, 'bulkDataDir' | 'bulkDataDirSource'> {
  if (explicit) return { bulkDataDir: resolve(cwd, explicit), bulkDataDirSource: 'BULK_DATA_DIR' };
  const local = resolve(cwd, 'bulk-data');
  if (canCreateFilesIn(existsSync(local) ? local : cwd)) return { bulkDataDir: local, bulkDataDirSource: 'cwd' };
  return { bulkDataDir: join(tmpdir(), 'smart-bff-bulk-data'), bulkDataDirSource: 'tmp' };
}

/**
 * Tries to create (and removes) an entry in `dir`: the only answer that holds everywhere. access(W_OK) works
 * from permission bits, which always say yes to root, and can disagree with what the file system then allows.
 */
function canCreateFilesIn(dir: string): boolean {
  try {
    rmdirSync(mkdtempSync(join(dir, '.smart-bff-write-test-')));
    return true;
  } catch {
    return false;
  }
}
