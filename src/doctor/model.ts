/**
 * `smart-bff doctor`'s report: per registration (and FHIR server), a list of checks, each ok, warning or error
 * with one sentence and, when not ok, the fix. The exit code follows the worst status: 0 all ok, 1 warnings,
 * 2 errors. Nothing in a report holds a secret, a token or a private key.
 */
export type DoctorStatus = 'ok' | 'warning' | 'error';

/** Stable ids (the `--json` output and `--skip`). */
export const CHECK_IDS = [
  'smart_configuration', 'https', 'pkce_s256', 'capabilities', 'auth_method', 'basic_encoding', 'signing_alg',
  'scopes', 'refresh', 'openid', 'jwks_url', 'clock_skew', 'token_request', 'register_uris',
] as const;
export type CheckId = (typeof CHECK_IDS)[number];

export interface DoctorCheck {
  id: CheckId;
  status: DoctorStatus;
  /** One sentence for people. */
  message: string;
  /** What to change, when the status is not ok. */
  fix?: string;
  /** More lines: the scopes converted, narrowed or left out. */
  details?: string[];
  /** A refused token request: the likely causes, most likely first (the same as `smart-bff token` prints). */
  causes?: string[];
}

export interface TargetReport {
  /** The registration's name (`default`, a SMART_CONFIG_FILE name, `sandbox`, or `command line`). */
  registration: string;
  kind: 'launch' | 'backend';
  /** The FHIR base checked. */
  iss: string;
  clientId: string;
  /** public, confidential-symmetric (client_secret_basic|post), confidential-asymmetric (private_key_jwt, alg, kid). */
  client: string;
  status: DoctorStatus;
  checks: DoctorCheck[];
}

export interface DoctorReport {
  status: DoctorStatus;
  exitCode: 0 | 1 | 2;
  counts: Record<DoctorStatus, number>;
  /** The configuration could not be loaded: every problem, as the server would report them (nothing else was checked). */
  problems: string[];
  /** What the doctor did not check and why; the configuration's warnings. */
  notes: string[];
  registrations: TargetReport[];
}

const RANK: Record<DoctorStatus, number> = { ok: 0, warning: 1, error: 2 };

export function worst(statuses: Iterable<DoctorStatus>): DoctorStatus {
  let w: DoctorStatus = 'ok';
  for (const s of statuses) if (RANK[s] > RANK[w]) w = s;
  return w;
}

export function exitCodeFor(status: DoctorStatus): 0 | 1 | 2 {
  return RANK[status] as 0 | 1 | 2;
}

export function buildReport(registrations: TargetReport[], notes: string[], problems: string[] = []): DoctorReport {
  const counts: Record<DoctorStatus, number> = { ok: 0, warning: 0, error: problems.length };
  for (const r of registrations) for (const c of r.checks) counts[c.status]++;
  // Nothing checked is a failure too: a pipeline must not pass on a doctor that found no registration.
  const status = problems.length || !registrations.length ? 'error' : worst(registrations.map((r) => r.status));
  return { status, exitCode: exitCodeFor(status), counts, problems, notes, registrations };
}
