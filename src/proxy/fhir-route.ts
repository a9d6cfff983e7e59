/**
 * The FHIR proxy's own entry, ahead of Express. A proxied call is the hot path and needs none of the page
 * machinery (view engine, static files, helmet, the access log, Express's request and response prototypes) nor
 * express-session's (docs/benchmarks.md): it runs one short sequence on Node's own request and response:
 *
 *   request id → the anti-forgery header (before any session is looked up) → the session (proxy-sessions.ts:
 *   cookie, store through its read cache, absolute timeout, throttled touch) → the proxy
 *
 * and any error becomes a FHIR OperationOutcome through the shared error reporting (its metrics and log line).
 * Every answer, the proxy's and the errors', is written with one writeHead that carries the request id and the
 * headers every /fhir answer has (FHIR_SECURITY_HEADERS: CSP sandbox, nosniff, same-origin, no-store), so no
 * header is set on the response before (each setHeader costs a validation and a merge into writeHead's).
 *
 * A call whose session and token set are in memory (most calls) waits for nothing before the upstream request: no
 * promise is awaited until its answer (ProxySessions.atHand, TokenRefresher.freshAtHand, UpstreamClient.made).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { csrfHeaderError } from '../http/csrf.js';
import { reportError, sendFhirError } from '../http/error-handler.js';
import { requestIdFor } from '../http/request-context.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../observability/metrics.js';
import type { ProxySession, ProxySessions } from '../session/proxy-sessions.js';

/** One proxied call: what the proxy needs of the request besides Node's request and response. */
export class ProxyCall {
  /** The session the cookie names, once looked up (undefined: none). */
  session: ProxySession | undefined;
  #log: Logger | undefined;

  constructor(
    private readonly logger: Logger,
    /** The request id (the caller's X-Request-Id when it is a plain token, else a new one). */
    readonly id: string,
    /** The URL after `/fhir`, still undecoded, from `/`: `/Patient/1?_elements=id`. */
    readonly path: string,
  ) {}

  /** The request's logger, made on first use: a call that logs nothing else never makes it. */
  log(): Logger {
    return (this.#log ??= this.logger.child({ requestId: this.id }));
  }
}

export interface FhirRouteDeps {
  logger: Logger;
  metrics: Metrics;
  sessions: Pick<ProxySessions, 'atHand' | 'forRequest'>;
  /** The proxy itself; throws, or rejects with, the error to answer. */
  proxy: (call: ProxyCall, req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** `/fhir/Patient/1?x` → `/Patient/1?x`; `/fhir` → `/`; `/fhir?x` → `/?x` (what a mount at /fhir sees). */
export function pathAfterFhir(url: string): string {
  const rest = url.slice('/fhir'.length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

export function fhirRoute(deps: FhirRouteDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { logger, metrics, sessions, proxy } = deps;

  /**
   * The anti-forgery header, the session, the proxy; rejects with the error to answer. A session in the read cache
   * is taken as it is and the proxy called at once, without an async step of this function's own (most calls; an
   * async function and its await cost a few per cent of a read's CPU, docs/benchmarks.md).
   */
  function handle(call: ProxyCall, req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const refused = csrfHeaderError(req.headers);
      if (refused) return Promise.reject(refused);
      const session = sessions.atHand(req.headers.cookie);
      if (session === undefined) return lookUpThenProxy(call, req, res);
      call.session = session;
      return proxy(call, req, res);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async function lookUpThenProxy(call: ProxyCall, req: IncomingMessage, res: ServerResponse): Promise<void> {
    call.session = await sessions.forRequest(req.headers.cookie, () => call.log());
    await proxy(call, req, res);
  }

  return (req, res) => {
    const url = req.url ?? '/fhir';
    const call = new ProxyCall(logger, requestIdFor(req.headers['x-request-id']), pathAfterFhir(url));
    handle(call, req, res).catch((err: unknown) => {
      const context = { headers: req.headers, method: req.method, originalUrl: url, id: call.id, get log() { return call.log(); } };
      sendFhirError(reportError(err, context, metrics, res), context, res);
    });
  };
}
