/**
 * Configuration: read from the environment (and SMART_CONFIG_FILE) once at startup, validated, frozen.
 * Every problem is reported together with the variable's name. There is no default secret, ever.
 * Every variable is declared, with its default and documentation, in env-schema.ts (docs/configuration.md and
 * .env.example are generated from it).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { isIP } from 'node:net';
import { randomBytes, X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { splitScopes } from './oauth-scope.js';
import { parsePrivateKey, type ClientKey } from './keys.js';
import { loadBackendConfig, type BackendConfig } from './backend-services/config.js';
import { envSchema } from './env-schema.js';
import { readRegistrationsFile } from './registrations-file.js';

export type ClientType = 'public' | 'confidential-symmetric' | 'confidential-asymmetric';
/** client_secret_basic: `form` encodes `%`, `+`, `:`, spaces and non-ASCII before Base64; `raw` sends `id:secret` as is (smart/client-auth.ts). */
export type ClientAuthEncoding = 'form' | 'raw';
export interface Registration {
  /** A short name for logs and for choosing a registration (`/login?registration=`). */
  readonly name: string;
  /** Allowed FHIR base URLs (`iss`). A trailing `*` matches one path segment (multi-tenant EHRs). */
  readonly iss: readonly string[];
  readonly clientId: string;
  readonly clientType: ClientType;
  readonly clientSecret?: string;
  readonly clientSecretMethod?: 'client_secret_basic' | 'client_secret_post';
  /** client_secret_basic only (default `form`). */
  readonly clientAuthEncoding?: ClientAuthEncoding;
  /** Where it was configured: the SMART_* variables or an entry of SMART_CONFIG_FILE (to name its settings in messages). */
  readonly configuredIn?: 'env' | 'file';
  readonly key?: ClientKey;
  /** Scopes for an EHR launch (`launch` is added when missing). */
  readonly scope: string;
  /** Scopes for a standalone launch (`launch/patient` is added when missing and patient scopes are asked for). */
  readonly standaloneScope: string;
}

export interface Config {
  readonly nodeEnv: string;
  readonly isProduction: boolean;
  readonly port: number;
  readonly host: string;
  /** External origin, no trailing slash. */
  readonly publicUrl: string;
  /** Exactly PUBLIC_URL + '/callback'. */
  readonly redirectUri: string;
  readonly sessionSecret: string;
  /** True when SESSION_SECRET was not set and a random one was made for this process (development only). */
  readonly sessionSecretEphemeral: boolean;
  readonly registrations: readonly Registration[];
  /** The built-in development EHR is served under /sandbox (never in production). */
  readonly sandbox: boolean;
  /** SANDBOX_KEYS_DIR: the public JWKS files there are the keys of the sandbox's system client `sandbox-backend`. */
  readonly sandboxKeysDir: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  readonly discoveryTtlSeconds: number;
  /** Issuers whose SMART configuration is cached (LRU). */
  readonly discoveryCacheMax: number;
  /** Issuers never discovered before that launches through a wildcard of the allow-list may discover per minute. */
  readonly discoveryNewPerMinute: number;
  readonly httpTimeoutMs: number;
  /** Allow http:// EHR endpoints (development against a local EHR only; refused in production). */
  readonly allowInsecureHttp: boolean;
  readonly trustProxy: boolean | number | string;
  readonly transactionTtlSeconds: number;
  /** Pending launches kept in memory (without Redis): an LRU of this many, apart from sessions. */
  readonly maxPendingLaunches: number;
  readonly maxContextsPerSession: number;
  /** FHIR proxy: time to wait for upstream response headers before answering 504 (below Heroku's 30 s). */
  readonly proxyTimeoutMs: number;
  /** FHIR proxy: largest request body forwarded (413 beyond). */
  readonly proxyMaxBodyBytes: number;
  /** FHIR proxy: rewrite upstream absolute URLs in bodies and Location headers to the proxy's URL. */
  readonly proxyRewriteLinks: boolean;
  /** Refresh an access token this many seconds before it expires. */
  readonly tokenRefreshSkewSeconds: number;
  /** Shared session and token store for several instances; without it, a bounded in-memory store. */
  readonly redisUrl: string | undefined;
  /** How to reach Redis (TLS, timeouts), when REDIS_URL is set. */
  readonly redis: RedisSettings | undefined;
  /** SINGLE_INSTANCE: the operator declares that one instance runs, so the in-memory store is deliberate. */
  readonly singleInstance: boolean;
  /** `default`: SameSite=Lax. `embedded`: SameSite=None; Secure; Partitioned, for EHRs that show the app in a cross-site iframe. */
  readonly cookieMode: 'default' | 'embedded';
  /** CSP frame-ancestors for our pages (who may embed the app). */
  readonly frameAncestors: readonly string[];
  /** Session idle timeout (no request for this long ends it) and absolute timeout, in seconds. */
  readonly sessionIdleSeconds: number;
  readonly sessionAbsoluteSeconds: number;
  /** Launch/login/callback requests per IP per minute. */
  readonly launchRateLimitPerMinute: number;
  /** /metrics is served only when set, and only with `Authorization: Bearer <token>`. */
  readonly metricsToken: string | undefined;
  /** HEAP_KEEP_WARM: server.ts starts the idle heap warmer (src/idle-heap-warmer.ts). */
  readonly heapKeepWarm: boolean;
  /** SMART Backend Services: registrations, JWKS keys, the operators' bulk-data API (and ADMIN_TOKEN). */
  readonly backend: BackendConfig;
  /** The operator console (with ADMIN_TOKEN): an operator's sign-in ends after this long without a request. */
  readonly adminSessionIdleSeconds: number;
  /** Launches the trace page keeps. */
  readonly launchTraceSize: number;
  readonly warnings: readonly string[];
}

