/**
 * Runs `smart-bff doctor`'s checks for every target of a plan: discovery through the real DiscoveryCache (its
 * timeout, size cap and redirect rules), the checks of the SMART configuration, the JWKS URLs, the URIs to
 * register, and for backend services a real token request through the BackendTokenClient (the token is never
 * kept, printed or logged: only its scopes and lifetime are reported).
 */
import type { Logger } from '../log.js';
import { DiscoveryCache } from '../smart/discovery.js';
import { BackendTokenClient } from '../backend-services/token-client.js';
import { describeFailure } from '../backend-services/export-errors.js';
import { adaptScopes, missingScopes } from '../smart/scopes.js';
import { splitScopes } from '../oauth-scope.js';
import { buildReport, worst, type CheckId, type DoctorCheck, type DoctorReport, type TargetReport } from './model.js';
import { serverChecks } from './server-checks.js';
import { jwksUrlCheck } from './jwks-check.js';
import type { BackendTarget, DoctorPlan, RegisterUris, Target } from './targets.js';

export interface RunOptions {
  logger: Logger;
  /** Checks not to run (--skip). */
  skip?: ReadonlySet<CheckId>;
}

export async function runDoctor(plan: DoctorPlan, opts: RunOptions): Promise<DoctorReport> {
  const caches = {
    launch: new DiscoveryCache({ purpose: 'launch', ttlSeconds: 600, timeoutMs: plan.timeoutMs, allowInsecureHttp: plan.allowInsecureHttp, maxEntries: 100 }),
    backend: new DiscoveryCache({ purpose: 'backend', ttlSeconds: 600, timeoutMs: plan.timeoutMs, allowInsecureHttp: plan.allowInsecureHttp, maxEntries: 100 }),
  };
  const tokens = new BackendTokenClient({ discovery: caches.backend, logger: opts.logger, timeoutMs: plan.timeoutMs, allowInsecureHttp: plan.allowInsecureHttp, skewSeconds: 0 });
  const skip = opts.skip ?? new Set<CheckId>();
  const reports = await Promise.all(plan.targets.map((t) => checkTarget(t, plan, caches[t.kind], tokens, skip, opts.logger)));
  const notes = [...plan.notes, ...(skip.size ? [`Not checked (--skip): ${[...skip].join(', ')}.`] : [])];
  return buildReport(reports, notes);
}

async function checkTarget(target: Target, plan: DoctorPlan, discovery: DiscoveryCache, tokens: BackendTokenClient, skip: ReadonlySet<CheckId>, logger: Logger): Promise<TargetReport> {
  const iss = target.kind === 'launch' ? target.iss : target.client.iss;
  const log = logger.child({ doctor: target.kind === 'launch' ? target.registration.name : target.name, iss });
  const checks: DoctorCheck[] = [];
  const exam = await discovery.examine(iss, log);
  if (exam.document) {
    checks.push(...serverChecks({ ...exam, document: exam.document }, target, plan));
  } else {
    checks.push({
      id: 'smart_configuration', status: 'error',
      message: exam.error?.message ?? `No SMART configuration at ${exam.url}.`,
      fix: exam.error?.hint && !/share this page/.test(exam.error.hint)
        ? `${exam.error.hint.replace(/,? then launch again\.?$/, '.')} The configuration must be at <iss>/.well-known/smart-configuration.`
        : 'Check that the iss is the FHIR base URL of a SMART-enabled server: the configuration must be at <iss>/.well-known/smart-configuration.',
    });
  }
  const key = target.kind === 'launch' ? target.registration.key : target.client.key;
  if (key && !skip.has('jwks_url')) {
    checks.push(...(await Promise.all(target.jwksUrls.map((j) => jwksUrlCheck(j, key, { timeoutMs: plan.timeoutMs })))));
  }
  if (target.kind === 'launch' && target.uris) checks.push(registerUrisCheck(target.uris));
  // The token request needs a usable configuration, and goes only where the https check allows.
  const httpsRefused = checks.some((c) => c.id === 'https' && c.status === 'error');
  if (target.kind === 'backend' && exam.server && !httpsRefused && !skip.has('token_request')) checks.push(await tokenRequestCheck(target, tokens, exam.server.configuration.capabilities));
  const kept = checks.filter((c) => !skip.has(c.id));
  const reg = target.kind === 'launch' ? target.registration : undefined;
  return {
    registration: target.kind === 'launch' ? target.registration.name : target.name,
    kind: target.kind,
    iss,
    clientId: target.kind === 'launch' ? target.registration.clientId : target.client.clientId,
    client: reg
      ? reg.clientType === 'public' ? 'public'
        : reg.clientType === 'confidential-symmetric' ? `confidential-symmetric (${reg.clientSecretMethod ?? 'client_secret_basic'})`
          : `confidential-asymmetric (private_key_jwt, ${reg.key?.alg} key ${reg.key?.kid})`
      : `backend services (private_key_jwt, ${key!.alg} key ${key!.kid})`,
    status: worst(kept.map((c) => c.status)),
    checks: kept,
  };
}

