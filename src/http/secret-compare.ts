/**
 * Comparing a secret a client sent with the expected one (ADMIN_TOKEN, METRICS_TOKEN, a bearer header) in constant
 * time. Both are hashed first (SHA-256) and the digests compared with timingSafeEqual: equal lengths always, so
 * neither the time taken nor an early return tells anything about the expected secret's length or content.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** Whether an Authorization header is exactly `Bearer <token>`. */
export function bearerMatches(authorization: string | undefined, token: string): boolean {
  return sameSecret(authorization ?? '', `Bearer ${token}`);
}
