/**
 * What `smart-bff doctor` checks: one target per registration and FHIR server, either from the server's own
 * configuration (loaded as the server loads it: every launch registration, the sandbox's in development, every
 * backend registration) or from the command line (one registration, launch or backend services).
 */
import { DEFAULT_SCOPE, type Config, type Registration } from '../config.js';
import type { BackendClient } from '../backend-services/token-client.js';
import type { LaunchMode } from '../session/types.js';
import { Registry } from '../smart/registry.js';
import { sandboxFhirBaseUrl, sandboxLaunchRegistration } from '../sandbox/launch-registration.js';

/** A JWKS URL where our public key must be: the server's own, the assertion's `jku`, or the one registered at the EHR. */
export interface JwksUrl {
  url: string;
  source: 'public_url' | 'jku' | 'registered';
}

/** The launch and redirect URIs to register at the EHR. */
export interface RegisterUris {
  publicUrl: string;
  launchUri: string;
  redirectUri: string;
  /** NODE_ENV=production, or (command line) a PUBLIC_URL that is not on this machine. */
  production: boolean;
}

export interface LaunchTarget {
  kind: 'launch';
  registration: Registration;
  iss: string;
  modes: readonly LaunchMode[];
  /** The setting that holds the scopes of each mode, to name it in a fix. */
  scopeSetting: Record<LaunchMode, string>;
  uris?: RegisterUris;
  jwksUrls: JwksUrl[];
}

export interface BackendTarget {
  kind: 'backend';
  name: string;
  client: BackendClient;
  scopeSetting: string;
  jwksUrls: JwksUrl[];
}

export type Target = LaunchTarget | BackendTarget;

export interface DoctorPlan {
  targets: Target[];
  notes: string[];
  /** http:// EHR endpoints are accepted (and why: the sandbox, ALLOW_INSECURE_HTTP, a local server, --insecure). */
  allowInsecureHttp: boolean;
  insecureReason: string;
  /** Which http endpoints are accepted: any (ALLOW_INSECURE_HTTP, the sandbox, --insecure), or only those on this machine (a local FHIR server given on the command line). */
  insecureHosts: 'any' | 'loopback';
  timeoutMs: number;
}

export interface Selection {
  /** Only these registrations (by name). */
  registrations?: readonly string[];
  /** Only the registration that serves this FHIR base (a tenant of a wildcard entry, too). */
  iss?: string;
  modes: readonly LaunchMode[];
  timeoutMs?: number;
}

const stripSlash = (s: string) => s.replace(/\/+$/, '');

export function jwksUrlOf(publicUrl: string): string {
  return `${stripSlash(publicUrl)}/.well-known/jwks.json`;
}

export function registerUris(publicUrl: string, production: boolean): RegisterUris {
  const base = stripSlash(publicUrl);
  return { publicUrl: base, launchUri: `${base}/launch`, redirectUri: `${base}/callback`, production };
}

/** The server's configuration: its registrations as it would serve them. */
export function targetsFromConfig(config: Config, env: NodeJS.ProcessEnv, sel: Selection): DoctorPlan {
  const notes: string[] = [];
  const launchRegs = [...config.registrations, ...(config.sandbox ? [sandboxLaunchRegistration(sandboxFhirBaseUrl(config))] : [])];
  const uris = registerUris(config.publicUrl, config.isProduction);
  const ownJwks: JwksUrl = { url: jwksUrlOf(config.publicUrl), source: 'public_url' };
  const wanted = (name: string) => !sel.registrations?.length || sel.registrations.includes(name);
  const targets: Target[] = [];

  const launchTarget = (reg: Registration, iss: string): LaunchTarget => ({
    kind: 'launch', registration: reg, iss, modes: sel.modes, uris,
    scopeSetting: !reg.configuredIn
      ? { ehr: 'the sandbox registration\'s scopes (built in)', standalone: 'the sandbox registration\'s scopes (built in)' }
      : reg.configuredIn === 'file'
        ? { ehr: `"scope" of registration "${reg.name}" in SMART_CONFIG_FILE`, standalone: `"standaloneScope" (or "scope") of registration "${reg.name}" in SMART_CONFIG_FILE` }
        : { ehr: 'SMART_SCOPE', standalone: 'SMART_STANDALONE_SCOPE (or SMART_SCOPE)' },
    jwksUrls: reg.clientType === 'confidential-asymmetric' ? [ownJwks] : [],
  });

  if (sel.iss) {
    const match = new Registry(launchRegs.filter((r) => wanted(r.name))).match(sel.iss);
    if (match) targets.push(launchTarget(match.registration, match.iss));
  } else {
    for (const reg of launchRegs.filter((r) => wanted(r.name))) {
      for (const iss of reg.iss) {
        if (iss.includes('*')) {
          notes.push(`Registration "${reg.name}": ${iss} is a wildcard, so no FHIR server is named to check; check a tenant with \`smart-bff doctor --iss ${iss.replace(/\*$/, '<tenant>')}\`.`);
        } else {
          targets.push(launchTarget(reg, iss));
        }
      }
    }
  }

  const fromFile = Boolean(env.BACKEND_CONFIG_FILE);
  for (const b of config.backend.registrations) {
    if (!wanted(b.name)) continue;
    if (sel.iss && stripSlash(b.iss) !== stripSlash(sel.iss)) continue;
    targets.push({
      kind: 'backend', name: b.name,
      client: { iss: b.iss, clientId: b.clientId, key: b.key, scope: b.scope, ...(b.jku ? { jku: b.jku } : {}) },
      scopeSetting: fromFile ? `"scope" of registration "${b.name}" in BACKEND_CONFIG_FILE` : 'SMART_BACKEND_SCOPE',
      jwksUrls: [ownJwks, ...(b.jku && stripSlash(b.jku) !== stripSlash(ownJwks.url) ? [{ url: b.jku, source: 'jku' as const }] : [])],
    });
  }
  if (config.sandbox && config.backend.registrations.length === 0 && wanted('sandbox') && !sel.iss) {
    notes.push(
      'Backend services: in development the server makes a registration named "sandbox" with a key that exists only in its memory, ' +
        'which cannot be checked from here. Check the sandbox\'s client sandbox-backend instead: `npx smart-bff keys generate --out ./keys`, then ' +
        `\`npx smart-bff doctor --backend --iss ${sandboxFhirBaseUrl(config)} --client-id sandbox-backend --key ./keys/<file>.private.pem\`.`,
    );
  }
  if (sel.iss && targets.length === 0) {
    notes.push(`No registration serves ${sel.iss}: it is not on any registration's allow-list (SMART_ISS, SMART_CONFIG_FILE, the backend registrations). To check another client, give --client-id with it.`);
  }
  if (sel.registrations?.length) {
    const known = new Set([...launchRegs.map((r) => r.name), ...config.backend.registrations.map((b) => b.name)]);
    for (const name of sel.registrations) if (!known.has(name)) notes.push(`No registration is named "${name}" (configured: ${[...known].join(', ') || 'none'}).`);
  }
  return {
    targets, notes,
    allowInsecureHttp: config.allowInsecureHttp,
    insecureReason: config.sandbox ? 'the built-in sandbox, development only' : 'ALLOW_INSECURE_HTTP, development only',
    insecureHosts: 'any',
    timeoutMs: sel.timeoutMs ?? config.httpTimeoutMs,
  };
}

