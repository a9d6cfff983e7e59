/**
 * Diagnosis of failed token requests: from what we know about the launch (what was sent to authorize, what was
 * sent to the token endpoint, how old the transaction is, the server's clock) name the likely causes of
 * `invalid_grant` / `invalid_client`. Pure functions: no I/O, nothing secret in, nothing secret out.
 */

/** Oracle Health (Cerner) hides the reason in `error_uri`: `…/errors/urn%3Acerner%3Aerror%3A…/instances/<id>`. */
const CERNER_CODES: Record<string, string> = {
  'oauth2:grant:invalid-request': 'The authorization request was malformed.',
  'oauth2:grant:unknown-client': 'The client id is not registered with this Oracle Health tenant.',
  'oauth2:grant:invalid-redirect-uri': 'The redirect URI does not match the one registered in the code console.',
  'oauth2:grant:invalid-redirect-uri-trailing-slash': 'The redirect URI differs from the registered one by a trailing slash.',
  'oauth2:grant:redirect-uri-not-registered': 'The redirect URI is not registered for this client.',
  'oauth2:grant:unknown-tenant': 'The tenant in the URL is unknown to the authorization server.',
  'oauth2:grant:unauthorized-client-for-tenant': 'This client is not authorized for this tenant (the app has not been enabled at this site).',
  'oauth2:grant:denied-by-server': 'The client is not authorized for any of the scopes it requested.',
  'oauth2:grant:denied-by-user': 'The user declined or cancelled.',
  'oauth2:grant:invalid-patient-id': 'The patient does not exist or the user may not see their record.',
  'oauth2:token:invalid-redirect-uri': 'The redirect_uri in the token request differs from the one sent to authorize (or is not registered).',
  'oauth2:token:empty-scopes': 'No scope could be granted: the requested scopes are not registered for this app (check v1 vs v2 syntax and the scopes chosen in the code console).',
  'oauth2:token:terminated-client': 'The client application is no longer registered.',
  'oauth2:token:code:invalid': 'The authorization code is invalid or has expired (codes live for seconds; a reused code is invalid).',
  'oauth2:token:code:client:mismatch': 'The code was issued to a different client id.',
  'oauth2:token:code:tenant:mismatch': 'The code was issued for a different tenant.',
  'oauth2:token:code:tenant-terminated': 'The client is no longer authorized for the tenant of this code.',
  'oauth2:token:code:tenant-invalid': 'The tenant is not registered.',
  'oauth2:token:invalid-tenant': 'The tenant is not valid for this client (for example a production tenant with a non-production app).',
  'oauth2:token:invalid_authorization_header': 'The Authorization header of the token request is invalid (client authentication does not fit the registration).',
  'oauth2:token:invalid-authorization-header': 'The Authorization header of the token request is invalid (client authentication does not fit the registration).',
  'oauth2:token:invalid_client_credentials': 'The client credentials are invalid (wrong secret, or a public client sending a secret).',
  'oauth2:token:invalid-client-credentials': 'The client credentials are invalid (wrong secret, or a public client sending a secret).',
  'oauth2:token:patient-scope-requires-one-patient-id': 'Patient scopes need exactly one patient in context.',
  'oauth2:token:refresh-token:token-invalid': 'The refresh token is invalid, expired, or was revoked by the user.',
  'oauth2:token:refresh-token:session-invalid': 'The refresh token was for online_access and the user\'s EHR session has ended.',
  'oauth2:token:refresh-token:tenant-terminated': 'The client is no longer authorized for this tenant.',
  'smart-v1:grant:launch:audience-required': 'A launch scope was requested without an aud parameter.',
  'smart-v1:grant:launch:launch-code-required': 'The launch scope was requested without the launch code.',
  'smart-v1:grant:launch:unknown-resource-server': 'The launch came from an unknown FHIR server.',
  'smart-v1:grant:launch:invalid-code': 'The launch code is invalid (expired, or already used).',
  'smart-v1:grant:launch:mismatched-identity': 'A different user is signed in to the EHR in this browser (try a private window).',
  'smart-v1:grant:launch:audience-not-white-listed': 'The aud (FHIR base URL) is not approved for this client.',
  'client-assertion:jwt-bearer:invalid-signature': 'The client assertion signature does not verify: the kid is not in the registered JWKS, or the key differs.',
};

