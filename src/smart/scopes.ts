/**
 * SMART scopes: v1 <-> v2 syntax following what the server advertises, and the launch scope.
 * SMART v1: `patient/Observation.read|write|*`; v2: `patient/Observation.rs` (c r u d s, in that order).
 */
export type ScopeSyntax = 'v1' | 'v2';

const CLINICAL = /^(patient|user|system)\/([A-Za-z*]+)\.([A-Za-z*]+)(\?.*)?$/;

/** Which syntaxes the server says it supports (from `capabilities`). Neither advertised → unknown. */
export function advertisedSyntaxes(capabilities: readonly string[] | undefined): Set<ScopeSyntax> {
  const out = new Set<ScopeSyntax>();
  if (capabilities?.includes('permission-v2')) out.add('v2');
  if (capabilities?.includes('permission-v1')) out.add('v1');
  return out;
}

export function scopeSyntaxOf(scope: string): ScopeSyntax | undefined {
  const m = CLINICAL.exec(scope);
  if (!m) return undefined;
  return /^(read|write|\*)$/.test(m[3]!) ? 'v1' : 'v2';
}

/** Converts one clinical scope to v1 syntax (`.rs` → `.read`, `.cud` → `.write`, `.cruds` → `.*`). */
export function toV1(scope: string): string[] {
  const m = CLINICAL.exec(scope);
  if (!m || scopeSyntaxOf(scope) !== 'v2') return [scope];
  const [, ctx, type, perms] = m;
  const read = /[rs]/.test(perms!);
  const write = /[cud]/.test(perms!);
  // v1 has no query parameters: a v2 scope with `?category=` widens to the whole type.
  if (read && write) return [`${ctx}/${type}.*`];
  if (write) return [`${ctx}/${type}.write`];
  return [`${ctx}/${type}.read`];
}

/** Converts one clinical scope to v2 syntax (`.read` → `.rs`, `.write` → `.cud`, `.*` → `.cruds`). */
export function toV2(scope: string): string {
  const m = CLINICAL.exec(scope);
  if (!m || scopeSyntaxOf(scope) !== 'v1') return scope;
  const [, ctx, type, perm] = m;
  const v2 = perm === 'read' ? 'rs' : perm === 'write' ? 'cud' : 'cruds';
  return `${ctx}/${type}.${v2}`;
}

/**
 * Rewrites clinical scopes to the syntax the server advertises: v2 when it lists permission-v2,
 * v1 when it lists only permission-v1, unchanged when it advertises neither.
 */
export function adaptScopes(scopes: readonly string[], capabilities: readonly string[] | undefined): string[] {
  const syntaxes = advertisedSyntaxes(capabilities);
  let out: string[];
  if (syntaxes.has('v2')) out = scopes.map(toV2);
  else if (syntaxes.has('v1')) out = scopes.flatMap(toV1);
  else out = [...scopes];
  return [...new Set(out)];
}

/** EHR launch needs `launch`; standalone launch needs `launch/patient` when patient scopes are requested. */
export function withLaunchScope(scopes: readonly string[], mode: 'ehr' | 'standalone'): string[] {
  const out = scopes.filter((s) => (mode === 'ehr' ? !s.startsWith('launch/') : s !== 'launch'));
  if (mode === 'ehr' && !out.includes('launch')) out.unshift('launch');
  if (mode === 'standalone' && !out.some((s) => s.startsWith('launch/')) && out.some((s) => s.startsWith('patient/'))) out.unshift('launch/patient');
  return out;
}

/** Scopes that were requested but not granted (a narrower grant is normal; the app should know). */
export function missingScopes(requested: readonly string[], granted: readonly string[]): string[] {
  const g = new Set(granted);
  return requested.filter((s) => !g.has(s));
}
