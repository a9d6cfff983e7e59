/**
 * The FHIR proxy's own entry, ahead of Express. A proxied call is the hot path and needs none of the page
 * machinery (view engine, static files, helmet, the access log, Express's request and response prototypes),
 * which cost more than the proxying itself (docs/benchmarks.md). A bare router (the `router` package, Express's
 * own) mounted at /fhir runs `steps` (request id, headers, the anti-forgery check, the same express-session
 * middleware the pages use) and then the proxy; any error becomes a FHIR OperationOutcome through the shared
 * error reporting.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import Router from 'router';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { reportError, sendFhirError } from '../http/error-handler.js';
import { AppError, ErrorCode } from '../http/errors.js';
import type { Metrics } from '../observability/metrics.js';

export interface FhirRouteDeps {
  metrics: Metrics;
  steps: readonly (RequestHandler | ErrorRequestHandler)[];
  /** The proxy itself; rejects with the error to answer. */
  proxy: (req: Request, res: Response) => Promise<void>;
}

export function fhirRoute(deps: FhirRouteDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const router = Router({ caseSensitive: true }); // as the app's routes (app.ts): /FHIR is not /fhir
  (router.use as (path: string, ...handlers: unknown[]) => void)('/fhir', ...deps.steps, deps.proxy);
  return (rawReq, res) => {
    const req = rawReq as Request;
    // The router's final handler: an error from any step, or (never expected: only /fhir URLs arrive) no match.
    router.handle(rawReq, res, (err?: unknown) => {
      const error = err ?? new AppError(ErrorCode.NOT_FOUND, 404, 'There is nothing at this address.');
      sendFhirError(reportError(error, req, deps.metrics), req, res);
    });
  };
}