export function registerUrisCheck(u: RegisterUris): DoctorCheck {
  const https = u.publicUrl.startsWith('https:');
  if (!https && u.production) {
    return {
      id: 'register_uris', status: 'error',
      message: `PUBLIC_URL is not https (${u.publicUrl}): EHRs refuse http redirect URIs outside this machine, and the launch and session cookies need https.`,
      fix: 'Set PUBLIC_URL to the app\'s external https origin (https://my-app.herokuapp.com), then register its /launch and /callback.',
    };
  }
  return {
    id: 'register_uris', status: 'ok',
    message: `Register at the EHR, exactly: launch URI ${u.launchUri}, redirect URI ${u.redirectUri}${https ? '' : ' (http: development on this machine only)'}.`,
  };
}

async function tokenRequestCheck(target: BackendTarget, tokens: BackendTokenClient, capabilities: readonly string[]): Promise<DoctorCheck> {
  try {
    const t = await tokens.getToken(target.client, { forceRenew: true });
    const lifetime = Math.max(0, Math.round((t.expiresAt - Date.now()) / 1000));
    // What was asked: the configured scopes in the server's syntax (the client logs what it left out).
    const asked = adaptScopes(splitScopes(target.client.scope), capabilities).scopes;
    const granted = splitScopes(t.scope);
    const message = `A real token request (client_credentials, signed assertion) at ${t.tokenEndpoint} was granted: scope ${t.scope || '(none named)'}, valid for ${lifetime} s.`;
    const notGranted = missingScopes(asked, granted).filter((s) => !granted.some((g) => sameScope(s, g)));
    if (notGranted.length && t.scope) {
      return {
        id: 'token_request', status: 'warning', message: `${message} Asked for but not granted: ${notGranted.join(' ')}.`,
        fix: `Register these system scopes for the client at the EHR, or stop asking for them (${target.scopeSetting}).`,
      };
    }
    return { id: 'token_request', status: 'ok', message };
  } catch (err) {
    const f = describeFailure(err);
    return {
      id: 'token_request', status: 'error', message: f.message,
      fix: FIXES[f.code] ?? 'Go through the likely causes in order.',
      ...(f.causes.length ? { causes: f.causes } : {}),
    };
  }
}

/** v1 and v2 spellings of one scope are the same grant (system/Patient.read = system/Patient.rs). */
function sameScope(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/\.read$/, '.rs').replace(/\.write$/, '.cud').replace(/\.\*$/, '.cruds');
  return norm(a) === norm(b);
}

const FIXES: Record<string, string> = {
  invalid_client: 'Go through the likely causes in order (docs/deploy.md, "invalid_client: what to check first"): the client id for this server, the key registered at the EHR (its kid), the algorithm, the clock.',
  invalid_grant: 'The server refused the assertion: go through the likely causes in order (the kid registered at the EHR, the aud, the clock).',
  invalid_scope: `Ask only for system scopes registered for this client at the EHR, in the syntax it speaks.`,
  unauthorized_client: 'Register the client at the EHR as a backend services (system) client allowed to use client_credentials.',
  unavailable: 'The token endpoint did not answer usably: try again; if it persists, ask the EHR\'s administrators.',
  discovery_failed: 'Check the iss and that the server is up.',
  scope_not_expressible: 'Configure system scopes that SMART v1 expresses exactly (system/Patient.read).',
};