export function decodeCernerErrorUri(errorUri: string | undefined): { urn: string; meaning: string | undefined } | undefined {
  if (!errorUri) return undefined;
  let decoded: string;
  try {
    decoded = decodeURIComponent(errorUri);
  } catch {
    decoded = errorUri;
  }
  const m = /urn:cerner:error:([A-Za-z0-9:_-]+)/.exec(decoded);
  if (!m) return undefined;
  const urn = `urn:cerner:error:${m[1]}`;
  const tail = m[1]!.replace(/^authorization-server:/, '');
  // error_uri comes through the browser: only the table's own codes match (never `constructor`, `__proto__`, …)
  const meaning = (Object.hasOwn(CERNER_CODES, tail) ? CERNER_CODES[tail] : undefined) ?? Object.entries(CERNER_CODES).find(([k]) => tail.endsWith(k))?.[1];
  return { urn, meaning };
}

export interface TokenFailureFacts {
  grantType: 'authorization_code' | 'refresh_token';
  oauthError?: string;
  errorDescription?: string;
  errorUri?: string;
  status?: number;
  /** redirect_uri sent to the authorization endpoint. */
  redirectUriAtAuthorize?: string;
  /** redirect_uri sent in the token request. */
  redirectUriAtToken?: string;
  /** Whether S256(stored verifier) equals the challenge that was sent. */
  pkceMatches?: boolean;
  /** Milliseconds between the redirect to authorize and this token request. */
  transactionAgeMs?: number;
  /** This exact code was already sent to the token endpoint (by this server). */
  codeSeenBefore?: boolean;
  /** The server's Date header and our clock when the response arrived. */
  serverDate?: string | null;
  now?: number;
  clientAuthMethod?: string;
  /**
   * What our client authentication may have to do with an invalid_client, from compatibility.ts's
   * invalidClientCauses(): a method or signing algorithm the server does not advertise, the Basic encoding.
   */
  clientAuthCauses?: readonly string[];
  requestedScopes?: readonly string[];
  capabilities?: readonly string[];
  /** The EHR's host name, to recognise vendors. */
  tokenEndpoint?: string;
}

export interface Diagnosis {
  causes: string[];
  /** Vendor error code decoded from error_uri, if any. */
  vendorCode?: string;
  clockSkewSeconds?: number;
}

const CLOCK_SKEW_LIMIT_SECONDS = 60;
/** Authorization codes commonly live 30–60 s (Epic: 5 min; Oracle Health: seconds). */
const CODE_PROBABLY_EXPIRED_MS = 60_000;

