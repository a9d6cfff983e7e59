/**
 * `smart-bff doctor`'s output: for people, grouped per registration, one line per check (✓, ⚠, ✗ and a word,
 * so it reads without colour), the fix under each ⚠ and ✗; colour only when asked (a TTY without NO_COLOR).
 * For programs, `--json`: the report as one object.
 */
import type { DoctorCheck, DoctorReport, DoctorStatus, TargetReport } from './model.js';

const SYMBOL: Record<DoctorStatus, string> = { ok: '✓', warning: '⚠', error: '✗' };
const COLOUR: Record<DoctorStatus, string> = { ok: '32', warning: '33', error: '31' };

const LABEL: Record<DoctorCheck['id'], string> = {
  smart_configuration: 'SMART configuration',
  https: 'https',
  pkce_s256: 'PKCE S256',
  capabilities: 'capabilities',
  auth_method: 'client authentication',
  basic_encoding: 'Basic encoding',
  signing_alg: 'signing algorithm',
  scopes: 'scopes',
  refresh: 'refresh token',
  openid: 'openid fhirUser',
  jwks_url: 'JWKS URL',
  clock_skew: 'clock',
  token_request: 'token request',
  register_uris: 'URIs to register',
};

/** Colour when writing to a terminal, unless NO_COLOR is set (https://no-color.org). */
export function useColour(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): boolean {
  return Boolean(stream.isTTY) && !env.NO_COLOR;
}

export function renderJson(report: DoctorReport): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}

export function renderText(report: DoctorReport, opts: { colour: boolean }): string {
  const paint = (code: string, s: string) => (opts.colour ? `\x1b[${code}m${s}\x1b[0m` : s);
  const mark = (s: DoctorStatus) => paint(COLOUR[s], SYMBOL[s]);
  const out: string[] = [];
  if (report.problems.length) {
    out.push(paint('1', 'Configuration'));
    for (const p of report.problems) out.push(`  ${mark('error')} ${p}`);
    out.push('      fix: the server would refuse to start with this configuration; nothing else was checked. See .env.example for every variable.', '');
  }
  for (const r of report.registrations) {
    out.push(paint('1', heading(r)));
    for (const c of r.checks) {
      out.push(`  ${mark(c.status)} ${LABEL[c.id]}: ${c.message}`);
      for (const d of c.details ?? []) out.push(`      - ${d}`);
      if (c.causes?.length) out.push('      likely causes:', ...c.causes.map((x) => `        - ${x}`));
      if (c.fix && c.status !== 'ok') out.push(`      fix: ${c.fix}`);
    }
    out.push('');
  }
  for (const n of report.notes) out.push(`note: ${n}`);
  if (report.notes.length) out.push('');
  out.push(summary(report, mark));
  return `${out.join('\n')}\n`;
}

function heading(r: TargetReport): string {
  return `${r.kind === 'launch' ? 'Launch' : 'Backend services'} registration "${r.registration}" · client ${r.clientId}, ${r.client} · ${r.iss}`;
}

function summary(report: DoctorReport, mark: (s: DoctorStatus) => string): string {
  const { ok, warning, error } = report.counts;
  const n = report.registrations.length;
  const what = report.problems.length ? 'configuration refused' : `${n} registration${n === 1 ? '' : 's'} checked`;
  const verdict = report.status === 'ok' ? 'all good' : report.status === 'warning' ? 'warnings' : 'errors';
  if (!n && !report.problems.length) return `Nothing checked (exit 2).`;
  return `${what}: ${mark('ok')} ${ok} ok, ${mark('warning')} ${warning} warning${warning === 1 ? '' : 's'}, ${mark('error')} ${error} error${error === 1 ? '' : 's'} — ${verdict} (exit ${report.exitCode}).`;
}
