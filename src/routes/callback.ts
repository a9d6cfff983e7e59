/**
 * `GET /callback`: the authorization server's redirect back. Named steps: read the response, take the pending
 * launch by state if this browser started it (single use, removed before anything is sent to the token
 * endpoint), exchange the code (once, however often the callback arrives), check the token response, open a
 * launch context in a session created (or given a new id) here, and redirect to the app page.
 */
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import type { Request, Response } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';
import { queryString } from '../http/request-context.js';
import { clip, fingerprint, sha256Short, type Logger } from '../log.js';
import type { LaunchContextInfo, LaunchTransaction } from '../session/types.js';
import { regenerateSession, saveSession } from '../session/session-ops.js';
import { bindingHash, readLaunchBinding } from '../session/launch-cookie.js';
import { stateKey } from '../session/transaction-store.js';
import type { SmartDeps } from '../smart/deps.js';
import type { CallbackOutcome } from './replay-guards.js';
import { buildOAuthConfig, hasIssuer, type HttpObservation } from '../smart/oauth-config.js';
import { launchCredentials } from '../smart/client-auth.js';
import { invalidClientCauses } from '../smart/compatibility.js';
import { IdTokenError, idTokenClaimFailure, type IdTokenFailure } from '../smart/id-token.js';
import type { DiscoveredServer } from '../smart/discovery.js';
import { splitScopes } from '../oauth-scope.js';
import { missingScopes } from '../smart/scopes.js';
import { diagnoseTokenFailure } from '../smart/diagnosis.js';
import { describeNetworkError, isNetworkError, isTimeout } from '../http/network-errors.js';
import { addContext } from '../session/contexts.js';
import { tokenTtlSeconds } from '../session/session-endings.js';
import { oauthErrorDetails } from '../smart/oauth-errors.js';

export function callbackHandler(deps: SmartDeps) {
  return async function callback(req: Request, res: Response): Promise<void> {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Referrer-Policy', 'no-referrer');
    const state = queryString(req, 'state');
    const code = queryString(req, 'code');
    const error = queryString(req, 'error');
    const binding = readLaunchBinding(req, deps.config);
    req.log.info(
      { event: 'callback.received', state_sha: state ? sha256Short(state) : null, has_code: Boolean(code), error: clip(error, 100) ?? null, launch_cookie: Boolean(binding) },
      'callback: authorization response received',
    );

    if (!state) {
      if (error) throw authorizationError(error, queryString(req, 'error_description'), queryString(req, 'error_uri'));
      throw new AppError(ErrorCode.STATE_MISSING, 400, 'The response from the authorization server has no state, so it cannot be matched to a launch.', {
        hint: 'Start the launch again from the EHR (or /login).', relaunch: true,
      });
    }

    // A callback delivered again after it completed lands on the first result; the code is never resent.
    const completed = req.session.completed ?? {};
    const stateHash = stateKey(state);
    const done = Object.hasOwn(completed, stateHash) ? completed[stateHash] : undefined;
    if (done && Object.hasOwn(req.session.contexts ?? {}, done.contextId)) {
      req.log.info({ event: 'callback.replayed', contextId: done.contextId }, 'callback: already completed for this state; showing the first result');
      return res.redirect(302, appUrl(done.contextId));
    }
    if (!binding) {
      // No launch cookie: the browser did not keep it (a blocked third-party cookie in the EHR's frame, a
      // Secure cookie dropped behind a router without TRUST_PROXY), or this browser never started a launch.
      req.log.warn({ event: 'callback.state', found: false, launch_cookie: false }, 'callback: no launch cookie, so no pending launch can be this browser\'s');
      throw cookieMissing();
    }
    const browser = bindingHash(binding);
    // ...and one that arrives while the first is still exchanging the code waits for it.
    const inflight = deps.callbacks.find(state, browser);
    if (inflight) {
      req.log.info({ event: 'callback.duplicate', state_sha: sha256Short(state) }, 'callback: same state already in flight; waiting for its result');
      const outcome = await inflight;
      await adoptSession(req, outcome.sessionId);
      return res.redirect(302, outcome.returnTo);
    }
    const outcome = await deps.callbacks.run(state, browser, () => completeLaunch(req, deps, state, browser, code, error));
    deps.metrics.launches.inc({ outcome: 'success' });
    res.redirect(302, outcome.returnTo);
  };
}

