/** SMART scope checks for the sandbox FHIR server (v1 and v2 syntax; patient, user and system levels). */

export type Interaction = 'read' | 'search' | 'create' | 'update' | 'delete';

const SCOPE = /^(patient|user|system)\/(\*|[A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)$/;
const V2_LETTER: Record<Interaction, string> = { create: 'c', read: 'r', update: 'u', delete: 'd', search: 's' };

export interface Grant {
  levels: Set<'patient' | 'user' | 'system'>;
}

/** Which levels (patient/user/system) grant this interaction on this type. */
export function grantingLevels(scopes: readonly string[], resourceType: string, interaction: Interaction): Set<'patient' | 'user' | 'system'> {
  const out = new Set<'patient' | 'user' | 'system'>();
  for (const s of scopes) {
    const m = SCOPE.exec(s);
    if (!m) continue;
    const [, level, type, perm] = m as unknown as [string, 'patient' | 'user' | 'system', string, string];
    if (type !== '*' && type !== resourceType) continue;
    const readish = interaction === 'read' || interaction === 'search';
    const ok = perm === '*' || (perm === 'read' && readish) || (perm === 'write' && !readish) || (!['read', 'write', '*'].includes(perm) && perm.includes(V2_LETTER[interaction]));
    if (ok) out.add(level);
  }
  return out;
}

export const SMART_RESOURCE_SCOPE = /^(patient|user|system)\/(\*|[A-Za-z]+)\.(read|write|\*|c?r?u?d?s?)(\?.*)?$/;
