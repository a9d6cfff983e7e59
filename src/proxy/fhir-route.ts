/**
 * The FHIR proxy's own entry, ahead of Express. A proxied call is the hot path and needs none of the page
 * machinery (view engine, static files, helmet, the access log, the router), which cost more than the proxying
 * itself (docs/benchmarks.md). `steps` are ordinary connect-style middleware (request id, headers, the
 * anti-forgery check, the same express-session middleware the pages use), run in order as Express would run
 * them; then the proxy. Any error becomes a FHIR OperationOutcome through the shared error reporting.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { reportError, sendFhirError } from '../http/error-handler.js';
import type { Metrics } from '../observability/metrics.js';

export type Step = RequestHandler | ErrorRequestHandler;

export interface FhirRouteDeps {
  metrics: Metrics;
  steps: readonly Step[];
  /** The proxy itself; rejects with the error to answer. */
  proxy: (req: Request, res: Response) => Promise<void>;
}

export function fhirRoute(deps: FhirRouteDeps): (req: IncomingMessage, res: ServerResponse) => void {
  return (rawReq, rawRes) => {
    const req = rawReq as Request;
    const res = rawRes as Response;
    // As Express does when mounting at /fhir: originalUrl keeps the whole URL, url is relative to the mount.
    req.originalUrl = rawReq.url!;
    const rest = rawReq.url!.slice('/fhir'.length);
    req.url = rest.startsWith('/') ? rest : `/${rest}`;
    const fail = (err: unknown) => sendFhirError(reportError(err, req, deps.metrics), req, res);
    runSteps(deps.steps, req, res, (err) => {
      if (err !== undefined) return fail(err);
      deps.proxy(req, res).catch(fail);
    });
  };
}

/** Connect-style steps in order, as Express runs them: an error skips to the next 4-argument step. */
export function runSteps(steps: readonly Step[], req: Request, res: Response, done: (err?: unknown) => void, index = 0, error?: unknown): void {
  if (index === steps.length) return done(error);
  const step = steps[index]!;
  const next = (err?: unknown) => runSteps(steps, req, res, done, index + 1, err === 'route' || err === 'router' ? undefined : err);
  const handlesErrors = step.length === 4;
  if ((error !== undefined) !== handlesErrors) return next(error);
  try {
    if (handlesErrors) (step as ErrorRequestHandler)(error, req, res, next);
    else (step as RequestHandler)(req, res, next);
  } catch (err) {
    next(err);
  }
}