export function isLoopback(url: string): boolean {
  try {
    return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(new URL(url).hostname);
  } catch {
    return false;
  }
}

/** One registration from the command line (`--iss`, `--client-id`, a key or a secret, `--backend`). */
export interface CommandLineRegistration {
  iss: string;
  clientId: string;
  backend: boolean;
  secret?: string;
  key?: import('../keys.js').ClientKey;
  authMethod?: 'client_secret_basic' | 'client_secret_post';
  authEncoding?: 'form' | 'raw';
  scope?: string;
  publicUrl?: string;
  jku?: string;
  jwksUrl?: string;
  insecure: boolean;
  production: boolean;
  modes: readonly LaunchMode[];
  timeoutMs: number;
}

export function targetsFromCommandLine(c: CommandLineRegistration): DoctorPlan {
  const notes: string[] = [];
  const loopback = isLoopback(c.iss);
  const allowInsecureHttp = c.insecure || loopback;
  const insecureReason = c.insecure ? '--insecure, development only' : 'a FHIR server on this machine, development only';
  const insecureHosts = c.insecure ? 'any' : 'loopback';
  const jwksUrls: JwksUrl[] = [];
  if (c.key) {
    if (c.publicUrl) jwksUrls.push({ url: jwksUrlOf(c.publicUrl), source: 'public_url' });
    if (c.jku && !jwksUrls.some((j) => stripSlash(j.url) === stripSlash(c.jku!))) jwksUrls.push({ url: c.jku, source: 'jku' });
    if (c.jwksUrl && !jwksUrls.some((j) => stripSlash(j.url) === stripSlash(c.jwksUrl!))) jwksUrls.push({ url: c.jwksUrl, source: 'registered' });
    if (!jwksUrls.length) notes.push('No JWKS URL to check: the EHR must hold the public key by value (the .jwks.json that `smart-bff keys generate` writes). If it fetches a JWKS URL instead, give it with --jwks-url (or --public-url for this server\'s /.well-known/jwks.json).');
  }
  if (c.backend) {
    if (!c.key) throw new Error('--backend needs --key (backend services sign a JWT assertion with a private key)');
    return {
      targets: [{
        kind: 'backend', name: 'command line',
        client: { iss: c.iss, clientId: c.clientId, key: c.key, scope: c.scope ?? 'system/*.rs', ...(c.jku ? { jku: c.jku } : {}) },
        scopeSetting: '--scope (SMART_BACKEND_SCOPE for the server)', jwksUrls,
      }],
      notes, allowInsecureHttp, insecureReason, insecureHosts, timeoutMs: c.timeoutMs,
    };
  }
  const clientType = c.key ? 'confidential-asymmetric' : c.secret !== undefined ? 'confidential-symmetric' : 'public';
  const scope = c.scope ?? DEFAULT_SCOPE;
  const registration: Registration = Object.freeze({
    name: 'command line', iss: Object.freeze([c.iss]), clientId: c.clientId, clientType, scope, standaloneScope: scope, configuredIn: 'env',
    ...(clientType === 'confidential-symmetric' ? { clientSecret: c.secret, clientSecretMethod: c.authMethod ?? 'client_secret_basic' } : {}),
    ...(clientType === 'confidential-symmetric' && (c.authMethod ?? 'client_secret_basic') === 'client_secret_basic' ? { clientAuthEncoding: c.authEncoding ?? 'form' } : {}),
    ...(c.key ? { key: c.key } : {}),
  });
  if (!c.publicUrl) notes.push('Give --public-url (this app\'s external origin) to see the launch and redirect URIs to register.');
  return {
    targets: [{
      kind: 'launch', registration, iss: c.iss, modes: c.modes,
      scopeSetting: { ehr: '--scope (SMART_SCOPE for the server)', standalone: '--scope (SMART_STANDALONE_SCOPE or SMART_SCOPE for the server)' },
      ...(c.publicUrl ? { uris: registerUris(c.publicUrl, c.production || !isLoopback(c.publicUrl)) } : {}),
      jwksUrls,
    }],
    notes, allowInsecureHttp, insecureReason, insecureHosts, timeoutMs: c.timeoutMs,
  };
}