/** Takes the pending launch (single use, before anything goes to the token endpoint), checks it, exchanges the code. */
async function completeLaunch(req: Request, deps: SmartDeps, state: string, browser: string, code: string | undefined, error: string | undefined): Promise<CallbackOutcome> {
  const steps = new StepTimes();
  const pending = await steps.time('pending', () => deps.transactions.take(state, browser));
  if (pending.status !== 'found') {
    req.log.warn(
      { event: 'callback.state', found: false, launch_cookie: true, reason: pending.status === 'foreign' ? 'started_by_another_browser' : 'unknown_or_used' },
      'callback: no pending launch for this state in this browser',
    );
    throw new AppError(ErrorCode.STATE_UNKNOWN, 400, 'This sign-in response does not belong to a launch started in this browser (it may have been used already, have expired, or come from another browser).', {
      hint: 'Start the launch again from the EHR (or /login). Do not reuse or share sign-in links.', relaunch: true,
    });
  }
  const transaction: LaunchTransaction = { ...pending.transaction, state };
  const log = req.log.child({ launchId: transaction.launchId, registration: transaction.registration });
  const ageMs = Date.now() - transaction.createdAt;
  log.info({ event: 'callback.state', found: true, transaction_age_ms: ageMs, mode: transaction.mode }, 'callback: matched the pending launch');

  if (ageMs > deps.config.transactionTtlSeconds * 1000) {
    throw new AppError(ErrorCode.STATE_EXPIRED, 400, `This launch was started ${Math.round(ageMs / 60000)} minutes ago and has expired.`, {
      hint: 'Start the launch again.', relaunch: true,
    });
  }
  if (error) {
    const e = authorizationError(error, queryString(req, 'error_description'), queryString(req, 'error_uri'));
    log.warn({ event: 'launch.failed', step: 'authorize', error: clip(error, 100), error_description: clip(e.remoteDescription, 300) }, 'authorize: the authorization server returned an error');
    throw e;
  }
  if (!code) {
    throw new AppError(ErrorCode.AUTHORIZATION_RESPONSE_INVALID, 400, 'The authorization server returned neither a code nor an error.', { relaunch: true });
  }
  return exchangeCode(req, deps, transaction, code, log, steps);
}

/**
 * How long each step of a callback took, in milliseconds (to 0.01), for its `launch.complete` line: where a slow
 * callback spends its time (the token endpoint, the JWKS, the stores), and what `npm run bench` reports.
 */
class StepTimes {
  readonly ms: Record<string, number> = {};
  private readonly started = performance.now();

  add(step: string, ms: number): void {
    this.ms[step] = Math.round(((this.ms[step] ?? 0) + ms) * 100) / 100;
  }

  async time<T>(step: string, work: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await work();
    } finally {
      this.add(step, performance.now() - t);
    }
  }

  done(): Record<string, number> {
    this.add('total', performance.now() - this.started);
    return this.ms;
  }
}

export function appUrl(contextId: string): string {
  return `/app?context=${encodeURIComponent(contextId)}`;
}

