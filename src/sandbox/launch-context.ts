/**
 * Launch codes (created by the EHR's "Launch app" button, resolved at authorization) and the SMART context
 * bound to each grant (patient, encounter, user). Both are bounded caches with TTLs, one per sandbox instance.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface LaunchContext {
  patient?: string;
  encounter?: string;
  clientId?: string;
}

export interface GrantContext {
  patient?: string;
  encounter?: string;
  fhirUser?: string;
}

export class LaunchContextStore {
  private readonly launches = new LRUCache<string, LaunchContext>({ max: 10_000, ttl: 10 * 60 * 1000 });
  private readonly grants = new LRUCache<string, GrantContext>({ max: 50_000, ttl: 24 * 60 * 60 * 1000 });

  createLaunch(context: LaunchContext): string {
    const code = randomBytes(18).toString('base64url');
    this.launches.set(code, { ...context });
    return code;
  }

  resolveLaunch(code: string | undefined): LaunchContext | undefined {
    return code ? this.launches.get(code) : undefined;
  }

  bindGrant(grantId: string, context: GrantContext): void {
    this.grants.set(grantId, context);
  }

  forGrant(grantId: string): GrantContext | undefined {
    return this.grants.get(grantId);
  }
}
