/**
 * SMART discovery: `<iss>/.well-known/smart-configuration` (under the FHIR base path, not the host root),
 * fetched with a timeout, a size cap and no cross-origin redirects, validated, and cached per issuer with a TTL.
 * Concurrent callers for one issuer share one fetch (single flight). The cache is bounded (an LRU), and so is the
 * rate of discovering issuers never discovered before when the caller says the issuer came from a wildcard of the
 * allow-list (`https://host/r4/*` lets anyone name a new issuer, and make us fetch from it, with each request).
 */
import { LazyLru } from '../lazy-lru.js';
import { AppError, ErrorCode } from '../http/errors.js';
import type { Logger } from '../log.js';
import { describeNetworkError, isTimeout } from '../http/network-errors.js';
import { discoveryWarnings } from './compatibility.js';
import type { ClientCredentials } from './client-auth.js';
import { readBodyAtMost } from '../http/capped-body.js';

export interface SmartConfiguration {
  issuer?: string;
  jwks_uri?: string;
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint?: string;
  introspection_endpoint?: string;
  management_endpoint?: string;
  grant_types_supported: string[];
  capabilities: string[];
  code_challenge_methods_supported: string[];
  scopes_supported?: string[];
  token_endpoint_auth_methods_supported?: string[];
  token_endpoint_auth_signing_alg_values_supported?: string[];
  response_types_supported?: string[];
  [k: string]: unknown;
}

export interface DiscoveredServer {
  /** The FHIR base exactly as configured/received (the `aud`). */
  readonly iss: string;
  readonly configuration: Readonly<SmartConfiguration>;
  readonly fetchedAt: number;
}

export interface DiscoveryOptions {
  /** `launch` (default): the authorization-code flow's requirements; `backend`: client_credentials only. */
  purpose?: 'launch' | 'backend';
  ttlSeconds: number;
  timeoutMs: number;
  allowInsecureHttp: boolean;
  maxBytes?: number;
  /** Most issuers cached (LRU). Default 1000. */
  maxEntries?: number;
  /** Issuers never discovered before that may be discovered per minute, for callers that ask for the limit. Default 60. */
  newIssuersPerMinute?: number;
  fetch?: typeof fetch;
  now?: () => number;
}

export interface DiscoveryGetOptions {
  /** The issuer came from a wildcard of the allow-list: if it was never discovered before, it counts against the per-minute limit. */
  newIssuerLimited?: boolean;
}

/** The URL fields of a SMART configuration: resolved against the FHIR base, and https unless http is allowed. */
export const SMART_URL_FIELDS = ['authorization_endpoint', 'token_endpoint', 'revocation_endpoint', 'introspection_endpoint', 'jwks_uri', 'management_endpoint', 'registration_endpoint'] as const;

/** One thing wrong with a SMART configuration, for people and for `smart-bff doctor`'s separate checks. */
export interface DiscoveryProblem {
  /** The field it is about. */
  field: string;
  /** missing or of the wrong type; a URL that is not https; a required value the list lacks (S256, a grant type, private_key_jwt). */
  kind: 'missing' | 'invalid' | 'not_https' | 'unsupported';
  text: string;
}

/**
 * What `smart-bff doctor` learns from one discovery: the document even when it cannot be used (to check each
 * requirement on its own line), each problem, the server's Date header, or the error that stopped the fetch.
 */
export interface DiscoveryExamination {
  url: string;
  /** The document with its URL fields resolved against the FHIR base, when the answer was a JSON object. */
  document?: Record<string, unknown>;
  problems: DiscoveryProblem[];
  /** The validated configuration when there is no problem (cached as get() would). */
  server?: DiscoveredServer;
  /** The fetch failed (unreachable, an error status, not JSON, too large, a cross-origin redirect): what get() throws. */
  error?: AppError;
  /** The answer's Date header, and our clock when the answer arrived (clock skew). */
  date: string | null;
  receivedAt: number;
}

export function smartConfigurationUrl(iss: string): string {
  return `${iss.replace(/\/+$/, '')}/.well-known/smart-configuration`;
}

/**
 * Cache of validated SMART configurations, one entry per issuer. This is a cache and says so; its mutable state is
 * bounded: the entries (an LRU of `maxEntries`, each with the TTL), the issuers discovered before (an LRU ten times
 * that size, names only, so that an expired or evicted issuer is not "new"), the fetches in flight (at most one per
 * issuer, and new issuers only as fast as the limit lets them in), and the current minute's count of new issuers.
 */