async function exchangeCode(req: Request, deps: SmartDeps, tx: LaunchTransaction, code: string, log: Logger, steps: StepTimes): Promise<CallbackOutcome> {
  const registration = deps.registry.byName(tx.registration);
  if (!registration) throw new AppError(ErrorCode.STATE_UNKNOWN, 400, 'The app configuration changed during this launch.', { relaunch: true });
  const server = await steps.time('discovery', () => deps.discovery.get(tx.iss, log));
  const smart = server.configuration;
  const credentials = launchCredentials(registration);
  const openid = tx.scopes.includes('openid');
  let observed: HttpObservation | undefined;
  const oauth = buildOAuthConfig(server, credentials, {
    timeoutMs: deps.config.httpTimeoutMs,
    allowInsecureHttp: deps.config.allowInsecureHttp,
    observe: (o) => {
      observed = o;
      steps.add('token_request', o.elapsedMs);
    },
    // Without openid no id_token is expected, so none is validated or read: one sent anyway is set aside (and logged).
    ...(openid ? {} : { ignoreIdToken: { log, step: 'token' as const } }),
  });

  // redirect_uri in the token request comes from currentUrl: build it from PUBLIC_URL, never from Host headers.
  const currentUrl = new URL(deps.config.redirectUri);
  const rawQuery = req.originalUrl.includes('?') ? req.originalUrl.slice(req.originalUrl.indexOf('?') + 1) : '';
  const params = new URLSearchParams(rawQuery);
  checkResponseIssuer(server, params, log);
  currentUrl.search = params.toString();

  const authMethod = credentials.method;
  const pkceMatches = (await client.calculatePKCECodeChallenge(tx.codeVerifier)) === tx.codeChallenge;
  const firstSentAt = deps.recentCodes.markSent(code);
  log.info(
    {
      event: 'token.request', endpoint: smart.token_endpoint, grant_type: 'authorization_code', redirect_uri: deps.config.redirectUri,
      redirect_uri_matches_authorize: deps.config.redirectUri === tx.redirectUri, client_id: registration.clientId, client_auth: authMethod,
      code_fp: fingerprint(code), verifier_fp: fingerprint(tx.codeVerifier), pkce_verifier_matches_challenge: pkceMatches,
      code_sent_before: firstSentAt !== undefined,
    },
    'token: exchanging the authorization code',
  );

  let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
  const started = Date.now();
  const grantStarted = performance.now();
  try {
    tokens = await client.authorizationCodeGrant(oauth, currentUrl, {
      pkceCodeVerifier: tx.codeVerifier,
      expectedState: tx.state,
      ...(tx.nonce ? { expectedNonce: tx.nonce } : {}),
      idTokenExpected: tx.scopes.includes('openid'),
    });
  } catch (err) {
    deps.metrics.tokenExchanges.inc({ result: oauthErrorDetails(err)?.error.slice(0, 40) ?? 'unavailable' });
    throw translateTokenError(err, {
      log, observed, started, tx, deps, authMethod, pkceMatches, codeSeenBefore: firstSentAt !== undefined,
      clientAuthCauses: invalidClientCauses(smart, credentials), capabilities: smart.capabilities, tokenEndpoint: smart.token_endpoint,
      issuer: smart.issuer, clientId: registration.clientId,
    });
  }

  // What the grant spent besides its request: reading the token response and checking it and the id_token's claims.
  steps.add('token_response', performance.now() - grantStarted - (steps.ms.token_request ?? 0));
  // openid-client checked the id_token's claims (iss, aud, exp, nonce); its signature is checked here, before
  // anything in it is read or kept.
  if (tokens.id_token) {
    try {
      await steps.time('id_token_signature', () => deps.idTokens.verifySignature(tokens.id_token!, server));
    } catch (err) {
      deps.metrics.tokenExchanges.inc({ result: 'id_token_invalid' });
      throw idTokenInvalid(err instanceof IdTokenError ? err.failure : { check: 'signature', reason: clip((err as Error)?.message, 200) ?? 'verification failed' }, log, observed, started, err);
    }
  }

  deps.metrics.tokenExchanges.inc({ result: 'success' });
  const granted = tokens.scope ? splitScopes(tokens.scope) : [...tx.scopes];
  const extra = tokens as unknown as Record<string, unknown>;
  const serverSkew = skewSeconds(observed?.date);
  log.info(
    {
      event: 'token.response', status: observed?.status ?? 200, duration_ms: Date.now() - started, server_date: observed?.date ?? null, clock_skew_s: serverSkew,
      token_type: tokens.token_type, expires_in: tokens.expires_in ?? null, scope: granted.join(' '), refresh_token: Boolean(tokens.refresh_token),
      id_token: Boolean(tokens.id_token), patient: typeof extra.patient === 'string', encounter: typeof extra.encounter === 'string',
    },
    'token: code exchanged',
  );

  if (String(tokens.token_type).toLowerCase() !== 'bearer') {
    throw new AppError(ErrorCode.TOKEN_RESPONSE_INVALID, 502, `The token endpoint returned a token of type ${JSON.stringify(clip(tokens.token_type, 40))}; only Bearer is supported.`, { relaunch: true });
  }
  const patient = typeof extra.patient === 'string' && extra.patient ? extra.patient : undefined;
  if (granted.some((s) => s.startsWith('patient/')) && !patient) {
    throw new AppError(ErrorCode.PATIENT_CONTEXT_MISSING, 502, 'Patient-level access was granted but the EHR did not say which patient (no patient in the token response).', {
      hint: 'Launch the app from a patient\'s chart, or pick a patient when asked.', relaunch: true,
    });
  }
  let fhirUser: string | undefined;
  if (tokens.id_token) {
    // Verified: claims by openid-client, signature above (an id_token that was not asked for never gets here).
    const claims = tokens.claims();
    fhirUser = typeof claims?.fhirUser === 'string' ? claims.fhirUser : undefined;
    if (granted.includes('fhirUser') && !fhirUser) {
      throw new AppError(ErrorCode.ID_TOKEN_INVALID, 502, 'The fhirUser scope was granted but the id_token carries no fhirUser claim.', { relaunch: true });
    }
  }

  const contextId = randomBytes(16).toString('base64url');
  const expiresAt = typeof tokens.expires_in === 'number' ? Date.now() + tokens.expires_in * 1000 : undefined;
  const info: LaunchContextInfo = {
    id: contextId, launchId: tx.launchId, mode: tx.mode, registration: registration.name, iss: tx.iss,
    ...(patient ? { patient } : {}),
    ...(typeof extra.encounter === 'string' ? { encounter: extra.encounter } : {}),
    ...(fhirUser ? { fhirUser } : {}),
    ...(typeof extra.need_patient_banner === 'boolean' ? { needPatientBanner: extra.need_patient_banner } : {}),
    ...(typeof extra.smart_style_url === 'string' ? { smartStyleUrl: extra.smart_style_url } : {}),
    ...(Array.isArray(extra.fhirContext) ? { fhirContext: extra.fhirContext } : {}),
    ...(typeof extra.tenant === 'string' ? { tenant: extra.tenant } : {}),
    ...(typeof extra.intent === 'string' ? { intent: extra.intent } : {}),
    scopesRequested: tx.scopes, scopesGranted: granted, createdAt: Date.now(),
    ...(expiresAt ? { expiresAt } : {}),
    hasRefreshToken: Boolean(tokens.refresh_token),
  };
  await steps.time('token_store', () => deps.tokenStore.set(
    contextId,
    {
      accessToken: tokens.access_token, tokenType: 'Bearer', fhirBaseUrl: tx.iss, registration: registration.name,
      ...(tokens.refresh_token ? { refreshToken: tokens.refresh_token } : {}),
      ...(tokens.id_token ? { idToken: tokens.id_token } : {}),
      ...(expiresAt ? { expiresAt } : {}),
    },
    // as long as the session that will hold the context (session-endings.ts); its touches extend it
    tokenTtlSeconds(deps.config, req.session?.createdAt),
  ));

  // The session is created here, at the first completed launch, or given a new id if the browser has one
  // (fixation); earlier contexts of other tabs come along. A session that holds nothing yet is one express-session
  // made for this request (a browser without a stored session always gets a new id): it is new already, and
  // there is no old id to destroy.
  if (req.session.createdAt !== undefined) await steps.time('session', () => regenerateSession(req));
  req.session.createdAt ??= Date.now();
  const evicted = addContext(req, info, deps.config.maxContextsPerSession);
  const completed = { ...(req.session.completed ?? {}) };
  for (const [k, v] of Object.entries(completed)) if (Date.now() - v.at > deps.config.transactionTtlSeconds * 1000) delete completed[k];
  completed[stateKey(tx.state)] = { contextId, at: Date.now() };
  req.session.completed = completed;
  await steps.time('session', () => saveSession(req));
  // the evicted contexts end: their tokens are revoked in the background, never delaying this redirect
  if (evicted.length) deps.endings.end(evicted, { reason: 'evicted', sessionSha: sha256Short(req.sessionID) }, log);

  const missing = missingScopes(tx.scopes, granted);
  log.info(
    { event: 'launch.complete', contextId, patient: Boolean(patient), scopes_not_granted: missing.join(' ') || null, evicted_contexts: evicted.length, contexts: Object.keys(req.session.contexts ?? {}).length, session_sha: sha256Short(req.sessionID), timing_ms: steps.done() },
    'launch: complete; the server holds the tokens',
  );
  return { sessionId: req.sessionID, contextId, returnTo: appUrl(contextId) };
}

