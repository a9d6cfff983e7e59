/**
 * OAuth scope strings (RFC 6749 §3.3): a space-delimited list. Plain string handling, used by the configuration
 * and by the protocol code alike; what the scopes mean (SMART v1/v2 syntax) is smart/scopes.ts.
 */

/** The scopes of a scope string, each once, in order. */
export function splitScopes(s: string | undefined | null): string[] {
  return [...new Set((s ?? '').split(/\s+/).filter(Boolean))];
}
