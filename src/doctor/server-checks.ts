/**
 * The checks of one registration against one FHIR server's SMART configuration, from what discovery found
 * (smart/discovery.ts examine()): pure functions of the document, the registration and our clock. The client
 * authentication lines are compatibility.ts's checks (the same that discovery logs and the invalid_client
 * diagnosis lists), and the scopes are those the launch would ask for (smart/launch-scopes.ts, scopes.ts).
 */
import type { DiscoveredServer, DiscoveryExamination, DiscoveryProblem } from '../smart/discovery.js';
import { SMART_URL_FIELDS } from '../smart/discovery.js';
import { authMethodCheck, basicEncodingCheck, signingAlgCheck, type CompatibilityCheck } from '../smart/compatibility.js';
import { backendCredentials, launchCredentials, type ClientCredentials } from '../smart/client-auth.js';
import { launchScopes } from '../smart/launch-scopes.js';
import { adaptScopes, advertisedSyntaxes, droppedScopeLog, scopeSyntaxOf, toV1, toV2 } from '../smart/scopes.js';
import { splitScopes } from '../oauth-scope.js';
import { ASSERTION_LIFETIME_SECONDS } from '../smart/client-auth.js';
import type { LaunchMode } from '../session/types.js';
import type { DoctorCheck } from './model.js';
import { isLoopback, type BackendTarget, type LaunchTarget, type Target } from './targets.js';

export interface ServerCheckContext {
  allowInsecureHttp: boolean;
  insecureReason: string;
  insecureHosts: 'any' | 'loopback';
}

const MODE_TEXT: Record<LaunchMode, string> = { ehr: 'EHR launch', standalone: 'standalone launch' };

/** Skew beyond which a warning, and an error (client assertions live five minutes). */
export const SKEW_WARNING_SECONDS = 60;
export const SKEW_ERROR_SECONDS = 300;

export function credentialsOf(target: Target): ClientCredentials {
  return target.kind === 'launch' ? launchCredentials(target.registration) : backendCredentials(target.client);
}

/** Every check that reads the SMART configuration (discovery succeeded in fetching a JSON object). */
export function serverChecks(exam: DiscoveryExamination & { document: Record<string, unknown> }, target: Target, ctx: ServerCheckContext): DoctorCheck[] {
  const doc = exam.document;
  const pseudo: DiscoveredServer = exam.server ?? { iss: target.kind === 'launch' ? target.iss : target.client.iss, configuration: doc as DiscoveredServer['configuration'], fetchedAt: exam.receivedAt };
  const capabilities = stringList(doc.capabilities) ?? [];
  const creds = credentialsOf(target);
  const checks: DoctorCheck[] = [
    configurationCheck(exam, target),
    httpsCheck(exam, target, ctx),
  ];
  if (target.kind === 'launch') checks.push(pkceCheck(doc));
  checks.push(target.kind === 'launch' ? launchCapabilities(target, pseudo, capabilities) : backendCapabilities(capabilities));
  checks.push(...clientAuthChecks(doc, creds));
  if (target.kind === 'launch') {
    checks.push(launchScopesCheck(target, pseudo, capabilities), refreshCheck(target, pseudo));
    const openid = openidCheck(target, pseudo);
    if (openid) checks.push(openid);
  } else {
    checks.push(backendScopesCheck(target, capabilities));
  }
  checks.push(clockCheck(exam.date, exam.receivedAt));
  return checks;
}

function stringList(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : undefined;
}

/** Problems that have their own line: https, PKCE, the client authentication method. */
function ownLine(p: DiscoveryProblem): boolean {
  return p.kind === 'not_https' || p.field === 'code_challenge_methods_supported' || p.field === 'token_endpoint_auth_methods_supported';
}

function configurationCheck(exam: DiscoveryExamination, target: Target): DoctorCheck {
  const rest = exam.problems.filter((p) => !ownLine(p));
  if (rest.length) {
    return {
      id: 'smart_configuration', status: 'error',
      message: `The SMART configuration at ${exam.url} cannot be used: ${rest.map((p) => p.text).join('; ')}.`,
      fix: target.kind === 'launch'
        ? 'Every launch at this server would fail (discovery_invalid). SMART App Launch requires these fields; check that the iss is the FHIR base URL of a SMART-enabled server (some EHRs serve SMART v1 and v2 at different URLs), or ask the EHR\'s administrators.'
        : 'Backend services need a token_endpoint and the client_credentials grant; check that the iss is the FHIR base URL of a server with SMART Backend Services, or ask the EHR\'s administrators.',
    };
  }
  return {
    id: 'smart_configuration', status: 'ok',
    message: exam.problems.length ? `Found at ${exam.url} (its other problems are on their own lines).` : `Found at ${exam.url}, and valid.`,
  };
}

