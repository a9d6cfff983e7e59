/**
 * The scopes a launch asks for, from the registration's configured scopes and what the server advertises: the
 * v1/v2 syntax it speaks (scopes.ts: never wider than configured), the launch scope of the mode (`launch` or
 * `launch/patient`), and `openid fhirUser` only when an id_token could be verified (an `issuer` and a
 * `jwks_uri`). The launch route asks for these and logs what was left out; `smart-bff doctor` shows them before
 * anyone launches.
 */
import type { LaunchMode } from '../session/types.js';
import { splitScopes } from '../oauth-scope.js';
import type { DiscoveredServer } from './discovery.js';
import { canVerifyIdTokens } from './id-token.js';
import { hasIssuer } from './oauth-config.js';
import { adaptScopes, withLaunchScope, type DroppedScope } from './scopes.js';

export interface LaunchScopes {
  /** What the authorization request's `scope` holds. */
  scopes: string[];
  /** Configured scopes narrowed or left out for a v1-only server, each with the reason. */
  dropped: DroppedScope[];
  /** `openid fhirUser` were configured but are not asked for: the SMART configuration lacks this field. */
  openidDropped?: 'issuer' | 'jwks_uri';
}

export function launchScopes(configured: string, mode: LaunchMode, server: DiscoveredServer): LaunchScopes {
  const adapted = adaptScopes(splitScopes(configured), server.configuration.capabilities);
  let scopes = withLaunchScope(adapted.scopes, mode);
  if (scopes.includes('openid') && !canVerifyIdTokens(server)) {
    scopes = scopes.filter((s) => s !== 'openid' && s !== 'fhirUser');
    return { scopes, dropped: adapted.dropped, openidDropped: hasIssuer(server) ? 'jwks_uri' : 'issuer' };
  }
  return { scopes, dropped: adapted.dropped };
}