export class DiscoveryCache {
  private readonly lazyEntries: LazyLru<string, { value: DiscoveredServer; expiresAt: number }>;
  /** Made at the first issuer discovered (lazy-lru.ts), as are the entries. */
  private readonly lazyKnown: LazyLru<string, true>;
  private readonly inflight = new Map<string, Promise<DiscoveredServer>>();
  private readonly maxBytes: number;
  private readonly newPerMinute: number;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  private window = { start: 0, count: 0 };
  /** Clients already checked against each fetched configuration (it goes with the document: a WeakMap). */
  private readonly checkedClients = new WeakMap<DiscoveredServer, Set<string>>();
  /** Number of network fetches made (for tests and metrics). */
  fetchCount = 0;

  constructor(private readonly opts: DiscoveryOptions) {
    this.maxBytes = opts.maxBytes ?? 256 * 1024;
    const maxEntries = opts.maxEntries ?? 1000;
    this.lazyEntries = new LazyLru({ max: maxEntries });
    this.lazyKnown = new LazyLru({ max: maxEntries * 10 });
    this.newPerMinute = opts.newIssuersPerMinute ?? 60;
    this.fetchImpl = opts.fetch ?? fetch;
    this.now = opts.now ?? Date.now;
  }

  async get(iss: string, log: Logger, opts: DiscoveryGetOptions = {}): Promise<DiscoveredServer> {
    const cached = this.lazyEntries.cache.get(iss);
    if (cached && cached.expiresAt > this.now()) {
      log.debug({ event: 'discovery', iss, cached: true }, 'discovery: using cached SMART configuration');
      return cached.value;
    }
    let pending = this.inflight.get(iss);
    if (!pending) {
      if (opts.newIssuerLimited && !this.lazyKnown.cache.has(iss)) this.admitNewIssuer(iss, log);
      pending = this.load(iss, log).finally(() => this.inflight.delete(iss));
      this.inflight.set(iss, pending);
    }
    return pending;
  }

  /**
   * Fetches the SMART configuration with the same rules as get() (timeout, size cap, no cross-origin redirect)
   * and reports every problem instead of throwing at the first: for `smart-bff doctor`. A valid configuration is
   * cached, so a token request that follows uses this fetch.
   */
  async examine(iss: string, log: Logger): Promise<DiscoveryExamination> {
    const url = smartConfigurationUrl(iss);
    this.fetchCount++;
    let fetched: { body: unknown; date: string | null };
    try {
      fetched = await this.fetchJson(url);
    } catch (err) {
      const error = err instanceof AppError ? err : new AppError(ErrorCode.DISCOVERY_FAILED, 502, `Could not read the EHR's SMART configuration at ${url}.`, { cause: err });
      log.warn({ event: 'discovery', iss, url, outcome: error.code, reason: error.message }, 'discovery: failed');
      return { url, problems: [], error, date: null, receivedAt: this.now() };
    }
    const receivedAt = this.now();
    const { body, date } = fetched;
    if (!body || typeof body !== 'object' || Array.isArray(body)) {
      return { url, problems: [], error: new AppError(ErrorCode.DISCOVERY_INVALID, 502, 'The SMART configuration is not a JSON object.'), date, receivedAt };
    }
    const { document, problems } = smartConfigurationProblems(body as Record<string, unknown>, iss, this.opts.allowInsecureHttp, this.opts.purpose ?? 'launch');
    if (problems.length) return { url, document, problems, date, receivedAt };
    const server: DiscoveredServer = Object.freeze({ iss, configuration: Object.freeze(document as SmartConfiguration), fetchedAt: receivedAt });
    if (this.opts.ttlSeconds > 0) this.lazyEntries.cache.set(iss, { value: server, expiresAt: receivedAt + this.opts.ttlSeconds * 1000 });
    this.lazyKnown.cache.set(iss, true);
    return { url, document, problems, server, date, receivedAt };
  }

  /**
   * Warns, once per fetched configuration and client (not per launch), when the server does not advertise our
   * client authentication method or our key's signing algorithm (compatibility.ts): a `discovery` warning naming
   * the advertised list and ours. `client` names the registration when the logger does not already.
   */
  checkClient(server: DiscoveredServer, key: string, creds: ClientCredentials, log: Logger, client?: Record<string, string>): void {
    let seen = this.checkedClients.get(server);
    if (!seen) this.checkedClients.set(server, (seen = new Set()));
    if (seen.has(key)) return;
    seen.add(key);
    for (const w of discoveryWarnings(server.configuration, creds)) {
      log.warn(
        { event: 'discovery', iss: server.iss, ...client, warning: w.check === 'signing_alg' ? 'signing_alg_not_advertised' : 'auth_method_not_advertised', advertised: w.advertised, ours: w.ours, fix: w.fix },
        `discovery: ${w.message}`,
      );
    }
  }