function httpsCheck(exam: DiscoveryExamination & { document: Record<string, unknown> }, target: Target, ctx: ServerCheckContext): DoctorCheck {
  const iss = target.kind === 'launch' ? target.iss : target.client.iss;
  const http = [
    ...(iss.startsWith('http:') ? [{ name: 'the FHIR base', url: iss }] : []),
    ...SMART_URL_FIELDS.filter((f) => typeof exam.document[f] === 'string' && (exam.document[f] as string).startsWith('http:')).map((f) => ({ name: f, url: exam.document[f] as string })),
  ];
  if (!http.length) return { id: 'https', status: 'ok', message: 'The FHIR base and every endpoint are https.' };
  // A FHIR server on this machine may be plain http; its endpoints elsewhere may not (unless explicitly allowed).
  const refused = !ctx.allowInsecureHttp ? http : ctx.insecureHosts === 'loopback' ? http.filter((h) => !isLoopback(h.url)) : [];
  if (!refused.length) {
    return {
      id: 'https', status: 'ok',
      message: `http accepted for a local development EHR (${ctx.insecureReason}): ${list(http.map((h) => h.name))} ${http.length > 1 ? 'are' : 'is'} http. Never in production, where every endpoint must be https.`,
    };
  }
  return {
    id: 'https', status: 'error',
    message: `Not https: ${refused.map((h) => `${h.name} ${h.url}`).join(', ')}.`,
    fix: 'SMART requires TLS: the EHR must serve these over https. For a local development EHR only, set ALLOW_INSECURE_HTTP=1 (refused in production), or --insecure on the command line.',
  };
}

