/**
 * Prometheus metrics (prom-client), one registry per app instance: launches and their outcome by error code,
 * token exchanges and refreshes by result, revocations of ended launch contexts by reason and result, proxy
 * requests by status with a latency histogram (recorded per call in a batch that is applied before every read:
 * proxy-call-batch.ts), upstream errors, session store errors, every error response by status and stable code,
 * and errors raised after a response was complete. Served at /metrics only when METRICS_TOKEN is set, and only
 * with that bearer token.
 */
import { bearerMatches } from '../http/secret-compare.js';
import client from 'prom-client';
import { ProxyCallBatch } from './proxy-call-batch.js';
import type { RequestHandler } from 'express';

export class Metrics {
  readonly registry = new client.Registry();
  readonly launches = new client.Counter({ name: 'smart_bff_launches_total', help: 'Completed launch attempts by outcome: success, or the error code that ended them', labelNames: ['outcome'], registers: [this.registry] });
  readonly launchStarts = new client.Counter({ name: 'smart_bff_launch_starts_total', help: 'Redirects to the authorization endpoint, by mode', labelNames: ['mode'], registers: [this.registry] });
  readonly tokenExchanges = new client.Counter({ name: 'smart_bff_token_exchanges_total', help: 'Authorization code exchanges by result (success or OAuth error)', labelNames: ['result'], registers: [this.registry] });
  readonly tokenRefreshes = new client.Counter({ name: 'smart_bff_token_refreshes_total', help: 'Refresh token grants by result', labelNames: ['result'], registers: [this.registry] });
  readonly tokenRevocations = new client.Counter({ name: 'smart_bff_token_revocations_total', help: 'Launch contexts ended, by reason (logout, evicted, idle_timeout, absolute_timeout, refresh_invalid_grant, memory_full, …) and what the EHR confirmed (revoked, unconfirmed, unsupported, dropped)', labelNames: ['reason', 'result'], registers: [this.registry] });
  // Each proxied call is recorded in `proxyCalls` (below), which both of these apply before they are read.
  readonly proxyRequests: client.Counter<'method' | 'status'> = new client.Counter({
    name: 'smart_bff_proxy_requests_total', help: 'FHIR proxy requests by method and status', labelNames: ['method', 'status'], registers: [this.registry],
    collect: (): void => this.proxyCalls.flush(),
  });
  readonly proxyLatency: client.Histogram<'method'> = new client.Histogram({
    name: 'smart_bff_proxy_request_duration_seconds', help: 'FHIR proxy time to response end', labelNames: ['method'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25], registers: [this.registry],
    collect: (): void => this.proxyCalls.flush(),
  });
  /** A proxied call's count and latency, held in a batch and applied to the two metrics above (proxy-call-batch.ts). */
  readonly proxyCalls: ProxyCallBatch = new ProxyCallBatch(this.proxyRequests, this.proxyLatency);
  readonly upstreamErrors = new client.Counter({ name: 'smart_bff_upstream_errors_total', help: 'FHIR upstream failures by kind (timeout, connect)', labelNames: ['kind'], registers: [this.registry] });
  readonly sessionStoreErrors = new client.Counter({ name: 'smart_bff_session_store_errors_total', help: 'Requests refused because the session store (or the pending-launch store) failed or was unreachable', registers: [this.registry] });
  readonly errorResponses = new client.Counter({ name: 'smart_bff_error_responses_total', help: 'Error responses by HTTP status and stable error code', labelNames: ['status', 'code'], registers: [this.registry] });
  readonly errorsAfterResponse = new client.Counter({ name: 'smart_bff_errors_after_response_total', help: 'Errors raised after a response was complete (a session store touch or save at the end of a request), by stable error code: no error response was sent', labelNames: ['code'], registers: [this.registry] });

  /**
   * @param processMetrics prom-client's default metrics (CPU, memory, event loop lag, GC …): only when /metrics is
   * served, since they cost start-up time (some 30 ms) and keep collecting (an event-loop monitor, a GC observer).
   */
  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics ?? true) client.collectDefaultMetrics({ register: this.registry, prefix: 'smart_bff_' });
  }
}

export function metricsHandler(metrics: Metrics, token: string): RequestHandler {
  return async (req, res) => {
    if (!bearerMatches(req.get('authorization'), token)) {
      res.status(401).set('www-authenticate', 'Bearer realm="metrics"').json({ error: 'unauthorized', message: 'Metrics need Authorization: Bearer <METRICS_TOKEN>.' });
      return;
    }
    res.set('content-type', metrics.registry.contentType).set('cache-control', 'no-store').send(await metrics.registry.metrics());
  };
}
