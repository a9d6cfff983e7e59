/**
 * Every environment variable the program reads, in one table: its type and default (zod), and what it does with
 * an example (`.meta()`). config.ts parses the environment with this schema; docs/configuration.md and
 * .env.example are generated from it (`npm run docs:config`), and a test fails when either differs from what the
 * generator writes or when src/ reads a variable that is not declared here.
 *
 * Adding a variable: one line here (schema + meta), then `npm run docs:config`.
 */
import { z } from 'zod';

export const ENV_GROUPS = {
  server: 'Server',
  ehr: 'The EHR registration (one EHR)',
  launch: 'Launches and discovery',
  sessions: 'Sessions, cookies and Redis',
  proxy: 'FHIR proxy and tokens',
  backend: 'Backend services and Bulk Data',
  operators: 'The operator console (/admin) and the launch trace',
  platform: 'Set by the platform',
  cli: 'The smart-bff command',
  development: 'Development',
} as const;
export type EnvGroup = keyof typeof ENV_GROUPS;

export interface EnvVarMeta {
  group: EnvGroup;
  /** What it does, for people: one or a few sentences. */
  description: string;
  /** A value to show in the docs and in .env.example. */
  example?: string;
  /** The default in words, when it is computed rather than a constant of the schema. */
  default?: string;
  /** Holds a secret (or a credential inside a URL): Secret Manager / `heroku config:set`, never a committed file. */
  secret?: true;
  /** The value .env.example sets (uncommented) for a local setup; variables without one appear commented out. */
  local?: string;
}

const doc = <T extends z.ZodType>(schema: T, meta: EnvVarMeta): T => schema.meta(meta as unknown as Record<string, unknown>);

/** "1/0, true/false, yes/no, on/off" (empty counts as off). */
export const boolish = z
  .enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off', ''])
  .transform((v) => ['1', 'true', 'yes', 'on'].includes(v));