function list(items: readonly string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

function pkceCheck(doc: Record<string, unknown>): DoctorCheck {
  const methods = stringList(doc.code_challenge_methods_supported);
  if (methods?.includes('S256')) return { id: 'pkce_s256', status: 'ok', message: 'Supported (code_challenge_methods_supported lists S256).' };
  return {
    id: 'pkce_s256', status: 'error',
    message: methods
      ? `code_challenge_methods_supported does not include S256 (it lists: ${methods.join(', ') || 'nothing'}).`
      : 'code_challenge_methods_supported is missing: the server does not say it supports PKCE S256.',
    fix: 'SMART App Launch 2 requires PKCE with S256, and smart-bff never falls back to plain nor launches without PKCE: every launch at this server fails (discovery_invalid). Ask the EHR to enable S256 (a SMART v2 endpoint; some EHRs serve v1 and v2 at different FHIR base URLs).',
  };
}

interface Need {
  capability: string;
  why: string;
  /** How to stop needing it. */
  avoid: string;
}

function launchCapabilities(target: LaunchTarget, server: DiscoveredServer, advertised: string[]): DoctorCheck {
  const reg = target.registration;
  const needs: Need[] = [];
  const add = (n: Need) => { if (!needs.some((x) => x.capability === n.capability)) needs.push(n); };
  const modeFlag = (m: LaunchMode) => `--launch-mode ${m === 'ehr' ? 'standalone' : 'ehr'} if the app is never started with a ${MODE_TEXT[m]}`;
  for (const mode of target.modes) {
    add({ capability: mode === 'ehr' ? 'launch-ehr' : 'launch-standalone', why: `${MODE_TEXT[mode]} (${mode === 'ehr' ? '/launch' : '/login'})`, avoid: modeFlag(mode) });
  }
  const typeCap = reg.clientType === 'public' ? 'client-public' : reg.clientType === 'confidential-symmetric' ? 'client-confidential-symmetric' : 'client-confidential-asymmetric';
  add({ capability: typeCap, why: `our client type (${reg.clientType})`, avoid: 'register the client with a type the server supports and configure it here' });
  for (const mode of target.modes) {
    const configured = splitScopes(mode === 'ehr' ? reg.scope : reg.standaloneScope);
    const scopes = launchScopes(mode === 'ehr' ? reg.scope : reg.standaloneScope, mode, server).scopes;
    const setting = target.scopeSetting[mode];
    if (scopes.some((s) => s.startsWith('patient/'))) {
      add({ capability: mode === 'ehr' ? 'context-ehr-patient' : 'context-standalone-patient', why: `the patient context of a ${MODE_TEXT[mode]} (patient/ scopes)`, avoid: `drop the patient/ scopes from ${setting}` });
      add({ capability: 'permission-patient', why: 'patient/ scopes', avoid: `drop the patient/ scopes from ${setting}` });
    }
    if (scopes.some((s) => s.startsWith('user/'))) add({ capability: 'permission-user', why: 'user/ scopes', avoid: `drop the user/ scopes from ${setting}` });
    if (configured.includes('offline_access')) add({ capability: 'permission-offline', why: 'offline_access (refresh tokens)', avoid: `ask for online_access instead in ${setting}` });
    if (configured.includes('online_access')) add({ capability: 'permission-online', why: 'online_access (refresh tokens while the user is online)', avoid: `ask for offline_access instead in ${setting}` });
    if (configured.includes('openid')) add({ capability: 'sso-openid-connect', why: 'openid fhirUser (who the user is)', avoid: `drop openid fhirUser from ${setting}` });
  }
  return capabilitiesCheck(needs, advertised);
}

function backendCapabilities(advertised: string[]): DoctorCheck {
  return capabilitiesCheck([{ capability: 'client-confidential-asymmetric', why: 'backend services (private_key_jwt)', avoid: 'ask the EHR whether this server offers SMART Backend Services' }], advertised);
}

function capabilitiesCheck(needs: Need[], advertised: string[]): DoctorCheck {
  const missing = needs.filter((n) => !advertised.includes(n.capability));
  if (!missing.length) return { id: 'capabilities', status: 'ok', message: `Advertised: ${needs.map((n) => n.capability).join(', ')} (everything this registration uses).` };
  return {
    id: 'capabilities', status: 'warning',
    message: `The server does not advertise ${missing.map((n) => `${n.capability} (${n.why})`).join(', ')}${advertised.length ? '' : ': its SMART configuration lists no capabilities at all'}.`,
    fix: `Ask the EHR's administrators whether ${missing.length > 1 ? 'they are' : 'it is'} supported for this client; otherwise ${missing.map((n) => n.avoid).join('; ')}.`,
  };
}

/** compatibility.ts's checks as doctor lines: a method or algorithm the server does not advertise is refused there (error). */
function clientAuthChecks(doc: Record<string, unknown>, creds: ClientCredentials): DoctorCheck[] {
  const smart = doc as Parameters<typeof authMethodCheck>[0];
  const out: DoctorCheck[] = [];
  const method = authMethodCheck(smart, creds);
  out.push(fromCompatibility('auth_method', method, 'error', `Check which client authentication the EHR registered for this client (we send ${creds.method}).`));
  const enc = basicEncodingCheck(creds);
  if (enc.status !== 'not_applicable') out.push(fromCompatibility('basic_encoding', enc, 'warning'));
  const alg = signingAlgCheck(smart, creds);
  if (alg.status !== 'not_applicable') out.push(fromCompatibility('signing_alg', alg, 'error', `Check that the EHR accepts ${alg.ours ?? ''} client assertions (the key registered there must be this ${alg.ours ?? ''} key).`));
  return out;
}

function fromCompatibility(id: 'auth_method' | 'basic_encoding' | 'signing_alg', c: CompatibilityCheck, whenWarning: 'warning' | 'error', unknownFix?: string): DoctorCheck {
  switch (c.status) {
    case 'ok':
    case 'not_applicable':
      return { id, status: 'ok', message: c.message };
    case 'warning':
      return { id, status: whenWarning, message: c.message, ...(c.fix ? { fix: c.fix } : {}) };
    case 'unknown':
      return { id, status: 'warning', message: c.message, ...(unknownFix ? { fix: unknownFix } : {}) };
  }
}

/** What happens to each configured scope at this server: converted exactly, narrowed, or left out. */
function scopeChanges(configured: readonly string[], capabilities: readonly string[]): { converted: string[]; lost: string[] } {
  const syntaxes = advertisedSyntaxes(capabilities);
  const converted: string[] = [];
  const lost: string[] = [];
  for (const s of configured) {
    if (syntaxes.has('v2')) {
      const v2 = toV2(s);
      if (v2 !== s) converted.push(`${s} → ${v2}`);
    } else if (syntaxes.has('v1')) {
      const c = toV1(s);
      if (c.dropped) lost.push(droppedScopeLog(c.dropped).message);
      else if (c.scopes[0] !== s) converted.push(`${s} → ${c.scopes[0]}`);
    }
  }
  return { converted, lost };
}

function syntaxText(capabilities: readonly string[]): string {
  const s = advertisedSyntaxes(capabilities);
  return s.has('v2') ? `SMART v2 scopes (permission-v2${s.has('v1') ? ', and permission-v1' : ''})` : s.has('v1') ? 'SMART v1 scopes only (permission-v1, not permission-v2)' : 'neither permission-v1 nor permission-v2';
}

function launchScopesCheck(target: LaunchTarget, server: DiscoveredServer, capabilities: string[]): DoctorCheck {
  const reg = target.registration;
  const perMode = target.modes.map((mode) => ({ mode, configured: splitScopes(mode === 'ehr' ? reg.scope : reg.standaloneScope), planned: launchScopes(mode === 'ehr' ? reg.scope : reg.standaloneScope, mode, server) }));
  const asked = perMode.map((p) => `${MODE_TEXT[p.mode]}: ${p.planned.scopes.join(' ')}`).join('; ');
  const converted = new Set<string>();
  const lost = new Set<string>();
  for (const p of perMode) {
    const c = scopeChanges(p.configured, capabilities);
    c.converted.forEach((x) => converted.add(x));
    c.lost.forEach((x) => lost.add(x));
  }
  return scopesResult(capabilities, asked, [...converted], [...lost], perMode.flatMap((p) => p.configured), target.scopeSetting[target.modes[0]!]);
}

function backendScopesCheck(target: BackendTarget, capabilities: string[]): DoctorCheck {
  const configured = splitScopes(target.client.scope);
  const adapted = adaptScopes(configured, capabilities);
  const c = scopeChanges(configured, capabilities);
  if (!adapted.scopes.length) {
    return {
      id: 'scopes', status: 'error',
      message: `None of the configured scopes (${target.client.scope}) can be asked of this server without asking for more: it speaks ${syntaxText(capabilities)}.`,
      fix: `Configure system scopes that SMART v1 expresses exactly (system/Patient.rs → system/Patient.read) in ${target.scopeSetting}.`,
      details: c.lost,
    };
  }
  return scopesResult(capabilities, `client_credentials: ${adapted.scopes.join(' ')}`, c.converted, c.lost, configured, target.scopeSetting);
}

function scopesResult(capabilities: readonly string[], asked: string, converted: string[], lost: string[], configured: readonly string[], setting: string): DoctorCheck {
  const syntaxes = advertisedSyntaxes(capabilities);
  const details = [...converted.map((c) => `converted exactly: ${c}`), ...lost];
  if (lost.length) {
    return {
      id: 'scopes', status: 'warning',
      message: `The server speaks ${syntaxText(capabilities)}: ${lost.length} configured scope${lost.length > 1 ? 's are' : ' is'} narrowed or left out (never widened). Asked for: ${asked}.`,
      fix: `Configure scopes that SMART v1 expresses exactly (.rs → .read, .cud → .write, .cruds → .*, no ?filters) in ${setting}, or ask the EHR to enable SMART v2 scopes (permission-v2).`,
      details,
    };
  }
  if (!syntaxes.size && configured.some((s) => scopeSyntaxOf(s) !== undefined)) {
    return {
      id: 'scopes', status: 'warning',
      message: `The server advertises neither permission-v1 nor permission-v2, so the scopes go as configured. Asked for: ${asked}.`,
      fix: 'Ask the EHR which scope syntax it accepts: a v1-only server refuses v2 scopes (.rs) with invalid_scope. If it is v1 only, configure v1 scopes (.read), or have it advertise permission-v1 and the app converts them.',
    };
  }
  return {
    id: 'scopes', status: 'ok',
    message: `The server speaks ${syntaxText(capabilities)}${converted.length ? `; ${converted.length} scope${converted.length > 1 ? 's are' : ' is'} converted exactly` : ''}. Asked for: ${asked}.`,
    ...(details.length ? { details } : {}),
  };
}

function refreshCheck(target: LaunchTarget, server: DiscoveredServer): DoctorCheck {
  const reg = target.registration;
  const without = target.modes.filter((mode) => {
    const scopes = launchScopes(mode === 'ehr' ? reg.scope : reg.standaloneScope, mode, server).scopes;
    return !scopes.includes('online_access') && !scopes.includes('offline_access');
  });
  if (!without.length) {
    const which = ['offline_access', 'online_access'].filter((s) => splitScopes(`${reg.scope} ${reg.standaloneScope}`).includes(s));
    return { id: 'refresh', status: 'ok', message: `${which.join(' and ')} requested: the server can issue a refresh token.` };
  }
  return {
    id: 'refresh', status: 'warning',
    message: `Neither online_access nor offline_access is requested (${without.map((m) => MODE_TEXT[m]).join(', ')}): no refresh token, so the session ends when the access token expires (Oracle Health's expire after about 10 minutes).`,
    fix: `Add online_access (or offline_access) to ${without.map((m) => target.scopeSetting[m]).filter((v, i, a) => a.indexOf(v) === i).join(' and ')}, and to the scopes registered at the EHR.`,
  };
}

function openidCheck(target: LaunchTarget, server: DiscoveredServer): DoctorCheck | undefined {
  const reg = target.registration;
  const modes = target.modes.filter((m) => splitScopes(m === 'ehr' ? reg.scope : reg.standaloneScope).includes('openid'));
  if (!modes.length) return undefined;
  const dropped = launchScopes(modes[0] === 'ehr' ? reg.scope : reg.standaloneScope, modes[0]!, server).openidDropped;
  if (!dropped) return { id: 'openid', status: 'ok', message: 'Possible: the SMART configuration has an issuer and a jwks_uri, so the ID token can be verified and fhirUser read.' };
  return {
    id: 'openid', status: 'warning',
    message: `The SMART configuration has no ${dropped}, so openid and fhirUser will be dropped from the request (an ID token could not be ${dropped === 'issuer' ? 'validated' : 'verified'}): the app will not know who the user is.`,
    fix: `Ask the EHR to publish ${dropped} in its SMART configuration (SMART requires issuer and jwks_uri with sso-openid-connect), or remove openid fhirUser from ${target.scopeSetting[modes[0]!]} if the app does not need the user.`,
  };
}

export function clockCheck(date: string | null, receivedAt: number): DoctorCheck {
  const serverTime = date ? Date.parse(date) : Number.NaN;
  if (!Number.isFinite(serverTime)) {
    return { id: 'clock_skew', status: 'warning', message: 'The server sent no usable Date header: clock skew not checked.', fix: 'Check this machine\'s clock (NTP) and ask the EHR about theirs if tokens fail with exp/iat errors.' };
  }
  // The Date header has whole seconds: allow the second it was cut to.
  const skew = Math.round((receivedAt - serverTime) / 1000);
  const abs = Math.abs(skew);
  const text = abs <= 1 ? 'Our clock agrees with the server\'s (its Date header) to within a second.' : `Our clock is ${abs} s ${skew > 0 ? 'ahead of' : 'behind'} the server's (its Date header).`;
  if (abs <= SKEW_WARNING_SECONDS) return { id: 'clock_skew', status: 'ok', message: text };
  const fix = `Sync this machine's clock (NTP); if it is right, the EHR's is wrong: tell its administrators. Client assertions live ${ASSERTION_LIFETIME_SECONDS} s (SMART allows 5 minutes) and ID tokens are checked against the clock.`;
  if (abs <= SKEW_ERROR_SECONDS) return { id: 'clock_skew', status: 'warning', message: `${text} Over ${SKEW_WARNING_SECONDS} s, token and ID token checks start failing at some servers.`, fix };
  return { id: 'clock_skew', status: 'error', message: `${text} Over ${SKEW_ERROR_SECONDS / 60} minutes, the server refuses our client assertions (their exp/iat) and ID tokens look expired or not yet valid.`, fix };
}
