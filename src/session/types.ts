/**
 * What a signed-in browser session holds: completed launches, as launch contexts keyed by a random context id.
 * Pending authorizations (transactions) are NOT here: they live in the TransactionStore, keyed by `state` and
 * bound to the browser (transaction-store.ts), so that anonymous launches never create a session. Tokens are not
 * here either: they live in the TokenStore under the context id (token-store.ts), so a whole-session save can
 * never overwrite a refreshed token. Maps keyed by request input are read with Object.hasOwn only.
 */
import 'express-session';

export type LaunchMode = 'ehr' | 'standalone';

/** One pending authorization request. Server-side only (the TransactionStore), single-use, expires. */
export interface LaunchTransaction {
  state: string;
  launchId: string;
  mode: LaunchMode;
  registration: string;
  iss: string;
  launch?: string;
  redirectUri: string;
  codeVerifier: string;
  codeChallenge: string;
  nonce?: string;
  scopes: string[];
  createdAt: number;
  /** Kept while a framed launch checks that its cookie comes back (see /launch/continue). */
  authorizationUrl?: string;
}

/** A completed launch: what the page may know (never a token). */
export interface LaunchContextInfo {
  id: string;
  launchId: string;
  mode: LaunchMode;
  registration: string;
  iss: string;
  patient?: string;
  encounter?: string;
  fhirUser?: string;
  needPatientBanner?: boolean;
  smartStyleUrl?: string;
  fhirContext?: unknown[];
  tenant?: string;
  intent?: string;
  scopesRequested: string[];
  scopesGranted: string[];
  createdAt: number;
  expiresAt?: number;
  hasRefreshToken: boolean;
}

declare module 'express-session' {
  interface SessionData {
    /** sha256(state) → context id, so a callback delivered twice lands on the first result. */
    completed: Record<string, { contextId: string; at: number }>;
    contexts: Record<string, LaunchContextInfo>;
    createdAt: number;
  }
}
