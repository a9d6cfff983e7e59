/**
 * SMART scopes: v1 <-> v2 syntax following what the server advertises, and the launch scope.
 * SMART v1: `patient/Observation.read|write|*`; v2: `patient/Observation.rs` (c r u d s, in that order).
 *
 * Converting never asks for more than was configured. v1 has three permissions, each a fixed bundle of v2 ones:
 * `.read` = r + s, `.write` = c + u + d, `.*` = all five; and v1 has no query filters. A v2 scope is converted
 * to the v1 bundles it holds whole (`.rs` → `.read`, `.cud` → `.write`, `.cruds` → `.*`); the permissions left
 * over are not asked for (`.crs` → `.read`, without create), and a scope with nothing left (`.r`, `.s`, `.c`,
 * `.cu`, …) or with a filter (`?category=laboratory`, which `.read` would not limit) is not asked for at all.
 * Each such scope comes back in `dropped`, with the reason, for the caller to log.
 */
export type ScopeSyntax = 'v1' | 'v2';

const CLINICAL = /^(patient|user|system)\/([A-Za-z*]+)\.([A-Za-z*]+)(\?.*)?$/;
const V2_PERMISSIONS = /^c?r?u?d?s?$/;

const PERMISSION_NAMES: Record<string, string> = { c: 'create (c)', r: 'read (r)', u: 'update (u)', d: 'delete (d)', s: 'search (s)' };
/** The v1 permissions, as the v2 permissions each one grants. */
const V1_BUNDLES = [
  { v1: 'read', grants: ['r', 's'] },
  { v1: 'write', grants: ['c', 'u', 'd'] },
] as const;

/** Which syntaxes the server says it supports (from `capabilities`). Neither advertised → unknown. */
export function advertisedSyntaxes(capabilities: readonly string[] | undefined): Set<ScopeSyntax> {
  const out = new Set<ScopeSyntax>();
  if (capabilities?.includes('permission-v2')) out.add('v2');
  if (capabilities?.includes('permission-v1')) out.add('v1');
  return out;
}

/** v1 (`.read`, `.write`, `.*`), v2 (`.rs`, any of c r u d s in order), or neither (not a clinical scope, or a permission string of neither syntax). */
export function scopeSyntaxOf(scope: string): ScopeSyntax | undefined {
  const m = CLINICAL.exec(scope);
  if (!m) return undefined;
  if (/^(read|write|\*)$/.test(m[3]!)) return 'v1';
  return m[3] && V2_PERMISSIONS.test(m[3]) ? 'v2' : undefined;
}

/** A configured scope that is not asked for whole: what is sent instead (nothing, or a narrower v1 scope) and why. */
export interface DroppedScope {
  scope: string;
  /** The narrower scope asked for in its place; empty when the scope is not asked for at all. */
  sentInstead: string[];
  reason: string;
}

export interface V1Conversion {
  scopes: string[];
  dropped?: DroppedScope;
}

function list(items: string[]): string {
  return items.length <= 1 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}

/**
 * One scope in v1 syntax, never wider than it was: `.rs` → `.read`, `.cud` → `.write`, `.cruds` → `.*`; a v2
 * scope whose permissions v1 cannot express exactly is narrowed or dropped (see the file comment). Scopes that
 * are not v2 clinical scopes are returned as they are.
 */
export function toV1(scope: string): V1Conversion {
  const m = CLINICAL.exec(scope);
  if (!m || scopeSyntaxOf(scope) !== 'v2') return { scopes: [scope] };
  const [, ctx, type, perms, query] = m as unknown as [string, string, string, string, string | undefined];
  if (query) {
    const unfiltered = toV1(`${ctx}/${type}.${perms}`).scopes;
    const what = type === '*' ? 'resource' : `${type} resource`;
    return {
      scopes: [],
      dropped: {
        scope, sentInstead: [],
        reason: `the server only speaks SMART v1, whose scopes have no filters: ${unfiltered.length ? unfiltered.join(' ') : 'a v1 scope'} would grant every ${what}, not only those matching ${query}`,
      },
    };
  }
  const whole = V1_BUNDLES.filter((b) => b.grants.every((p) => perms.includes(p)));
  const v1 = whole.length === 2 ? '*' : whole[0]?.v1;
  const scopes = v1 ? [`${ctx}/${type}.${v1}`] : [];
  const covered = new Set<string>(whole.flatMap((b) => [...b.grants]));
  const left = [...perms].filter((p) => !covered.has(p));
  if (left.length === 0) return { scopes };
  const wider = V1_BUNDLES.filter((b) => b.grants.some((p) => left.includes(p))).map((b) => {
    const extra = b.grants.filter((p) => !perms.includes(p)).map((p) => PERMISSION_NAMES[p]!);
    return `v1 .${b.v1} would also grant ${list(extra)}`;
  });
  return {
    scopes,
    dropped: {
      scope, sentInstead: scopes,
      reason: `the server only speaks SMART v1, and no v1 scope grants ${list(left.map((p) => PERMISSION_NAMES[p]!))} without more (${wider.join('; ')})`,
    },
  };
}

/** Converts one clinical scope to v2 syntax (`.read` → `.rs`, `.write` → `.cud`, `.*` → `.cruds`): always exact. */
export function toV2(scope: string): string {
  const m = CLINICAL.exec(scope);
  if (!m || scopeSyntaxOf(scope) !== 'v1') return scope;
  const [, ctx, type, perm] = m;
  const v2 = perm === 'read' ? 'rs' : perm === 'write' ? 'cud' : 'cruds';
  return `${ctx}/${type}.${v2}`;
}

/** A dropped scope for a log line: the fields and the message. */
export function droppedScopeLog(d: DroppedScope): { fields: Record<string, unknown>; message: string } {
  const sent = d.sentInstead.join(' ');
  return {
    fields: { scope: d.scope, sent_instead: sent || null, reason: 'not_expressible_in_v1', detail: d.reason },
    message: `${d.scope} is ${sent ? `narrowed to ${sent}` : 'not requested'}: ${d.reason}`,
  };
}

export interface AdaptedScopes {
  scopes: string[];
  /** Configured scopes not asked for whole, each with the reason: log each one. */
  dropped: DroppedScope[];
}

/**
 * Rewrites clinical scopes to the syntax the server advertises: v2 when it lists permission-v2, v1 when it lists
 * only permission-v1 (never wider than configured), unchanged when it advertises neither.
 */
export function adaptScopes(scopes: readonly string[], capabilities: readonly string[] | undefined): AdaptedScopes {
  const syntaxes = advertisedSyntaxes(capabilities);
  if (syntaxes.has('v2')) return { scopes: [...new Set(scopes.map(toV2))], dropped: [] };
  if (!syntaxes.has('v1')) return { scopes: [...new Set(scopes)], dropped: [] };
  const dropped: DroppedScope[] = [];
  const out = scopes.flatMap((s) => {
    const c = toV1(s);
    if (c.dropped) dropped.push(c.dropped);
    return c.scopes;
  });
  return { scopes: [...new Set(out)], dropped };
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
