/**
 * EHR launch (`GET /launch?iss&launch`) and standalone launch (`GET /login[?iss]`): check the iss against the
 * allow-list (before any outbound request), discover, open a pending launch keyed by `state` with a fresh PKCE
 * verifier, bound to this browser by the launch cookie, and redirect to the authorization endpoint with `aud` =
 * iss exactly and `launch` echoed. Nothing here touches the session: a session exists only once a launch has
 * completed (at the callback), so anonymous launches can never evict a signed-in user.
 */
import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import type { Request, Response } from 'express';
import { AppError, ErrorCode } from '../http/errors.js';
import { queryString } from '../http/request-context.js';
import { sha256Short, clip } from '../log.js';
import type { LaunchMode, LaunchTransaction } from '../session/types.js';
import type { Registration } from '../config.js';
import { bindingHash, launchBindingFor, readLaunchBinding, setLaunchCookie } from '../session/launch-cookie.js';
import { EXPIRED_GRACE_SECONDS, stateKey } from '../session/transaction-store.js';
import type { SmartDeps } from '../smart/deps.js';
import { buildOAuthConfig, hasIssuer } from '../smart/oauth-config.js';
import { splitScopes } from '../oauth-scope.js';
import { adaptScopes, droppedScopeLog, withLaunchScope } from '../smart/scopes.js';
import { clientAuthMethod, launchCredentials } from '../smart/client-auth.js';
import { canVerifyIdTokens } from '../smart/id-token.js';

export function ehrLaunchHandler(deps: SmartDeps) {
  return async function ehrLaunch(req: Request, res: Response): Promise<void> {
    const iss = queryString(req, 'iss');
    const launch = queryString(req, 'launch');
    if (!iss || !launch) {
      throw new AppError(ErrorCode.LAUNCH_PARAMS_MISSING, 400, `The launch request is missing ${!iss && !launch ? 'iss and launch' : !iss ? 'iss' : 'launch'}.`, {
        hint: 'Open the app from the EHR again. An EHR launch URL looks like /launch?iss=<FHIR base URL>&launch=<launch code>; for a standalone launch use /login.',
      });
    }
    if (launch.length > 4096) throw new AppError(ErrorCode.BAD_REQUEST, 400, 'The launch parameter is too long.');
    const match = deps.registry.match(iss);
    if (!match) throw issNotAllowed(iss, req);
    await startAuthorization(req, res, deps, 'ehr', match.iss, match.registration, match.wildcard, launch);
  };
}

export function standaloneLoginHandler(deps: SmartDeps) {
  return async function standaloneLogin(req: Request, res: Response): Promise<void> {
    const requestedIss = queryString(req, 'iss');
    const regName = queryString(req, 'registration');
    let registration: Registration | undefined;
    let iss: string | undefined;
    let wildcard = false;
    if (requestedIss) {
      const match = deps.registry.match(requestedIss);
      if (!match) throw issNotAllowed(requestedIss, req);
      ({ registration, iss, wildcard } = match);
    } else {
      registration = regName ? deps.registry.byName(regName) : deps.registry.registrations[0];
      if (!registration) throw new AppError(ErrorCode.BAD_REQUEST, 400, `No registration is named ${JSON.stringify(clip(regName, 80))}.`);
      iss = deps.registry.defaultIss(registration);
      if (!iss) throw new AppError(ErrorCode.BAD_REQUEST, 400, 'This registration only has wildcard FHIR base URLs; start the launch with /login?iss=<FHIR base URL>.');
    }
    await startAuthorization(req, res, deps, 'standalone', iss, registration, wildcard);
  };
}

function issNotAllowed(iss: string, req: Request): AppError {
  req.log.warn({ event: 'launch.rejected', reason: 'iss_not_allowed', iss: clip(iss, 200) }, 'launch: iss is not on the allow-list; no request was made to it');
  return new AppError(ErrorCode.ISS_NOT_ALLOWED, 400, 'This app is not configured to accept launches from that FHIR server.', {
    hint: 'If this EHR should be allowed, add its FHIR base URL to SMART_ISS (or SMART_CONFIG_FILE). The iss must match exactly.',
  });
}