export interface RedisSettings {
  /** REDIS_URL (may hold a password: never logged). */
  readonly url: string;
  /** rediss:// */
  readonly tls: boolean;
  /** Verify the server's certificate (REDIS_TLS_REJECT_UNAUTHORIZED). */
  readonly rejectUnauthorized: boolean;
  /** PEM CA certificate(s) from REDIS_TLS_CA_FILE: the only CAs trusted when set. */
  readonly ca?: string;
  readonly caFile?: string;
  /** SNI and the name checked against the certificate: REDIS_TLS_SERVERNAME, else the URL's host name. */
  readonly servername?: string;
  readonly connectTimeoutMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export const DEFAULT_SCOPE = 'openid fhirUser online_access patient/*.rs';

const registrationFileSchema = z.object({
  name: z.string().min(1).optional(),
  iss: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  clientId: z.string().min(1),
  clientType: z.enum(['public', 'confidential-symmetric', 'confidential-asymmetric']).optional(),
  clientSecret: z.string().min(1).optional(),
  clientSecretEnv: z.string().min(1).optional(),
  clientAuthMethod: z.enum(['client_secret_basic', 'client_secret_post']).optional(),
  clientAuthEncoding: z.enum(['form', 'raw']).optional(),
  privateKey: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional(),
  privateKeyFile: z.string().min(1).optional(),
  privateKeyEnv: z.string().min(1).optional(),
  keyId: z.string().min(1).optional(),
  scope: z.string().min(1).optional(),
  standaloneScope: z.string().min(1).optional(),
});
type RegistrationInput = z.infer<typeof registrationFileSchema>;

type EnvValues = z.infer<typeof envSchema>;

/**
 * The environment through the schema, variable by variable, so that one bad value does not hide the others: each
 * value the schema refuses is a problem, and the checks after this one see that variable's default instead (they
 * run whatever happened here, and their problems are reported with these).
 */
function parseEnv(env: NodeJS.ProcessEnv, problems: string[]): { values: EnvValues; invalid: Set<string> } {
  const values: Record<string, unknown> = {};
  const invalid = new Set<string>();
  for (const [name, schema] of Object.entries(envSchema.shape) as [string, z.ZodType][]) {
    // An empty NODE_ENV (`NODE_ENV=` in an env file) is unset, as it always was.
    const raw = name === 'NODE_ENV' && env[name] === '' ? undefined : env[name];
    const parsed = schema.safeParse(raw);
    if (parsed.success) {
      values[name] = parsed.data;
      continue;
    }
    invalid.add(name);
    const secret = (schema.meta() as { secret?: boolean } | undefined)?.secret === true;
    const got = secret ? '' : ` (got ${JSON.stringify(raw !== undefined && raw.length > 60 ? `${raw.slice(0, 60)}…` : raw)})`;
    for (const issue of parsed.error.issues) {
      const message = issue.code === 'invalid_type' && issue.expected === 'number' ? 'not a number' : issue.message;
      problems.push(`${name}: ${message}${got}`);
    }
    values[name] = schema.parse(undefined);
  }
  return { values: values as EnvValues, invalid };
}

/**
 * Parses and validates the environment. Throws ConfigError listing every problem at once: the values the schema
 * refuses (`PORT=abc`) together with what the checks that follow find (an http PUBLIC_URL in production).
 */
export async function loadConfig(env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const { values: e, invalid } = parseEnv(env, problems);
  // An unknown NODE_ENV (`prod`) is refused; the rest is checked as for production, the strictest reading of it.
  const isProduction = e.NODE_ENV === 'production' || invalid.has('NODE_ENV');
  if (invalid.has('NODE_ENV')) {
    const i = problems.findIndex((p) => p.startsWith('NODE_ENV:'));
    problems[i] += '; the rest of the configuration was checked as for production';
  }

  // PUBLIC_URL: the external origin. Redirect URI is built from it, never from request headers.
  let publicUrl = '';
  if (!e.PUBLIC_URL) {
    if (isProduction) problems.push('PUBLIC_URL: required in production (the external https origin, e.g. https://myapp.herokuapp.com)');
    else publicUrl = `http://localhost:${e.PORT}`;
  } else {
    const u = safeUrl(e.PUBLIC_URL);
    if (!u || !/^https?:$/.test(u.protocol)) problems.push(`PUBLIC_URL: not an http(s) URL: ${JSON.stringify(e.PUBLIC_URL)}`);
    else if (u.search || u.hash || u.username || u.password) problems.push('PUBLIC_URL: must be an origin (and optional path) without query, fragment or credentials');
    else {
      if (isProduction && u.protocol !== 'https:') problems.push('PUBLIC_URL: must be https in production (NODE_ENV=production)');
      publicUrl = u.href.replace(/\/+$/, '');
    }
  }

  // SESSION_SECRET: required and strong in production; in development a random per-process secret is made.
  let sessionSecret = e.SESSION_SECRET ?? '';
  let sessionSecretEphemeral = false;
  if (!sessionSecret) {
    if (isProduction) problems.push('SESSION_SECRET: required in production (at least 32 random characters; e.g. `openssl rand -base64 48`)');
    else {
      sessionSecret = randomBytes(32).toString('base64url');
      sessionSecretEphemeral = true;
      warnings.push('SESSION_SECRET is not set: using a random secret for this process only (sessions end when it restarts). Set SESSION_SECRET to keep them.');
    }
  } else if (weakSecret(sessionSecret)) {
    const msg = 'SESSION_SECRET: too weak (use at least 32 characters with at least 10 distinct ones, not a placeholder; e.g. `openssl rand -base64 48`)';
    if (isProduction) problems.push(msg);
    else warnings.push(msg);
  }

  const allowInsecureHttp = e.ALLOW_INSECURE_HTTP;
  if (isProduction && allowInsecureHttp) problems.push('ALLOW_INSECURE_HTTP: not allowed in production');

  // Registrations: SMART_CONFIG_FILE, or the SMART_* variables.
  const inputs: RegistrationInput[] = [];
  if (e.SMART_CONFIG_FILE) {
    if (e.SMART_ISS || e.SMART_CLIENT_ID) warnings.push('SMART_CONFIG_FILE is set: SMART_ISS and SMART_CLIENT_ID are ignored');
    inputs.push(...readRegistrationsFile('SMART_CONFIG_FILE', e.SMART_CONFIG_FILE, registrationFileSchema, problems));
  } else if (e.SMART_ISS || e.SMART_CLIENT_ID) {
    if (!e.SMART_ISS) problems.push('SMART_ISS: required when SMART_CLIENT_ID is set (the FHIR base URL(s) you accept launches from, comma-separated)');
    if (!e.SMART_CLIENT_ID) problems.push('SMART_CLIENT_ID: required when SMART_ISS is set (the client id the EHR gave you)');
    if (e.SMART_PRIVATE_KEY && e.SMART_PRIVATE_KEY_FILE) problems.push('SMART_PRIVATE_KEY and SMART_PRIVATE_KEY_FILE: set one, not both');
    if (e.SMART_ISS && e.SMART_CLIENT_ID) {
      inputs.push({
        name: 'default',
        iss: e.SMART_ISS.split(',').map((s) => s.trim()).filter(Boolean),
        clientId: e.SMART_CLIENT_ID,
        clientSecret: e.SMART_CLIENT_SECRET,
        clientAuthMethod: e.SMART_CLIENT_AUTH_METHOD,
        clientAuthEncoding: e.SMART_CLIENT_AUTH_ENCODING,
        privateKey: e.SMART_PRIVATE_KEY,
        privateKeyFile: e.SMART_PRIVATE_KEY_FILE,
        keyId: e.SMART_KEY_ID,
        scope: e.SMART_SCOPE,
        standaloneScope: e.SMART_STANDALONE_SCOPE,
      });
    }
  }

  const sandbox = e.SANDBOX === 'on' || (e.SANDBOX === 'auto' && inputs.length === 0 && !isProduction && problems.length === 0);
  if (isProduction && e.SANDBOX === 'on') problems.push('SANDBOX: the development EHR cannot be enabled in production');
  if (!sandbox && inputs.length === 0 && !problems.some((p) => p.startsWith('SMART_'))) {
    problems.push('SMART_ISS and SMART_CLIENT_ID (or SMART_CONFIG_FILE): no EHR registration configured' + (isProduction ? '' : ' (or leave them unset to use the built-in sandbox EHR)'));
  }

  const registrations: Registration[] = [];
  const seenNames = new Set<string>();
  for (const [i, input] of inputs.entries()) {
    const where = e.SMART_CONFIG_FILE ? `SMART_CONFIG_FILE registrations[${i}]` : 'SMART_*';
    const reg = await buildRegistration(input, i, where, env, { isProduction, allowInsecureHttp }, problems, warnings);
    if (reg) {
      if (seenNames.has(reg.name)) problems.push(`${where}: duplicate registration name ${JSON.stringify(reg.name)}`);
      seenNames.add(reg.name);
      registrations.push(reg);
    }
  }

  // Heroku (DYNO) and App Engine (GAE_SERVICE) put one TLS-terminating router in front of the app.
  let trustProxy: boolean | number | string = e.DYNO || e.GAE_SERVICE ? 1 : false;
  if (e.TRUST_PROXY !== undefined && e.TRUST_PROXY !== '') {
    if (/^\d+$/.test(e.TRUST_PROXY)) trustProxy = Number(e.TRUST_PROXY);
    else if (e.TRUST_PROXY === 'true') trustProxy = true;
    else if (e.TRUST_PROXY === 'false') trustProxy = false;
    else trustProxy = e.TRUST_PROXY;
  }

  const redis = redisSettings(e, env, isProduction, problems, warnings);
  if (e.SINGLE_INSTANCE && redis) warnings.push('SINGLE_INSTANCE is set but so is REDIS_URL: sessions are kept in Redis (SINGLE_INSTANCE only matters without it)');
  if (e.COOKIE_MODE === 'embedded' && !publicUrl.startsWith('https:') && isProduction) {
    problems.push('COOKIE_MODE: embedded needs an https PUBLIC_URL (SameSite=None cookies must be Secure)');
  }
  if (e.METRICS_TOKEN !== undefined && e.METRICS_TOKEN.length < 16) problems.push('METRICS_TOKEN: use at least 16 random characters');
  const frameAncestors = e.FRAME_ANCESTORS
    ? e.FRAME_ANCESTORS.split(/[\s,]+/).filter(Boolean)
    : e.COOKIE_MODE === 'embedded' ? ['*'] : ["'self'"];
  for (const fa of frameAncestors) {
    if (!/^('self'|'none'|\*|https?:\/\/[^\s;,']+)$/.test(fa)) problems.push(`FRAME_ANCESTORS: not a CSP source: ${JSON.stringify(fa)} (use origins like https://ehr.example.com, or 'self')`);
  }
  const backend = await loadBackendConfig(env, problems, { isProduction, allowInsecureHttp, sandbox });
  const proxyMaxBodyBytes = parseBytes(e.FHIR_PROXY_MAX_BODY);
  if (proxyMaxBodyBytes === undefined) problems.push(`FHIR_PROXY_MAX_BODY: not a size: ${JSON.stringify(e.FHIR_PROXY_MAX_BODY)} (e.g. 10mb, 512kb, 1048576)`);

  if (problems.length) throw new ConfigError(problems);

  return Object.freeze({
    nodeEnv: e.NODE_ENV,
    isProduction,
    port: e.PORT,
    host: e.HOST,
    publicUrl,
    redirectUri: `${publicUrl}/callback`,
    sessionSecret,
    sessionSecretEphemeral,
    registrations: Object.freeze(registrations),
    sandbox,
    sandboxKeysDir: resolve(e.SANDBOX_KEYS_DIR),
    logLevel: e.LOG_LEVEL,
    discoveryTtlSeconds: e.SMART_DISCOVERY_TTL,
    discoveryCacheMax: e.SMART_DISCOVERY_CACHE_MAX,
    discoveryNewPerMinute: e.SMART_DISCOVERY_NEW_PER_MINUTE,
    httpTimeoutMs: e.SMART_HTTP_TIMEOUT_MS,
    allowInsecureHttp: allowInsecureHttp || sandbox,
    trustProxy,
    transactionTtlSeconds: e.LAUNCH_TTL_SECONDS,
    maxPendingLaunches: e.MAX_PENDING_LAUNCHES,
    maxContextsPerSession: e.MAX_CONTEXTS_PER_SESSION,
    proxyTimeoutMs: e.FHIR_PROXY_TIMEOUT_MS,
    proxyMaxBodyBytes: proxyMaxBodyBytes!,
    proxyRewriteLinks: e.FHIR_PROXY_REWRITE_LINKS,
    tokenRefreshSkewSeconds: e.TOKEN_REFRESH_SKEW_SECONDS,
    redisUrl: redis?.url,
    redis,
    singleInstance: e.SINGLE_INSTANCE,
    cookieMode: e.COOKIE_MODE,
    frameAncestors: Object.freeze(frameAncestors),
    sessionIdleSeconds: Math.round(e.SESSION_IDLE_MINUTES * 60),
    sessionAbsoluteSeconds: Math.round(e.SESSION_MAX_HOURS * 3600),
    launchRateLimitPerMinute: e.LAUNCH_RATE_LIMIT,
    metricsToken: e.METRICS_TOKEN || undefined,
    heapKeepWarm: e.HEAP_KEEP_WARM,
    backend,
    adminSessionIdleSeconds: Math.max(1, Math.round(e.ADMIN_SESSION_IDLE_MINUTES * 60)),
    launchTraceSize: e.LAUNCH_TRACE_SIZE,
    warnings: Object.freeze(warnings),
  });
}

/**
 * REDIS_URL and its TLS settings. rediss:// is TLS; REDIS_TLS_REJECT_UNAUTHORIZED=false (Heroku Redis's
 * self-signed certificate) or REDIS_TLS_CA_FILE (Memorystore's server CA) say how the certificate is checked.
 * The CA file is read and parsed here, so a wrong path or a file that is not a certificate stops startup.
 */
function redisSettings(e: z.infer<typeof envSchema>, env: NodeJS.ProcessEnv, isProduction: boolean, problems: string[], warnings: string[]): RedisSettings | undefined {
  const tlsVars = (['REDIS_TLS_REJECT_UNAUTHORIZED', 'REDIS_TLS_CA_FILE', 'REDIS_TLS_SERVERNAME'] as const).filter((k) => env[k] !== undefined && env[k] !== '');
  if (!e.REDIS_URL) {
    if (tlsVars.length) warnings.push(`${tlsVars.join(', ')}: ignored without REDIS_URL`);
    return undefined;
  }
  const u = safeUrl(e.REDIS_URL);
  // never echo the URL: it usually carries the password
  if (!u || !/^rediss?:$/.test(u.protocol)) {
    problems.push('REDIS_URL: must be a redis:// or rediss:// URL (e.g. rediss://:password@host:6380)');
    return undefined;
  }
  if (!u.hostname) problems.push('REDIS_URL: has no host name');
  const tls = u.protocol === 'rediss:';
  const rejectUnauthorized = e.REDIS_TLS_REJECT_UNAUTHORIZED;
  let ca: string | undefined;
  if (e.REDIS_TLS_CA_FILE) {
    ca = readCaFile(e.REDIS_TLS_CA_FILE, problems, warnings);
    if (!tls) problems.push('REDIS_TLS_CA_FILE: REDIS_URL is redis:// (no TLS), so the CA would not be used; use rediss:// to connect with TLS');
    if (!rejectUnauthorized) problems.push('REDIS_TLS_CA_FILE and REDIS_TLS_REJECT_UNAUTHORIZED=false: set one (a CA file to verify the certificate, or no verification), not both');
  }
  if (!tls && tlsVars.length && !e.REDIS_TLS_CA_FILE) warnings.push(`${tlsVars.join(', ')}: ignored, REDIS_URL is redis:// (no TLS)`);
  if (tls && !rejectUnauthorized && !e.REDIS_TLS_CA_FILE) {
    const msg = "REDIS_TLS_REJECT_UNAUTHORIZED=false: the Redis server's TLS certificate is NOT verified. The connection is encrypted, but anything that can intercept it can pose as Redis and read the sessions and tokens. This is what Heroku Redis requires (self-signed certificates); elsewhere give the server's CA with REDIS_TLS_CA_FILE instead.";
    if (isProduction) warnings.push(`SECURITY: ${msg}`);
    else warnings.push(msg);
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const servername = e.REDIS_TLS_SERVERNAME || (tls && host && !isIP(host) ? host : undefined);
  return Object.freeze({
    url: e.REDIS_URL,
    tls,
    rejectUnauthorized,
    ...(ca ? { ca, caFile: e.REDIS_TLS_CA_FILE } : {}),
    ...(tls && servername ? { servername } : {}),
    connectTimeoutMs: e.REDIS_CONNECT_TIMEOUT_MS,
  });
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Reads a PEM bundle of CA certificates; every block must parse as an X.509 certificate. */
function readCaFile(file: string, problems: string[], warnings: string[]): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`REDIS_TLS_CA_FILE: cannot read ${JSON.stringify(file)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) {
    problems.push(`REDIS_TLS_CA_FILE: ${JSON.stringify(file)} is not a PEM certificate (expected "-----BEGIN CERTIFICATE-----"; for Memorystore, the instance's server CA certificate: see docs/deploy.md)`);
    return undefined;
  }
  for (const [i, block] of blocks.entries()) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(block);
    } catch {
      problems.push(`REDIS_TLS_CA_FILE: certificate ${i + 1} in ${JSON.stringify(file)} cannot be parsed`);
      return undefined;
    }
    if (Date.parse(cert.validTo) < Date.now()) warnings.push(`REDIS_TLS_CA_FILE: certificate ${i + 1} (${cert.subject.replace(/\n/g, ', ')}) expired on ${cert.validTo}`);
  }
  return blocks.join('\n');
}

async function buildRegistration(
  input: RegistrationInput,
  index: number,
  where: string,
  env: NodeJS.ProcessEnv,
  opts: { isProduction: boolean; allowInsecureHttp: boolean },
  problems: string[],
  warnings: string[],
): Promise<Registration | undefined> {
  const name = input.name ?? (index === 0 ? 'default' : `registration-${index + 1}`);
  const issList = Array.isArray(input.iss) ? input.iss : input.iss.split(',').map((s) => s.trim()).filter(Boolean);
  const issVar = where === 'SMART_*' ? 'SMART_ISS' : `${where}.iss`;
  let ok = true;
  if (issList.length === 0) {
    problems.push(`${issVar}: the allow-list of FHIR base URLs is empty`);
    ok = false;
  }
  for (const iss of issList) {
    const u = safeUrl(iss.replace(/\*$/, 'x'));
    if (!u || !/^https?:$/.test(u.protocol) || u.search || u.hash || u.username) {
      problems.push(`${issVar}: not a FHIR base URL: ${JSON.stringify(iss)}`);
      ok = false;
    } else if (u.protocol === 'http:' && (opts.isProduction || !opts.allowInsecureHttp)) {
      problems.push(`${issVar}: ${iss} is not https` + (opts.isProduction ? '' : ' (set ALLOW_INSECURE_HTTP=1 for a local development EHR)'));
      ok = false;
    } else if (iss.includes('*') && !/\/\*$/.test(iss)) {
      problems.push(`${issVar}: a wildcard may only be a whole last path segment ("https://host/r4/*"): ${iss}`);
      ok = false;
    }
  }

  const secretVar = where === 'SMART_*' ? 'SMART_CLIENT_SECRET' : `${where}.clientSecret`;
  const keyVar = where === 'SMART_*' ? 'SMART_PRIVATE_KEY' : `${where}.privateKey`;
  let clientSecret = input.clientSecret;
  if (input.clientSecretEnv) {
    clientSecret = env[input.clientSecretEnv];
    if (!clientSecret) problems.push(`${where}.clientSecretEnv: environment variable ${input.clientSecretEnv} is not set`);
  }
  let keyText: string | Record<string, unknown> | undefined = input.privateKey;
  let keySource = keyVar;
  if (input.privateKeyEnv) {
    keyText = env[input.privateKeyEnv];
    keySource = input.privateKeyEnv;
    if (!keyText) problems.push(`${where}.privateKeyEnv: environment variable ${input.privateKeyEnv} is not set`);
  }
  if (input.privateKeyFile) {
    keySource = where === 'SMART_*' ? 'SMART_PRIVATE_KEY_FILE' : `${where}.privateKeyFile`;
    try {
      keyText = readFileSync(input.privateKeyFile, 'utf8');
    } catch (err) {
      problems.push(`${keySource}: cannot read ${JSON.stringify(input.privateKeyFile)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }

  let clientType: ClientType = input.clientType ?? (keyText ? 'confidential-asymmetric' : clientSecret ? 'confidential-symmetric' : 'public');
  if (clientSecret && keyText && !input.clientType) {
    problems.push(`${where}: both a client secret and a private key are set; keep the one that matches the EHR registration`);
    ok = false;
  }
  if (clientType === 'confidential-symmetric' && !clientSecret) {
    problems.push(`${secretVar}: required for a confidential-symmetric client`);
    ok = false;
  }
  if (clientType === 'confidential-asymmetric' && !keyText) {
    problems.push(`${keyVar}: required for a confidential-asymmetric client (PEM or JWK)`);
    ok = false;
  }
  if (clientType === 'public' && (clientSecret || keyText)) clientType = keyText ? 'confidential-asymmetric' : 'confidential-symmetric';

  let key: ClientKey | undefined;
  if (clientType === 'confidential-asymmetric' && keyText) {
    try {
      key = await parsePrivateKey(keyText, input.keyId);
    } catch (err) {
      problems.push(`${keySource}: ${(err as Error).message}`);
      ok = false;
    }
  }

  // client_secret_basic's encoding (smart/client-auth.ts): `raw` cannot carry a ':' in the client id (it would
  // split id and secret elsewhere); for anything but client_secret_basic the setting has no effect.
  const env_ = where === 'SMART_*';
  const encodingVar = env_ ? 'SMART_CLIENT_AUTH_ENCODING' : `${where}.clientAuthEncoding`;
  const method = input.clientAuthMethod ?? 'client_secret_basic';
  if (input.clientAuthEncoding !== undefined && (clientType !== 'confidential-symmetric' || method !== 'client_secret_basic')) {
    warnings.push(`${encodingVar} (${name}): ignored, it only applies to client_secret_basic (this client uses ${clientType !== 'confidential-symmetric' ? (clientType === 'public' ? 'no client authentication' : 'private_key_jwt') : method})`);
  }
  if (clientType === 'confidential-symmetric' && method === 'client_secret_basic' && input.clientAuthEncoding === 'raw' && input.clientId.includes(':')) {
    problems.push(
      `${encodingVar}: raw cannot send the client id ${JSON.stringify(input.clientId)}: it contains ':', which separates the id from the secret in HTTP Basic. ` +
        `Use ${env_ ? 'SMART_CLIENT_AUTH_ENCODING=form' : '"clientAuthEncoding": "form"'} (':' is sent as %3A) or ${env_ ? 'SMART_CLIENT_AUTH_METHOD=client_secret_post' : '"clientAuthMethod": "client_secret_post"'}`,
    );
    ok = false;
  }
  if (clientType === 'confidential-symmetric' && clientSecret && clientSecret.trim() !== clientSecret) {
    warnings.push(`${secretVar} (${name}): the client secret begins or ends with whitespace (a space or a line break); it is sent as it is, check that it belongs to the secret`);
  }

  const scope = normalizeScope(input.scope ?? DEFAULT_SCOPE);
  const standaloneScope = normalizeScope(input.standaloneScope ?? input.scope ?? DEFAULT_SCOPE);
  const scopes = new Set([...splitScopes(scope), ...splitScopes(standaloneScope)]);
  if (!scopes.has('online_access') && !scopes.has('offline_access')) {
    warnings.push(
      `${where === 'SMART_*' ? 'SMART_SCOPE' : `${where}.scope`} (${name}): neither online_access nor offline_access is requested, so no refresh token will be issued; ` +
        'Oracle Health (Cerner) access tokens then expire after about ten minutes and the user must relaunch.',
    );
  }
  if (!ok) return undefined;
  return Object.freeze({
    name,
    iss: Object.freeze(issList),
    clientId: input.clientId,
    clientType,
    ...(clientType === 'confidential-symmetric' ? { clientSecret, clientSecretMethod: method } : {}),
    ...(clientType === 'confidential-symmetric' && method === 'client_secret_basic' ? { clientAuthEncoding: input.clientAuthEncoding ?? 'form' } : {}),
    configuredIn: env_ ? 'env' : 'file',
    ...(key ? { key } : {}),
    scope,
    standaloneScope,
  });
}

function normalizeScope(s: string): string {
  return splitScopes(s).join(' ');
}

function parseBytes(s: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$/i.exec(s);
  if (!m) return undefined;
  const mult = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? 'b').toLowerCase() as 'b'];
  return Math.floor(Number(m[1]) * mult);
}

function safeUrl(s: string): URL | undefined {
  try {
    return new URL(s);
  } catch {
    return undefined;
  }
}

const PLACEHOLDERS = /^(secret|changeme|change-me|password|keyboard cat|development|test)/i;
function weakSecret(s: string): boolean {
  return s.length < 32 || new Set(s).size < 10 || PLACEHOLDERS.test(s);
}