export function diagnoseTokenFailure(f: TokenFailureFacts): Diagnosis {
  const causes: string[] = [];
  const out: Diagnosis = { causes };
  const err = f.oauthError;
  const desc = (f.errorDescription ?? '').toLowerCase();

  const cerner = decodeCernerErrorUri(f.errorUri);
  if (cerner) {
    out.vendorCode = cerner.urn;
    causes.push(`Oracle Health says ${cerner.urn}${cerner.meaning ? `: ${cerner.meaning}` : ''}`);
  }

  if (f.serverDate) {
    const server = Date.parse(f.serverDate);
    if (!Number.isNaN(server)) {
      const skew = Math.round(((f.now ?? Date.now()) - server) / 1000);
      out.clockSkewSeconds = skew;
      if (Math.abs(skew) > CLOCK_SKEW_LIMIT_SECONDS) {
        causes.push(`Clock skew: our clock is ${Math.abs(skew)} s ${skew > 0 ? 'ahead of' : 'behind'} the authorization server's (its Date header); signed assertions and short-lived codes fail. Sync the server clock (NTP).`);
      }
    }
  }

  if (err === 'invalid_grant' && f.grantType === 'authorization_code') {
    if (f.redirectUriAtAuthorize && f.redirectUriAtToken && f.redirectUriAtAuthorize !== f.redirectUriAtToken) {
      causes.push(
        `redirect_uri differs byte for byte between the authorize request (${f.redirectUriAtAuthorize}) and the token request (${f.redirectUriAtToken}): ` +
          'every instance must run with the same PUBLIC_URL.',
      );
    } else if (/redirect/.test(desc)) {
      causes.push(`The server mentions the redirect URI: it must equal the registered one byte for byte (${f.redirectUriAtToken ?? 'PUBLIC_URL + /callback'}; watch for http vs https, a trailing slash, a port).`);
    }
    if (f.pkceMatches === false) causes.push('PKCE: the stored code_verifier does not hash (S256) to the code_challenge that was sent to authorize.');
    if (f.codeSeenBefore) causes.push('Code reused: this authorization code was already sent to the token endpoint; codes are single-use (a double-submitted callback or a retried request).');
    if (f.transactionAgeMs !== undefined && f.transactionAgeMs > CODE_PROBABLY_EXPIRED_MS) {
      causes.push(`Code probably expired: ${Math.round(f.transactionAgeMs / 1000)} s passed between the redirect to authorize and the token request (codes usually live under a minute).`);
    }
    if (/pkce|verifier|challenge/.test(desc) && f.pkceMatches !== false) causes.push('The server rejects the PKCE verifier: the code may have been issued for another launch (a callback from another tab or session).');
    const syntax = scopeSyntaxMismatch(f.requestedScopes, f.capabilities);
    if (syntax) causes.push(syntax);
    if (!cerner && !f.errorDescription) {
      causes.push('The server gave no error_description (Epic answers invalid_grant with an empty description): check, in this order, the redirect URI registered vs PUBLIC_URL + /callback, the client id for this environment (non-production vs production), that the code was used within its lifetime and only once, and the server clock.');
    }
    if (causes.length === 0 || (causes.length === 1 && out.clockSkewSeconds === undefined && cerner)) {
      causes.push('The code was already used, expired, or was issued for another client or redirect URI; start the launch again.');
    }
  }

  if (err === 'invalid_grant' && f.grantType === 'refresh_token') {
    causes.push('The refresh token is expired, revoked, or was already used (rotated); with online_access it also ends when the user\'s EHR session ends. Launch again.');
  }

  if (err === 'invalid_client' || f.status === 401) {
    causes.push(...(f.clientAuthCauses ?? []));
    switch (f.clientAuthMethod) {
      case 'none':
        causes.push('We authenticated as a public client (no secret, no key): if the EHR registered a confidential client, set SMART_CLIENT_SECRET or SMART_PRIVATE_KEY.');
        break;
      case 'client_secret_basic':
      case 'client_secret_post':
        causes.push('We sent a client secret: check SMART_CLIENT_SECRET for this client id and environment, and that the registration is confidential-symmetric (not public, not asymmetric).');
        break;
      case 'private_key_jwt':
        causes.push('We sent a private_key_jwt assertion: check that the kid is in the JWKS registered with the EHR (or published at the registered JWKS URL), that the algorithm (RS384/ES384) matches, and the server clock.');
        break;
    }
  }

  if (err === 'invalid_scope') {
    const syntax = scopeSyntaxMismatch(f.requestedScopes, f.capabilities);
    if (syntax) causes.push(syntax);
    causes.push('One or more scopes are not registered for this client: compare SMART_SCOPE with the scopes chosen at registration.');
  }

  return out;
}

function scopeSyntaxMismatch(requested: readonly string[] | undefined, capabilities: readonly string[] | undefined): string | undefined {
  if (!requested?.length) return undefined;
  const hasV2 = requested.some((s) => /^(patient|user|system)\/[^.]+\.[cruds]+(\?|$)/.test(s));
  const hasV1 = requested.some((s) => /^(patient|user|system)\/[^.]+\.(read|write|\*)$/.test(s));
  const v1 = capabilities?.includes('permission-v1');
  const v2 = capabilities?.includes('permission-v2');
  if (hasV2 && !v2) return 'Scope syntax: SMART v2 scopes (.rs) were requested but the server does not advertise permission-v2; it may only understand v1 (.read).';
  if (hasV1 && !v1 && v2) return 'Scope syntax: SMART v1 scopes (.read) were requested but the server advertises only permission-v2.';
  return undefined;
}
