/**
 * The one error handler: an HTML page for people, JSON for programs (and always JSON under /api).
 * 5xx messages of unexpected errors never reach the client; nothing secret is ever rendered.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import type { Logger } from '../log.js';
import { AppError, ErrorCode, isAppError } from './errors.js';
import type { Metrics } from '../observability/metrics.js';

export function isFhirUrl(url: string): boolean {
  return url === '/fhir' || url.startsWith('/fhir/') || url.startsWith('/fhir?');
}

export function isFhirPath(req: Request): boolean {
  return isFhirUrl(req.originalUrl);
}

/**
 * Every `/fhir` answer, proxied or our own: whatever the EHR sends is a document of no origin (a sandbox with
 * nothing allowed), never sniffed into something executable, so an HTML or SVG body from upstream cannot act as
 * the app, readable by no other origin, and never cached (it carries session state).
 */
export const FHIR_SECURITY_HEADERS = Object.freeze({
  'content-security-policy': "sandbox; default-src 'none'",
  'x-content-type-options': 'nosniff',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
});

type ErrorContext = Pick<IncomingMessage, 'headers' | 'method'> & { originalUrl: string; log?: Logger; id: string };

/**
 * What every error gets, wherever it is answered: one AppError, its metrics, one log line. An error raised once
 * the response is complete (express-session's touch or save at the end of a request, when the store fails just
 * then) answers nothing: it is logged as `error.after_response` and counted in errorsAfterResponse, never as an
 * error response, a refused request or a launch outcome (the request it follows has already been counted).
 */
export function reportError(err: unknown, req: ErrorContext, metrics: Metrics | undefined, res: Pick<ServerResponse, 'writableEnded'>): AppError {
  const appErr = toAppError(err);
  const log = req.log;
  const path = req.originalUrl.split('?')[0];
  if (res.writableEnded) {
    metrics?.errorsAfterResponse.inc({ code: appErr.code });
    const unexpected = isAppError(err) ? {} : { err: errorFields(err) };
    log?.warn({ event: 'error.after_response', code: appErr.code, status: appErr.status, method: req.method, path, ...unexpected }, `after the response was sent: ${appErr.message}`);
    return appErr;
  }
  if (metrics) {
    metrics.errorResponses.inc({ status: String(appErr.status), code: appErr.code });
    // Only a StoreError (or the store being disconnected) carries this code: nothing else can raise a store alert.
    if (appErr.code === ErrorCode.SESSION_STORE_UNAVAILABLE) metrics.sessionStoreErrors.inc();
    if (LAUNCH_PATHS.test(req.originalUrl)) metrics.launches.inc({ outcome: appErr.code });
  }
  if (appErr.status >= 500 && !isAppError(err)) log?.error({ event: 'error.unhandled', err: errorFields(err) }, 'unhandled error');
  else log?.info({ event: 'error.response', code: appErr.code, status: appErr.status, method: req.method, path }, appErr.message);
  return appErr;
}

/** What the log says of an unexpected error (never shown to the client). */
function errorFields(err: unknown): { name?: string; message?: string; stack?: string } {
  const e = err as Error | undefined;
  return { name: e?.name, message: e?.message, stack: e?.stack };
}

/**
 * The FHIR proxy's answer to an error: an OperationOutcome, written with node:http alone (the proxy runs ahead
 * of Express). A response already under way is left as it is when finished, or cut when it broke mid-stream.
 */
export function sendFhirError(appErr: AppError, req: ErrorContext, res: ServerResponse): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  const body = JSON.stringify(operationOutcome(appErr, publicMessage(appErr), req.id));
  res.writeHead(appErr.status, { ...FHIR_SECURITY_HEADERS, 'x-request-id': req.id, 'content-type': 'application/fhir+json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function publicMessage(e: AppError): string {
  return e.expose ? e.message : 'Something went wrong on our side.';
}

/**
 * Marks the answer to this request as JSON whatever the Accept header says. Mounted on exactly the routes of the
 * programmatic endpoints (`/api`, `POST /logout`), so the JSON answer covers the same paths the router matches
 * (case, trailing slash, encoded characters) and nothing else.
 */
export const jsonAnswers: RequestHandler = (_req, res, next) => {
  res.locals.jsonAnswers = true;
  next();
};

export function wantsJson(req: Request, res: Response): boolean {
  if (res.locals.jsonAnswers === true) return true;
  return req.accepts(['html', 'json']) === 'json';
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new AppError(ErrorCode.NOT_FOUND, 404, 'There is nothing at this address.'));
};

