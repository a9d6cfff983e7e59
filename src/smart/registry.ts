/**
 * The allow-list of FHIR servers (`iss`) and which registration (client id, client type, scopes) serves each.
 * Matching happens before any outbound request: an iss that is not listed is never contacted.
 */
import type { Registration } from '../config.js';

export interface RegistryMatch {
  registration: Registration;
  /** The iss exactly as received (used verbatim as `aud`). */
  iss: string;
  /** Matched by a wildcard entry (`https://host/r4/*`) rather than named exactly in the configuration. */
  wildcard: boolean;
}

const SEGMENT = /^[A-Za-z0-9._~-]+$/;

function stripSlash(s: string): string {
  return s.replace(/\/+$/, '');
}

/** True when `candidate` is a plain absolute http(s) URL with nothing that could change where it points. */
function wellFormed(candidate: string): boolean {
  if (candidate.length > 2048 || /[\s\\\u0000-\u001f]/.test(candidate)) return false;
  let u: URL;
  try {
    u = new URL(candidate);
  } catch {
    return false;
  }
  return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password && !u.search && !u.hash && !candidate.includes('#') && !candidate.includes('?');
}

export class Registry {
  constructor(readonly registrations: readonly Registration[]) {}

  /** An exact entry wins over a wildcard one, whatever their order. */
  match(iss: string): RegistryMatch | undefined {
    if (!wellFormed(iss)) return undefined;
    const wanted = stripSlash(iss);
    for (const registration of this.registrations) {
      if (registration.iss.some((allowed) => !allowed.endsWith('/*') && stripSlash(allowed) === wanted)) return { registration, iss, wildcard: false };
    }
    for (const registration of this.registrations) {
      for (const allowed of registration.iss) {
        if (!allowed.endsWith('/*')) continue;
        const prefix = allowed.slice(0, -1);
        if (!wanted.startsWith(prefix)) continue;
        const rest = wanted.slice(prefix.length);
        if (SEGMENT.test(rest) && rest !== '.' && rest !== '..' && new URL(wanted).origin === new URL(prefix).origin) return { registration, iss, wildcard: true };
      }
    }
    return undefined;
  }

  byName(name: string): Registration | undefined {
    return this.registrations.find((r) => r.name === name);
  }

  /** The first concrete (non-wildcard) iss of a registration: the default for a standalone launch. */
  defaultIss(registration: Registration): string | undefined {
    return registration.iss.find((i) => !i.includes('*'));
  }
}