  /** Issuers cached now. */
  get size(): number {
    return this.lazyEntries.cache.size;
  }

  /** Counts a never-discovered issuer against this minute's limit; past it, refuses before any request is made. */
  private admitNewIssuer(iss: string, log: Logger): void {
    const now = this.now();
    if (now - this.window.start >= 60_000) this.window = { start: now, count: 0 };
    if (this.window.count >= this.newPerMinute) {
      log.warn({ event: 'discovery.rate_limited', iss, limit_per_minute: this.newPerMinute }, 'discovery: too many issuers never seen before in the last minute; this one was not contacted');
      throw new AppError(ErrorCode.DISCOVERY_RATE_LIMITED, 503, 'Too many FHIR servers this app has not seen before were asked for in the last minute, so this one was not contacted.', {
        hint: 'Try the launch again in a minute. Operators: this limit (SMART_DISCOVERY_NEW_PER_MINUTE) guards the wildcard in SMART_ISS; list your tenants explicitly or raise it if real launches reach it.',
        relaunch: true,
      });
    }
    this.window.count++;
  }

  private async load(iss: string, log: Logger): Promise<DiscoveredServer> {
    const url = smartConfigurationUrl(iss);
    const started = this.now();
    this.fetchCount++;
    try {
      const { body } = await this.fetchJson(url);
      const configuration = validateSmartConfiguration(body, iss, this.opts.allowInsecureHttp, this.opts.purpose ?? 'launch');
      const value: DiscoveredServer = Object.freeze({ iss, configuration: Object.freeze(configuration), fetchedAt: this.now() });
      if (this.opts.ttlSeconds > 0) this.lazyEntries.cache.set(iss, { value, expiresAt: this.now() + this.opts.ttlSeconds * 1000 });
      this.lazyKnown.cache.set(iss, true);
      log.info(
        {
          event: 'discovery', iss, url, durationMs: this.now() - started, issuer: configuration.issuer ?? null,
          authorization_endpoint: configuration.authorization_endpoint, token_endpoint: configuration.token_endpoint,
          capabilities: configuration.capabilities, code_challenge_methods: configuration.code_challenge_methods_supported,
        },
        'discovery: SMART configuration fetched and valid',
      );
      return value;
    } catch (err) {
      const e = err instanceof AppError ? err : new AppError(ErrorCode.DISCOVERY_FAILED, 502, `Could not read the EHR's SMART configuration at ${url}.`, { cause: err });
      log.warn({ event: 'discovery', iss, url, durationMs: this.now() - started, outcome: e.code, reason: e.message }, 'discovery: failed');
      throw e;
    }
  }

  private async fetchJson(url: string): Promise<{ body: unknown; date: string | null }> {
    let current = new URL(url);
    for (let hop = 0; hop <= 3; hop++) {
      let res: Response;
      try {
        res = await this.fetchImpl(current, {
          headers: { accept: 'application/json' },
          redirect: 'manual',
          signal: AbortSignal.timeout(this.opts.timeoutMs),
        });
      } catch (err) {
        const timedOut = isTimeout(err);
        throw new AppError(
          ErrorCode.DISCOVERY_FAILED,
          timedOut ? 504 : 502,
          timedOut
            ? `The EHR did not answer its SMART configuration request (${current.href}) within ${this.opts.timeoutMs} ms.`
            : `The EHR's SMART configuration (${current.href}) could not be reached: ${describeNetworkError(err)}.`,
          { hint: 'Check that the FHIR server is up and that the iss is right, then launch again.', cause: err, relaunch: true },
        );
      }
      if (res.status >= 300 && res.status < 400) {
        await res.body?.cancel();
        const location = res.headers.get('location');
        const next = location ? new URL(location, current) : undefined;
        if (!next || next.origin !== current.origin) {
          throw new AppError(ErrorCode.DISCOVERY_INVALID, 502, `The SMART configuration at ${current.href} redirects to another origin; refusing to follow.`, {
            hint: 'Configure the FHIR base URL that serves .well-known/smart-configuration itself.',
          });
        }
        current = next;
        continue;
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new AppError(ErrorCode.DISCOVERY_FAILED, 502, `The EHR answered ${res.status} for its SMART configuration (${current.href}).`, {
          hint: res.status === 404 ? 'The iss may not be a SMART-enabled FHIR base URL (check for a missing tenant or version segment).' : 'Try again later.',
          relaunch: true,
          upstreamStatus: res.status,
        });
      }
      const text = await readCapped(res, this.maxBytes);
      try {
        return { body: JSON.parse(text), date: res.headers.get('date') };
      } catch {
        throw new AppError(ErrorCode.DISCOVERY_INVALID, 502, `The SMART configuration at ${current.href} is not JSON.`);
      }
    }
    throw new AppError(ErrorCode.DISCOVERY_INVALID, 502, `The SMART configuration at ${url} redirects too many times.`);
  }
}