const LAUNCH_PATHS = /^\/(launch|login|callback)(\/|\?|$)/;

export function errorHandler(metrics?: Metrics): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const appErr = reportError(err, req, metrics, res);
    // The store could not keep the session: nothing may name it (express-session would still send a cookie for
    // a new, modified session, and try to save it again at the end), so it is dropped from this request.
    if (appErr.code === ErrorCode.SESSION_STORE_UNAVAILABLE) delete (req as { session?: unknown }).session;
    if (isFhirPath(req)) return sendFhirError(appErr, req, res);
    if (res.headersSent) {
      // A late error (e.g. a session store write after the response): a finished response stays as it is;
      // one that broke mid-stream is cut so the client sees it incomplete.
      if (!res.writableEnded) res.destroy();
      return;
    }
    const correlationId = req.id;
    res.status(appErr.status);
    res.setHeader('Cache-Control', 'no-store');
    const body = {
      error: appErr.code,
      message: publicMessage(appErr),
      ...(appErr.hint ? { hint: appErr.hint } : {}),
      ...(appErr.oauthError ? { oauth_error: appErr.oauthError } : {}),
      ...(appErr.causes.length ? { likely_causes: appErr.causes } : {}),
      ...(appErr.relaunch ? { relaunch: true } : {}),
      correlation_id: correlationId,
    };
    if (wantsJson(req, res)) {
      res.json(body);
      return;
    }
    res.render('error', {
      title: titleFor(appErr),
      message: body.message,
      hint: appErr.hint,
      code: appErr.code,
      status: appErr.status,
      oauthError: appErr.oauthError,
      remoteDescription: appErr.remoteDescription,
      causes: appErr.causes,
      relaunch: appErr.relaunch,
      correlationId,
    });
  };
}

/** Errors under /fhir are FHIR OperationOutcomes; our stable code is in details.coding. */
export function operationOutcome(e: AppError, message: string, correlationId: string): Record<string, unknown> {
  const code = { 400: 'invalid', 401: 'login', 403: 'forbidden', 404: 'not-found', 405: 'not-supported', 413: 'too-long', 502: 'transient', 503: 'transient', 504: 'timeout' }[e.status] ?? 'exception';
  return {
    resourceType: 'OperationOutcome',
    issue: [{
      severity: 'error',
      code,
      details: { coding: [{ system: 'urn:smart-bff:error', code: e.code }], text: message },
      diagnostics: [e.hint, `Correlation id: ${correlationId}`].filter(Boolean).join(' '),
    }],
  };
}

function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  const e = err as { status?: number; statusCode?: number; type?: string; expose?: boolean };
  const status = e?.status ?? e?.statusCode;
  // body-parser and friends: client errors with safe messages
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return status === 413
      ? new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 413, 'The request body is too large.')
      : new AppError(ErrorCode.BAD_REQUEST, status, 'The request could not be understood.');
  }
  return new AppError(ErrorCode.INTERNAL, 500, 'Internal error', { cause: err });
}

function titleFor(e: AppError): string {
  switch (e.code) {
    case ErrorCode.AUTHORIZATION_ERROR: return e.status === 403 ? 'Access not granted' : 'The EHR refused the sign-in';
    case ErrorCode.TOKEN_EXCHANGE_FAILED: return 'Sign-in could not be completed';
    case ErrorCode.ISS_NOT_ALLOWED: return 'Unknown EHR';
    case ErrorCode.COOKIE_MISSING: return 'Your browser blocked this app\'s cookie';
    case ErrorCode.NOT_FOUND: return 'Not found';
    default: return e.status >= 500 ? 'Something went wrong' : 'This launch could not continue';
  }
}