/** Makes this request answer with the session that a concurrent duplicate callback created. */
async function adoptSession(req: Request, sessionId: string): Promise<void> {
  if (sessionId === req.sessionID) return;
  const data = await new Promise<Record<string, unknown> | null | undefined>((resolve, reject) =>
    req.sessionStore.get(sessionId, (err, sess) => (err ? reject(err) : resolve(sess as Record<string, unknown> | null | undefined))),
  );
  if (!data) return;
  req.sessionID = sessionId;
  req.sessionStore.createSession(req, data as never);
}

function skewSeconds(date: string | null | undefined): number | null {
  if (!date) return null;
  const t = Date.parse(date);
  return Number.isNaN(t) ? null : Math.round((Date.now() - t) / 1000);
}

export function authorizationError(error: string, description: string | undefined, errorUri: string | undefined): AppError {
  const denied = error === 'access_denied';
  const causes = errorUri ? diagnoseTokenFailure({ grantType: 'authorization_code', errorUri }).causes.slice(0, 1) : [];
  return new AppError(ErrorCode.AUTHORIZATION_ERROR, denied ? 403 : 400, denied
    ? 'Access was not granted: the sign-in or consent at the EHR was declined or cancelled.'
    : `The EHR's authorization server refused the request (${clip(error, 60)}).`, {
    oauthError: clip(error, 60)!, remoteDescription: clip(description, 300), causes,
    hint: denied ? 'If this was a mistake, open the app again and allow access.' : 'Share the correlation id below with the app\'s operator. Start the launch again.',
    relaunch: true,
  });
}

