/**
 * Real launches against a BFF whose sandbox EHR is mounted at /sandbox (the server as `npm start` runs it), driven
 * like a browser: the sandbox's "Launch app" form, the BFF's /launch, sign-in and consent at the authorization
 * server (authorize.ts), then the callback.
 *
 * `failedLaunch` ends in a real `invalid_grant` from the authorization server: the test asks the authorization
 * server for a code bound to its own PKCE challenge (the BFF's authorize URL with the challenge swapped), redeems
 * that code itself at the token endpoint, and only then delivers the callback, so the BFF's exchange of the same
 * code is refused ("already consumed"), as when a code is intercepted or replayed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { authorize } from './authorize.js';
import { Browser } from './browser.js';

export const SANDBOX_PATIENTS = ['smart-1032702', 'smart-1098667', 'smart-1134281', 'smart-1186747', 'smart-1213208'];

export interface LaunchResult {
  /** The callback's answer. */
  status: number;
  location: string | null;
  browser: Browser;
  /** The launch's request id at the callback (X-Request-Id). */
  callbackRequestId: string | null;
  /** The redeemed tokens of a failed launch (the test's own, never the BFF's): to prove they are not shown. */
  stolenTokens?: string[];
}

/** The sandbox's "Launch app" for a patient: the BFF's /launch URL with iss and launch. */
async function launchUrl(bff: string, browser: Browser, patient: string): Promise<string> {
  const res = await browser.request(`${bff}/sandbox/launch`, {
    method: 'POST', body: new URLSearchParams({ patient }).toString(), headers: { 'content-type': 'application/x-www-form-urlencoded' },
  });
  const location = res.headers.get('location');
  await res.arrayBuffer();
  if (res.status !== 303 || !location) throw new Error(`the sandbox's launch form answered ${res.status}`);
  return new URL(location, bff).href;
}

async function startLaunch(bff: string, browser: Browser, patient: string): Promise<string> {
  const start = await browser.get(await launchUrl(bff, browser, patient));
  const authorizeUrl = start.headers.get('location');
  await start.arrayBuffer();
  if (start.status !== 302 || !authorizeUrl) throw new Error(`/launch answered ${start.status}`);
  return authorizeUrl;
}

async function deliver(bff: string, browser: Browser, callbackUrl: string): Promise<LaunchResult> {
  const cb = new URL(callbackUrl);
  const res = await browser.get(`${bff}/callback${cb.search}`);
  await res.arrayBuffer();
  return { status: res.status, location: res.headers.get('location'), browser, callbackRequestId: res.headers.get('x-request-id') };
}

/** A successful EHR launch for a patient of the sandbox. */
export async function successfulLaunch(bff: string, patient = SANDBOX_PATIENTS[0]!, browser = new Browser()): Promise<LaunchResult> {
  const authorizeUrl = await startLaunch(bff, browser, patient);
  const result = await deliver(bff, browser, await authorize(authorizeUrl));
  if (result.status !== 302 || !result.location?.startsWith('/app?context=')) throw new Error(`the callback answered ${result.status} ${result.location}`);
  return result;
}

/** An EHR launch whose code exchange gets a real invalid_grant (the code was redeemed first, by someone else). */
export async function failedLaunch(bff: string, patient = SANDBOX_PATIENTS[1]!, browser = new Browser()): Promise<LaunchResult> {
  const authorizeUrl = new URL(await startLaunch(bff, browser, patient));
  const verifier = randomBytes(32).toString('base64url');
  authorizeUrl.searchParams.set('code_challenge', createHash('sha256').update(verifier).digest('base64url'));
  const callback = new URL(await authorize(authorizeUrl.href));
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`no code in ${callback.href}`);
  const discovery = await (await fetch(`${bff}/sandbox/fhir/.well-known/smart-configuration`)).json() as { token_endpoint: string };
  const redeemed = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: `${bff}/callback`, client_id: authorizeUrl.searchParams.get('client_id')! }).toString(),
  });
  const tokens = await redeemed.json() as Record<string, unknown>;
  if (redeemed.status !== 200) throw new Error(`redeeming the code first answered ${redeemed.status}: ${JSON.stringify(tokens)}`);
  const result = await deliver(bff, browser, callback.href);
  if (result.status !== 401) throw new Error(`the callback answered ${result.status}, not 401`);
  return { ...result, stolenTokens: [code, tokens.access_token, tokens.id_token, tokens.refresh_token].filter((t): t is string => typeof t === 'string') };
}