async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const text = await readBodyAtMost(res, maxBytes);
  if (text === undefined) throw new AppError(ErrorCode.DISCOVERY_INVALID, 502, `The SMART configuration is larger than ${maxBytes} bytes.`);
  return text;
}

/** Validates a SMART configuration document; resolves relative URLs against the FHIR base. */
export function validateSmartConfiguration(body: unknown, iss: string, allowInsecureHttp: boolean, purpose: 'launch' | 'backend' = 'launch'): SmartConfiguration {
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    throw new AppError(ErrorCode.DISCOVERY_INVALID, 502, 'The SMART configuration is not a JSON object.');
  }
  const { document, problems } = smartConfigurationProblems(body as Record<string, unknown>, iss, allowInsecureHttp, purpose);
  if (problems.length) {
    throw new AppError(ErrorCode.DISCOVERY_INVALID, 502, `The EHR's SMART configuration cannot be used: ${problems.map((p) => p.text).join('; ')}.`, {
      hint: 'This is a problem with the EHR configuration; share this page with its administrators.',
    });
  }
  return document as SmartConfiguration;
}

/** Every problem of a SMART configuration for this purpose, and the document with its URLs resolved against the FHIR base. */
export function smartConfigurationProblems(
  body: Readonly<Record<string, unknown>>, iss: string, allowInsecureHttp: boolean, purpose: 'launch' | 'backend' = 'launch',
): { document: Record<string, unknown>; problems: DiscoveryProblem[] } {
  const problems: DiscoveryProblem[] = [];
  const problem = (field: string, kind: DiscoveryProblem['kind'], text: string) => problems.push({ field, kind, text });
  const doc = { ...body };
  const base = iss.endsWith('/') ? iss : `${iss}/`;
  for (const field of SMART_URL_FIELDS) {
    const v = doc[field];
    if (v === undefined) continue;
    if (typeof v !== 'string') {
      problem(field, 'invalid', `${field} is not a string`);
      continue;
    }
    let u: URL;
    try {
      u = new URL(v, base);
    } catch {
      problem(field, 'invalid', `${field} is not a URL`);
      continue;
    }
    if (u.protocol !== 'https:' && !(allowInsecureHttp && u.protocol === 'http:')) problem(field, 'not_https', `${field} is not https (${u.href})`);
    doc[field] = u.href;
  }
  if (purpose === 'backend') {
    if (typeof doc.token_endpoint !== 'string') problem('token_endpoint', 'missing', 'token_endpoint is missing');
    const grants = doc.grant_types_supported;
    if (Array.isArray(grants) && !grants.includes('client_credentials')) problem('grant_types_supported', 'unsupported', 'grant_types_supported does not include client_credentials (no SMART Backend Services)');
    const auth = doc.token_endpoint_auth_methods_supported;
    if (Array.isArray(auth) && !auth.includes('private_key_jwt')) problem('token_endpoint_auth_methods_supported', 'unsupported', 'token_endpoint_auth_methods_supported does not include private_key_jwt');
    doc.capabilities = Array.isArray(doc.capabilities) ? doc.capabilities : [];
  } else {
    for (const field of ['authorization_endpoint', 'token_endpoint'] as const) {
      if (typeof doc[field] !== 'string') problem(field, 'missing', `${field} is missing`);
    }
    for (const field of ['capabilities', 'grant_types_supported', 'code_challenge_methods_supported'] as const) {
      const v = doc[field];
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) problem(field, 'missing', `${field} is missing or not a list of strings`);
    }
    const methods = doc.code_challenge_methods_supported;
    if (Array.isArray(methods) && !methods.includes('S256')) problem('code_challenge_methods_supported', 'unsupported', 'code_challenge_methods_supported does not include S256 (PKCE S256 is required; plain is never used)');
    const grants = doc.grant_types_supported;
    if (Array.isArray(grants) && !grants.includes('authorization_code')) problem('grant_types_supported', 'unsupported', 'grant_types_supported does not include authorization_code');
  }
  if (doc.issuer !== undefined && typeof doc.issuer !== 'string') problem('issuer', 'invalid', 'issuer is not a string');
  return { document: doc, problems };
}