function cookieMissing(): AppError {
  return new AppError(ErrorCode.COOKIE_MISSING, 400, 'Your browser did not send back the cookie this app set when the launch started, so the launch cannot be finished here.', {
    hint: 'This happens when the EHR shows the app inside its own window (an iframe) and the browser blocks third-party cookies. Open the app in a new browser window or tab from the EHR, or ask the operator to enable the embedded cookie mode.',
    relaunch: true,
  });
}

/**
 * RFC 9207: the authorization response's `iss` must be the issuer this launch was sent to, and must be there when
 * the server advertises `authorization_response_iss_parameter_supported` (a mix-up attack hands us a code from
 * another server). Checked before anything is sent to the token endpoint. Without an issuer in the SMART
 * configuration there is nothing to compare with: the parameter is noted and set aside.
 */
function checkResponseIssuer(server: DiscoveredServer, params: URLSearchParams, log: Logger): void {
  const received = params.getAll('iss');
  if (!hasIssuer(server)) {
    if (received.length) {
      log.info({ event: 'callback.iss', iss: clip(received[0], 200) }, 'callback: the SMART configuration has no issuer, so the iss response parameter cannot be checked');
      params.delete('iss');
    }
    return;
  }
  const expected = server.configuration.issuer!;
  const advertised = server.configuration.authorization_response_iss_parameter_supported === true;
  let outcome: 'missing' | 'mismatch' | 'repeated' | undefined;
  if (received.length > 1) outcome = 'repeated';
  else if (received.length === 0) outcome = advertised ? 'missing' : undefined;
  else if (received[0] !== expected) outcome = 'mismatch';
  if (!outcome) return;
  const what = {
    missing: 'has no iss parameter although the server advertises authorization_response_iss_parameter_supported',
    mismatch: `names another issuer (iss ${JSON.stringify(clip(received[0], 200))}) than the one this launch was sent to (${expected})`,
    repeated: 'carries the iss parameter more than once',
  }[outcome];
  log.warn(
    { event: 'callback.iss', outcome, iss: received.length ? clip(received[0], 200) : null, expected, advertised },
    `callback: the authorization response ${what}; its code was not used (RFC 9207)`,
  );
  throw new AppError(ErrorCode.AUTHORIZATION_RESPONSE_INVALID, 400, `The sign-in response ${what}, so it was not used.`, {
    hint: 'Start the launch again. If it keeps happening, give the correlation id to the operator: the EHR\'s SMART configuration and its authorization server disagree about the issuer, or the response did not come from it.',
    relaunch: true,
  });
}

function idTokenInvalid(failure: IdTokenFailure, log: Logger, observed: HttpObservation | undefined, started: number, cause: unknown): AppError {
  log.warn(
    { event: 'token.response', outcome: 'id_token_invalid', id_token_check: failure.check, reason: failure.reason, status: observed?.status ?? null, duration_ms: Date.now() - started },
    `token: the ID token failed the ${failure.check} check: ${failure.reason}`,
  );
  return new AppError(ErrorCode.ID_TOKEN_INVALID, 502, `The EHR's ID token failed validation: ${failure.reason}.`, {
    relaunch: true, cause,
    hint: 'Start the launch again. If it keeps failing, give the correlation id to the operator: the server log names the check that failed.',
  });
}

interface TokenErrorFacts {
  log: Logger;
  observed: HttpObservation | undefined;
  started: number;
  tx: LaunchTransaction;
  deps: SmartDeps;
  authMethod: string;
  pkceMatches: boolean;
  codeSeenBefore: boolean;
  clientAuthCauses: readonly string[];
  capabilities: readonly string[];
  tokenEndpoint: string;
  issuer: string | undefined;
  clientId: string;
}