export const envSchema = z.object({
  // --- Server
  NODE_ENV: doc(z.enum(['production', 'development', 'test'], { error: 'must be production, development or test' }).default('development'), { group: 'server', local: 'development', example: 'production', default: '`development` (unset or empty)', description: 'production | development | test; any other value (such as prod) stops startup. production refuses a non-https PUBLIC_URL, a weak SESSION_SECRET, ALLOW_INSECURE_HTTP and the sandbox EHR.' }),
  PORT: doc(z.coerce.number().int().min(0).max(65535).default(3000), { group: 'server', local: '3000', example: '3000', description: 'Port to listen on (Heroku and App Engine set it).' }),
  HOST: doc(z.string().default('0.0.0.0'), { group: 'server', example: '127.0.0.1', description: 'Interface to bind.' }),
  PUBLIC_URL: doc(z.string().optional(), { group: 'server', local: 'http://localhost:3000', example: 'https://my-smart-app.herokuapp.com', default: '`http://localhost:$PORT` in development; required in production', description: 'The external origin users reach the app at. The redirect URI is PUBLIC_URL + /callback and the EHR launch URI is PUBLIC_URL + /launch; register exactly these with the EHR. Built from configuration, never from Host or X-Forwarded-* headers.' }),
  SESSION_SECRET: doc(z.string().optional(), { group: 'server', local: '', secret: true, example: '$(openssl rand -base64 48)', default: 'a random secret per process in development (sessions end at restart); required in production', description: 'Signs the session cookie: at least 32 random characters, the same on every instance.' }),
  LOG_LEVEL: doc(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'), { group: 'server', local: 'info', example: 'info', description: 'Log level: fatal | error | warn | info | debug | trace | silent. Logs are JSON lines (pino).' }),
  TRUST_PROXY: doc(z.string().optional(), { group: 'server', example: '1', default: '`1` on Heroku (`DYNO` set) and App Engine (`GAE_SERVICE` set), otherwise `false`', description: 'Express "trust proxy": the number of TLS-terminating proxies in front of the app, true, false, or a subnet list. Needed for Secure cookies behind a router.' }),
  HEAP_KEEP_WARM: doc(boolish.default(true), { group: 'server', example: 'off', default: '`on`', description: "Keeps V8's young generation (each request's short-lived objects) at its size through quiet spells, by making about 2 MB a second of short-lived garbage (about 0.25 % of one CPU while idle). Without it, V8 shrinks the young generation after a quiet spell of 20 s or less, and the first seconds of load after a quiet spell are slower (docs/benchmarks.md). off gives the young generation's memory (up to 16 MB with npm start's cap) back while idle instead." }),
  METRICS_TOKEN: doc(z.string().optional(), { group: 'server', secret: true, example: '$(openssl rand -base64 24)', default: 'unset: /metrics is off', description: 'Enables GET /metrics (Prometheus), only with Authorization: Bearer <METRICS_TOKEN>. 16+ random characters.' }),

  // --- The EHR registration
  SMART_ISS: doc(z.string().optional(), { group: 'ehr', local: '', example: 'https://fhir-ehr-code.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d', default: 'unset: the sandbox EHR in development; required in production', description: 'FHIR base URLs this app accepts launches from (the `iss`): an allow-list, comma-separated. An iss that is not listed is refused before any request is made to it. A trailing /* matches one path segment (multi-tenant EHRs such as https://fhir-ehr.cerner.com/r4/*).' }),
  SMART_CLIENT_ID: doc(z.string().optional(), { group: 'ehr', local: '', example: 'my-client-id', description: 'The client id the EHR gave you.' }),
  SMART_SCOPE: doc(z.string().optional(), { group: 'ehr', example: 'openid fhirUser online_access patient/*.rs', default: '`openid fhirUser online_access patient/*.rs`', description: 'Scopes for an EHR launch (`launch` is added). SMART v2 syntax; converted to v1 when the EHR only advertises permission-v1, never to anything wider: .rs → .read, .cud → .write, .cruds → .*; a scope v1 cannot express exactly (.r, .s or .c alone, a ?category= filter) is left out, or narrowed to the part v1 expresses exactly (.crs → .read), with a launch.scope_dropped warning naming it. Ask for online_access or offline_access, or tokens cannot be refreshed.' }),
  SMART_STANDALONE_SCOPE: doc(z.string().optional(), { group: 'ehr', example: 'openid fhirUser online_access patient/*.rs', default: 'the value of `SMART_SCOPE`', description: 'Scopes for a standalone launch (/login); `launch/patient` is added when patient scopes are asked for.' }),
  SMART_CLIENT_SECRET: doc(z.string().optional(), { group: 'ehr', secret: true, example: 'the-secret-from-the-ehr', description: 'Confidential symmetric client: the client secret (HTTP Basic unless SMART_CLIENT_AUTH_METHOD says client_secret_post).' }),
  SMART_CLIENT_AUTH_METHOD: doc(z.enum(['client_secret_basic', 'client_secret_post']).optional(), { group: 'ehr', example: 'client_secret_post', default: '`client_secret_basic`', description: 'How the client secret is sent: client_secret_basic (HTTP Basic) | client_secret_post (in the request body).' }),
  SMART_CLIENT_AUTH_ENCODING: doc(z.enum(['form', 'raw'], { error: 'must be form or raw' }).optional(), { group: 'ehr', example: 'raw', default: '`form`', description: "client_secret_basic only: how the client id and secret are encoded before Base64. form (RFC 6749): `%`, `+`, `:`, spaces, control and non-ASCII characters are sent as %XX; letters, digits, `-._~` and every other printable character go as they are. raw: `id:secret` exactly as configured, for servers that compare the credentials without decoding them. The two differ only when the id or secret holds one of the characters form encodes; an invalid_client then says which setting to try. A client id with `:` cannot be sent raw." }),
  SMART_PRIVATE_KEY: doc(z.string().optional(), { group: 'ehr', secret: true, example: '-----BEGIN PRIVATE KEY-----\\n…', description: 'Confidential asymmetric client (private_key_jwt): the private key as PEM (\\n escapes allowed) or a private JWK. RSA >= 2048 bits signs RS384; EC P-384 signs ES384.' }),
  SMART_PRIVATE_KEY_FILE: doc(z.string().optional(), { group: 'ehr', example: './keys/es384-xxxx.private.pem', description: 'The same private key, read from a file (PEM or JWK). Set SMART_PRIVATE_KEY or this, not both.' }),
  SMART_KEY_ID: doc(z.string().optional(), { group: 'ehr', example: 'my-key-2026', default: "the key's own kid, else its RFC 7638 thumbprint", description: 'The key id (kid) registered with the EHR, when the key has none.' }),
  SMART_CONFIG_FILE: doc(z.string().optional(), { group: 'ehr', example: './ehrs.json', description: 'Several EHRs: a JSON file {"registrations":[{"name","iss","clientId","clientType","clientSecretEnv"|"privateKeyFile"|"privateKeyEnv","keyId","clientAuthMethod","clientAuthEncoding","scope","standaloneScope"}]}. Replaces SMART_ISS and SMART_CLIENT_ID.' }),

  // --- Launches and discovery
  SMART_DISCOVERY_TTL: doc(z.coerce.number().int().min(0).max(86400 * 7).default(3600), { group: 'launch', example: '600', description: "Seconds an EHR's discovered SMART configuration is cached." }),
  SMART_DISCOVERY_CACHE_MAX: doc(z.coerce.number().int().min(1).max(1_000_000).default(1000), { group: 'launch', example: '1000', description: 'Most issuers whose SMART configuration is cached (least recently used dropped first).' }),
  SMART_DISCOVERY_NEW_PER_MINUTE: doc(z.coerce.number().int().min(1).max(100_000).default(60), { group: 'launch', example: '60', description: 'Issuers never discovered before that launches may discover per minute through a wildcard of SMART_ISS (https://host/r4/* lets anyone name a new tenant, and make the app fetch from it). Past it: 503 discovery_rate_limited, with no request made. Issuers named exactly in SMART_ISS are not limited.' }),
  SMART_HTTP_TIMEOUT_MS: doc(z.coerce.number().int().min(100).max(120000).default(10000), { group: 'launch', example: '15000', description: "Timeout for requests to the EHR's discovery, token and revocation endpoints, in ms. POST /logout waits for its revocations 3 s in all, whatever this says; the rest finish in the background." }),
  LAUNCH_TTL_SECONDS: doc(z.coerce.number().int().min(1).max(3600).default(600), { group: 'launch', example: '300', description: 'Seconds a pending launch (between /launch and /callback) stays valid.' }),
  MAX_PENDING_LAUNCHES: doc(z.coerce.number().int().min(1).max(1_000_000).default(10_000), { group: 'launch', example: '10000', description: 'Pending launches kept in memory (without Redis), apart from sessions: the oldest is dropped beyond this, never a signed-in session. With Redis each pending launch is its own key expiring after LAUNCH_TTL_SECONDS.' }),
  MAX_CONTEXTS_PER_SESSION: doc(z.coerce.number().int().min(1).max(50).default(5), { group: 'launch', example: '3', description: 'Launch contexts (tabs with different patients) kept per browser session; the oldest is dropped, and its tokens revoked at the EHR.' }),
  LAUNCH_RATE_LIMIT: doc(z.coerce.number().int().min(1).max(100000).default(60), { group: 'launch', example: '120', description: 'Launch requests per client IP per minute, counted together over /launch, /launch/continue (the second hop of a launch inside an EHR frame), /login and /callback (shared through Redis when it is configured). A launch takes two (three inside a frame).' }),

  // --- Sessions, cookies and Redis
  REDIS_URL: doc(z.string().optional(), { group: 'sessions', secret: true, example: 'rediss://:password@host:6380', default: 'unset: a bounded in-memory store, for a single instance only', description: 'Redis for sessions, tokens and rate limits, shared by every instance and kept across restarts (Heroku Redis, Memorystore). rediss:// uses TLS. The server starts even when Redis is unreachable: /readyz says why and session routes answer 503 until it is back.' }),
  REDIS_TLS_REJECT_UNAUTHORIZED: doc(boolish.default(true), { group: 'sessions', example: 'false', description: "rediss:// only. false accepts a certificate that cannot be verified (Heroku Redis's self-signed certificate): the connection is encrypted but the server is not authenticated. Logged as a warning in production." }),
  REDIS_TLS_CA_FILE: doc(z.string().optional(), { group: 'sessions', example: './server-ca.pem', default: "unset: Node's built-in public CAs", description: "rediss:// only. A PEM file with the CA certificate(s) that signed the Redis server's certificate (Memorystore in-transit encryption: the instance's server CA). Only these CAs are trusted. Checked at startup." }),
  REDIS_TLS_SERVERNAME: doc(z.string().optional(), { group: 'sessions', example: 'redis.internal.example', default: "the REDIS_URL host name (none for an IP address)", description: "rediss:// only. The name sent in SNI and checked against the server's certificate, when it differs from the REDIS_URL host (a Redis reached by IP whose certificate names a host)." }),
  REDIS_CONNECT_TIMEOUT_MS: doc(z.coerce.number().int().min(100).max(120000).default(10000), { group: 'sessions', example: '5000', description: 'Give up one connection attempt to Redis (TCP and TLS handshake) after this many ms; the client keeps retrying with backoff. At startup the server waits for the first attempt at most this long, then listens whatever happened.' }),
  SINGLE_INSTANCE: doc(boolish.default(false), { group: 'sessions', example: '1', description: 'Declares that exactly one instance runs (App Engine max_instances: 1, one Heroku dyno), so the in-memory session store is a deliberate choice. In production without REDIS_URL and without this, startup logs an error: launches would fail at random across instances.' }),
  SESSION_IDLE_MINUTES: doc(z.coerce.number().min(0.01).max(24 * 60).default(30), { group: 'sessions', example: '15', description: 'A session ends after this many minutes without a request (enforced on the server). Its launch contexts end with it: their tokens are revoked at the EHR when the server notices (the next request with its cookie, or a sweep every tenth of this, 1 to 30 s), and token sets are kept only this long (plus about a minute) after the last request.' }),
  SESSION_MAX_HOURS: doc(z.coerce.number().min(0.0001).max(24 * 7).default(8), { group: 'sessions', example: '4', description: 'A session ends this many hours after it began, whatever its activity; its tokens are revoked at the EHR then, with or without a request.' }),
  COOKIE_MODE: doc(z.enum(['default', 'embedded']).default('default'), { group: 'sessions', example: 'embedded', description: 'default: SameSite=Lax session cookie. embedded: SameSite=None; Secure; Partitioned, for EHRs that show the app inside an iframe of their own page (docs/deploy.md).' }),
  FRAME_ANCESTORS: doc(z.string().optional(), { group: 'sessions', example: 'https://ehr.example.com', default: "`'self'` (embedded mode: `*`)", description: "Who may embed the app's pages (CSP frame-ancestors): origins separated by spaces or commas." }),

  // --- FHIR proxy and tokens
  FHIR_PROXY_TIMEOUT_MS: doc(z.coerce.number().int().min(100).max(600000).default(25000), { group: 'proxy', example: '20000', description: "Time to wait for the EHR's FHIR server to start its answer (the response headers) before answering 504, in ms, counted from the call: a wait for a free connection (256 per EHR) counts, and a call that times out while waiting is never sent. The default stays under Heroku's 30 s router limit." }),
  FHIR_PROXY_MAX_BODY: doc(z.string().default('10mb'), { group: 'proxy', example: '512kb', description: 'Largest request body forwarded to the FHIR server (b, kb, mb, gb); larger bodies get 413.' }),
  FHIR_PROXY_REWRITE_LINKS: doc(boolish.default(true), { group: 'proxy', example: '0', description: "Rewrite absolute URLs of the EHR's FHIR base in responses (Bundle links, fullUrl, Location) to this app's /fhir, so paging works through the proxy." }),
  TOKEN_REFRESH_SKEW_SECONDS: doc(z.coerce.number().int().min(0).max(3600).default(60), { group: 'proxy', example: '120', description: 'Refresh an access token this many seconds before it expires.' }),

  // --- Backend services and Bulk Data (read in src/backend-services/config.ts; the SMART_BACKEND_* ones also by the smart-bff CLI)
  SMART_BACKEND_ISS: doc(z.string().optional(), { group: 'backend', example: 'https://fhir.example.org/r4', description: 'One backend registration for system tokens and exports (client_credentials + private_key_jwt): the FHIR base URL (checked at startup: an absolute https URL with no query; http only outside production, for a loopback host or with ALLOW_INSECURE_HTTP=1). Also the default --iss of the smart-bff CLI.' }),
  SMART_BACKEND_CLIENT_ID: doc(z.string().optional(), { group: 'backend', example: 'my-backend-client', description: 'Its client id. Also the default --client-id of the CLI.' }),
  SMART_BACKEND_KEY_FILE: doc(z.string().optional(), { group: 'backend', example: './keys/es384-xxxx.private.pem', description: 'The private key registered for it (PEM or JWK file; `npx smart-bff keys generate` makes one). Also the default --key of the CLI.' }),
  SMART_BACKEND_PRIVATE_KEY: doc(z.string().optional(), { group: 'backend', secret: true, example: '-----BEGIN PRIVATE KEY-----\\n…', description: 'The same key inline (PEM or JWK), instead of SMART_BACKEND_KEY_FILE.' }),
  SMART_BACKEND_KEY_ID: doc(z.string().optional(), { group: 'backend', example: 'my-key-2026', default: "the key's own kid, else its RFC 7638 thumbprint", description: 'The key id (kid), when the key has none. Also the default --kid of the CLI.' }),
  SMART_BACKEND_SCOPE: doc(z.string().optional(), { group: 'backend', example: 'system/Patient.rs system/Observation.rs', default: '`system/*.rs`', description: 'Scopes for system tokens. Also the default --scope of the CLI. Converted to v1 for a server that only advertises permission-v1 as SMART_SCOPE is, never wider (backend.token.scope_dropped warnings; none left: the request is refused).' }),
  SMART_BACKEND_JKU: doc(z.string().optional(), { group: 'backend', example: 'https://app.example.org/.well-known/jwks.json', description: 'A JWKS URL to name in the assertion header (jku), when the EHR registered one. Checked at startup like SMART_BACKEND_ISS.' }),
  BACKEND_CONFIG_FILE: doc(z.string().optional(), { group: 'backend', example: './backend.json', description: 'Several backend registrations: {"registrations":[{"name","iss","clientId","privateKeyFile"|"privateKeyEnv","keyId","scope","jku"}]}. Replaces SMART_BACKEND_*.' }),
  JWKS_EXTRA_KEYS_FILE: doc(z.string().optional(), { group: 'backend', example: './keys/next.jwks.json', description: 'Public keys published at /.well-known/jwks.json besides the signing keys (key rotation: the next key, retired keys).' }),
  BULK_DATA_DIR: doc(z.string().optional(), { group: 'backend', example: '/mnt/exports', default: '`./bulk-data` when the working directory is writable, else `<OS temp dir>/smart-bff-bulk-data` (App Engine)', description: 'Where export jobs and their files are kept. On Heroku and App Engine the local disk is ephemeral (App Engine: memory-backed, per instance; Heroku: wiped at every restart): fetch the files soon, or point this at a mounted volume.' }),
  BULK_DATA_TRUSTED_ORIGINS: doc(z.string().optional(), { group: 'backend', example: 'https://files.example.org', default: 'none', description: "Origins besides each FHIR server's own that may receive its access token during an export (a file host that belongs to the FHIR server), comma-separated. A manifest naming any other origin for files that need the token stops the export. Also the only origins besides the FHIR server's from which files on plain http or on a non-public address (private, link-local, loopback…) are fetched: any other such file URL fails the export (file_url_refused). Validated at startup. The CLI (smart-bff export) reads it too." }),
  BULK_DATA_LEASE_SECONDS: doc(z.coerce.number().min(1).max(3600).default(30), { group: 'backend', example: '60', description: 'With REDIS_URL and several instances sharing BULK_DATA_DIR: each export job is driven by one instance, which holds a lease on it in Redis and renews it five times per period. An instance that stops renewing (it crashed, or lost Redis) stops the job, and another instance takes it over once the lease has lapsed. Without Redis there is one instance and no lease.' }),

  // --- The operator console and the launch trace (read in src/config.ts; ADMIN_TOKEN in src/backend-services/config.ts)
  ADMIN_TOKEN: doc(z.string().optional(), { group: 'operators', secret: true, example: '$(openssl rand -base64 32)', default: 'unset: /admin and /api/bulk-data are off (404)', description: "Enables the operator console /admin (the launch trace /admin/launches and exports /admin/exports, after signing in with this token once) and the operators' API /api/bulk-data (Authorization: Bearer <ADMIN_TOKEN>). 24+ random characters." }),
  ADMIN_SESSION_IDLE_MINUTES: doc(z.coerce.number().min(0.01).max(12 * 60).default(30), { group: 'operators', example: '15', description: "An operator's sign-in to the console ends after this many minutes without a request (enforced on the server; at most 12 hours in all). Operator sessions are kept apart from the clinicians' sessions: in memory, or in Redis with REDIS_URL." }),
  LAUNCH_TRACE_SIZE: doc(z.coerce.number().int().min(1).max(10_000).default(200), { group: 'operators', example: '500', description: "Launches the trace page /admin/launches keeps (with ADMIN_TOKEN): the oldest goes first. In memory per instance, or with REDIS_URL one capped list shared by every instance, each launch kept for 24 hours. Requests refused before a launch existed (an iss not on the allow-list, an unknown state, a launch cookie that did not come back, a rate limit) are kept apart, at most a quarter as many, so that they never push a real launch out. The trace records the launch steps at info whatever LOG_LEVEL says." }),

  // --- Set by the platform
  DYNO: doc(z.string().optional(), { group: 'platform', example: 'web.1', description: 'Set by Heroku. Its presence makes TRUST_PROXY default to 1.' }),
  GAE_SERVICE: doc(z.string().optional(), { group: 'platform', example: 'default', description: 'Set by App Engine. Its presence makes TRUST_PROXY default to 1.' }),

  // --- The smart-bff command
  NO_COLOR: doc(z.string().optional(), { group: 'cli', example: '1', description: 'Any non-empty value: `smart-bff doctor` prints no colour on a terminal (https://no-color.org). It never colours output that is not a terminal, nor --json.' }),

  // --- Development
  SANDBOX: doc(z.enum(['auto', 'on', 'off']).default('auto'), { group: 'development', example: 'off', description: 'The built-in sandbox EHR at /sandbox: auto (on when no EHR is configured and not in production) | on | off. Never in production.' }),
  SANDBOX_KEYS_DIR: doc(z.string().min(1).default('keys'), { group: 'development', example: './keys', description: "The directory whose public JWKS files (*.jwks.json, as `npx smart-bff keys generate --out ./keys` writes them) are the keys of the sandbox's backend-services client `sandbox-backend`, read at every token request. Relative to the working directory." }),
  SMART_BFF_FROM_SOURCE: doc(boolish.default(false), { group: 'development', example: '1', description: 'The smart-bff command runs the TypeScript source (through tsx) even when a build exists in dist/ (the tests set it). Without it, the source runs when dist/ is missing or older than src/ in a git checkout.' }),
  ALLOW_INSECURE_HTTP: doc(boolish.default(false), { group: 'development', example: '1', description: 'Allow http:// EHR endpoints, for a local development EHR only. Refused in production.' }),
});

export interface EnvVarDoc extends EnvVarMeta {
  name: string;
  /** The default: a value (`defaultIsValue`, from the schema), words (from the meta), or undefined (unset). */
  defaultText: string | undefined;
  defaultIsValue: boolean;
}

/** The table, in schema order, for the docs generator and the tests. */
export function envVarDocs(): EnvVarDoc[] {
  return Object.entries(envSchema.shape).map(([name, schema]) => {
    const meta = (schema as z.ZodType).meta() as unknown as EnvVarMeta | undefined;
    if (!meta?.description || !meta.group) throw new Error(`env-schema: ${name} has no description/group: add .meta() with doc() in src/env-schema.ts`);
    const def = (schema as z.ZodType)._zod.def as { type: string; defaultValue?: unknown };
    const constant = def.type === 'default' ? def.defaultValue : undefined;
    const defaultText = meta.default ?? (constant === undefined ? undefined : String(constant));
    return { ...meta, name, defaultText, defaultIsValue: meta.default === undefined && constant !== undefined };
  });
}