async function startAuthorization(
  req: Request,
  res: Response,
  deps: SmartDeps,
  mode: LaunchMode,
  iss: string,
  registration: Registration,
  /** Matched through a wildcard of the allow-list: a new issuer counts against the discovery limit. */
  wildcard: boolean,
  launch?: string,
): Promise<void> {
  const launchId = randomBytes(9).toString('base64url');
  const log = req.log.child({ launchId, registration: registration.name });
  log.info({ event: 'launch.start', mode, iss, launch: launch ? { length: launch.length } : undefined }, `launch: ${mode} launch requested`);

  const server = await deps.discovery.get(iss, log, { newIssuerLimited: wildcard });
  const smart = server.configuration;
  const credentials = launchCredentials(registration);
  deps.discovery.checkClient(server, `launch:${registration.name}`, credentials, log);
  const baseScopes = splitScopes(mode === 'ehr' ? registration.scope : registration.standaloneScope);
  const adapted = adaptScopes(baseScopes, smart.capabilities);
  for (const d of adapted.dropped) {
    // Never widened: a scope the server's syntax cannot express exactly is narrowed or left out, and said so.
    const { fields, message } = droppedScopeLog(d);
    log.warn({ event: 'launch.scope_dropped', ...fields }, `launch: ${message}`);
  }
  let scopes = withLaunchScope(adapted.scopes, mode);
  if (scopes.includes('openid') && !canVerifyIdTokens(server)) {
    // An id_token is only asked for when it can be verified: its issuer and its signature (SMART requires
    // `issuer` and `jwks_uri` with sso-openid-connect).
    const missing = hasIssuer(server) ? 'jwks_uri' : 'issuer';
    log.warn(
      { event: 'launch.scope_dropped', scopes: 'openid fhirUser', reason: `no_${missing}` },
      `launch: the SMART configuration has no ${missing}, so openid and fhirUser are not requested (an ID token could not be ${missing === 'issuer' ? 'validated' : 'verified: no keys to check its signature'})`,
    );
    scopes = scopes.filter((s) => s !== 'openid' && s !== 'fhirUser');
  }
  const openid = scopes.includes('openid');

  const state = client.randomState();
  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const nonce = openid ? client.randomNonce() : undefined;

  const transaction: LaunchTransaction = {
    state, launchId, mode, registration: registration.name, iss, redirectUri: deps.config.redirectUri,
    codeVerifier, codeChallenge, scopes, createdAt: Date.now(),
    ...(launch !== undefined ? { launch } : {}),
    ...(nonce ? { nonce } : {}),
  };

  const oauth = buildOAuthConfig(server, credentials, { timeoutMs: deps.config.httpTimeoutMs, allowInsecureHttp: deps.config.allowInsecureHttp });
  const params: Record<string, string> = {
    response_type: 'code',
    redirect_uri: transaction.redirectUri,
    scope: scopes.join(' '),
    state,
    aud: iss,
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
  };
  if (launch !== undefined) params.launch = launch;
  if (nonce) params.nonce = nonce;
  const authorizationUrl = client.buildAuthorizationUrl(oauth, params);

  // Inside the EHR's frame the browser may not send our cookie back (SameSite=Lax in a cross-site frame, or
  // third-party cookies blocked). Check that it round-trips before the launch code is spent at the EHR.
  const framed = req.get('sec-fetch-dest') === 'iframe';
  if (framed) transaction.authorizationUrl = authorizationUrl.href;
  const keptSeconds = deps.config.transactionTtlSeconds + EXPIRED_GRACE_SECONDS;
  const binding = launchBindingFor(req, deps.config);
  await deps.transactions.put(transaction, bindingHash(binding), keptSeconds);
  setLaunchCookie(req, res, deps.config, binding, keptSeconds);

  log.info(
    {
      event: 'authorize.redirect', endpoint: smart.authorization_endpoint, client_id: registration.clientId,
      redirect_uri: transaction.redirectUri, scope: params.scope, pkce_method: 'S256',
      code_challenge_sha: sha256Short(codeChallenge), state_sha: sha256Short(state), client_auth: clientAuthMethod(registration),
    },
    'authorize: redirecting the browser to the authorization endpoint',
  );
  deps.metrics.launchStarts.inc({ mode });
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('Referrer-Policy', 'no-referrer');
  if (framed) {
    const next = new URLSearchParams({ t: stateKey(state), iss, ...(launch !== undefined ? { launch } : {}) });
    log.info({ event: 'launch.frame_check', mode }, 'launch: framed; checking that the launch cookie comes back before going to the EHR');
    res.redirect(302, `/launch/continue?${next}`);
    return;
  }
  res.redirect(302, authorizationUrl.href);
}

/**
 * `GET /launch/continue`: the second hop of a framed launch. With the cookie back, on to the authorization
 * endpoint; without it, a page that says so plainly and offers to open the launch in a top-level window.
 */
export function launchContinueHandler(deps: SmartDeps) {
  return async function launchContinue(req: Request, res: Response): Promise<void> {
    const t = queryString(req, 't');
    const binding = readLaunchBinding(req, deps.config);
    const pending = t && t.length <= 64 && binding ? await deps.transactions.peek(t, bindingHash(binding)) : undefined;
    if (pending?.status === 'found' && pending.transaction.authorizationUrl) {
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('Referrer-Policy', 'no-referrer');
      res.redirect(302, pending.transaction.authorizationUrl);
      return;
    }
    const iss = queryString(req, 'iss');
    const launch = queryString(req, 'launch');
    const retry = iss && deps.registry.match(iss) ? `/launch?${new URLSearchParams({ iss, ...(launch ? { launch } : {}) })}` : '/login';
    req.log.warn({ event: 'launch.cookie_blocked', embedded_mode: deps.config.cookieMode === 'embedded', launch_cookie: Boolean(binding) }, 'launch: the launch cookie did not come back inside the frame');
    res.status(400).render('cookie-blocked', {
      title: 'Open the app in a new window',
      retry,
      embedded: deps.config.cookieMode === 'embedded',
      correlationId: req.id,
    });
  };
}