function translateTokenError(err: unknown, f: TokenErrorFacts): AppError {
  const durationMs = Date.now() - f.started;
  const details = oauthErrorDetails(err);
  if (details) {
    const diagnosis = diagnoseTokenFailure({
      grantType: 'authorization_code', oauthError: details.error, errorDescription: details.errorDescription, errorUri: details.errorUri, status: details.status,
      redirectUriAtAuthorize: f.tx.redirectUri, redirectUriAtToken: f.deps.config.redirectUri, pkceMatches: f.pkceMatches,
      transactionAgeMs: Date.now() - f.tx.createdAt, codeSeenBefore: f.codeSeenBefore, serverDate: f.observed?.date ?? details.date,
      clientAuthMethod: f.authMethod, clientAuthCauses: f.clientAuthCauses, requestedScopes: f.tx.scopes,
      capabilities: f.capabilities, tokenEndpoint: f.tokenEndpoint,
    });
    f.log.warn(
      {
        event: 'token.response', status: details.status, error: clip(details.error, 100), error_description: clip(details.errorDescription, 500) ?? null,
        error_uri: clip(details.errorUri, 500) ?? null, vendor_code: diagnosis.vendorCode ?? null, duration_ms: durationMs,
        server_date: f.observed?.date ?? details.date, clock_skew_s: diagnosis.clockSkewSeconds ?? null, likely_causes: diagnosis.causes,
      },
      `token: the token endpoint refused the code (${clip(details.error, 60)})`,
    );
    if (details.status >= 500) {
      return new AppError(ErrorCode.TOKEN_ENDPOINT_UNAVAILABLE, 502, `The EHR's token endpoint failed (${details.status}).`, { relaunch: true, hint: 'Try the launch again in a moment.', cause: err });
    }
    const clientProblem = details.error === 'invalid_client' || details.status === 401;
    return new AppError(
      ErrorCode.TOKEN_EXCHANGE_FAILED,
      clientProblem ? 502 : 401,
      clientProblem
        ? 'The EHR did not accept this app\'s credentials when exchanging the sign-in code (invalid_client).'
        : `The EHR refused to exchange the sign-in code for a token (${clip(details.error, 60)}).`,
      { oauthError: clip(details.error, 60)!, remoteDescription: clip(details.errorDescription, 300), causes: diagnosis.causes, relaunch: true, hint: 'Start the launch again. If it keeps failing, give the correlation id to the operator: the server log explains the likely cause.', cause: err },
    );
  }
  const idToken = idTokenClaimFailure(err, { issuer: f.issuer, clientId: f.clientId });
  if (idToken) return idTokenInvalid(idToken, f.log, f.observed, f.started, err);
  const name = (err as Error)?.name;
  if (isTimeout(err)) {
    f.log.warn({ event: 'token.response', outcome: 'timeout', duration_ms: durationMs }, 'token: the token endpoint did not answer in time');
    return new AppError(ErrorCode.TOKEN_ENDPOINT_UNAVAILABLE, 504, 'The EHR\'s token endpoint did not answer in time.', { relaunch: true, hint: 'Try again in a moment.', cause: err });
  }
  if (isNetworkError(err)) {
    const reason = describeNetworkError(err);
    f.log.warn({ event: 'token.response', outcome: 'network_error', reason, duration_ms: durationMs }, 'token: the token endpoint could not be reached');
    return new AppError(ErrorCode.TOKEN_ENDPOINT_UNAVAILABLE, 502, `The EHR's token endpoint could not be reached (${reason}).`, { relaunch: true, hint: 'Try again in a moment.', cause: err });
  }
  if (f.observed && f.observed.status >= 500) {
    f.log.warn({ event: 'token.response', outcome: 'server_error', status: f.observed.status, duration_ms: durationMs, server_date: f.observed.date }, `token: the token endpoint failed (${f.observed.status})`);
    return new AppError(ErrorCode.TOKEN_ENDPOINT_UNAVAILABLE, 502, `The EHR's token endpoint failed (${f.observed.status}).`, { relaunch: true, hint: 'Try the launch again in a moment.', cause: err });
  }
  const code = (err as { code?: string })?.code;
  f.log.warn(
    { event: 'token.response', outcome: 'invalid_response', status: f.observed?.status ?? null, reason_code: code ?? name ?? null, reason: clip((err as Error)?.message, 300), duration_ms: durationMs },
    'token: the token response failed validation',
  );
  return new AppError(ErrorCode.TOKEN_RESPONSE_INVALID, 502, 'The EHR\'s token response could not be used.', {
    relaunch: true, hint: 'Start the launch again. If it keeps failing, give the correlation id to the operator.', cause: err,
  });
}
