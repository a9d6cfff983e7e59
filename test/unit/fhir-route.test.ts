/**
 * fhirRoute: the steps run in order before the proxy, with req.url relative to /fhir; an error skips to the
 * next 4-argument step, which may replace it; whatever error remains (or a rejected proxy) is answered as an
 * OperationOutcome carrying the request id.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { fhirRoute } from '../../src/proxy/fhir-route.js';
import { Metrics } from '../../src/observability/metrics.js';
import { AppError, ErrorCode } from '../../src/http/errors.js';

async function serve(steps: (RequestHandler | ErrorRequestHandler)[], proxy: (req: Request, res: Response) => Promise<void>) {
  const withId: RequestHandler = (req, _res, next) => { req.id = 'req-12345678'; next(); };
  const route = fhirRoute({ metrics: new Metrics(), steps: [withId, ...steps], proxy });
  const server = http.createServer(route);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { get: (path: string) => fetch(url + path), close: () => new Promise((r) => server.close(r)) };
}

test('steps run in order, then the proxy sees the URL relative to /fhir', async () => {
  const seen: string[] = [];
  const step = (name: string): RequestHandler => (_q, _s, next) => { seen.push(name); next(); };
  const s = await serve([step('a'), step('b')], async (req, res) => {
    seen.push(`proxy ${req.url} ${req.originalUrl}`);
    res.end('ok');
  });
  try {
    const res = await s.get('/fhir/Patient/1?x=1');
    expect(await res.text()).toBe('ok');
    expect(seen).toEqual(['a', 'b', 'proxy /Patient/1?x=1 /fhir/Patient/1?x=1']);
  } finally {
    await s.close();
  }
});

test('an error skips plain steps and reaches the next error handler, which may replace it', async () => {
  const seen: string[] = [];
  const failing: RequestHandler = (_q, _s, next) => next(new Error('store down'));
  const skipped: RequestHandler = (_q, _s, next) => { seen.push('skipped'); next(); };
  const translate: ErrorRequestHandler = (err, _q, _s, next) => {
    seen.push(`handler:${(err as Error).message}`);
    next(new AppError(ErrorCode.SESSION_STORE_UNAVAILABLE, 503, 'The session store is unavailable.'));
  };
  const s = await serve([failing, skipped, translate, skipped], async () => { seen.push('proxy'); });
  try {
    const res = await s.get('/fhir/Patient/1');
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
    const oo = await res.json() as { resourceType: string; issue: { details: { coding: { code: string }[] }; diagnostics: string }[] };
    expect(oo.resourceType).toBe('OperationOutcome');
    expect(oo.issue[0]!.details.coding[0]!.code).toBe(ErrorCode.SESSION_STORE_UNAVAILABLE);
    expect(oo.issue[0]!.diagnostics).toContain('req-12345678');
    expect(seen).toEqual(['handler:store down']);
  } finally {
    await s.close();
  }
});

test('a step that throws or a proxy that rejects is an OperationOutcome, not a crash; internals stay hidden', async () => {
  const thrower = await serve([() => { throw new Error('boom at /secret/path'); }], async () => undefined);
  const rejecter = await serve([], async () => { throw new AppError(ErrorCode.UPSTREAM_TIMEOUT, 504, 'The EHR did not answer.'); });
  try {
    const a = await thrower.get('/fhir/Patient/1');
    expect(a.status).toBe(500);
    expect(await a.text()).not.toContain('boom');
    const b = await rejecter.get('/fhir');
    expect(b.status).toBe(504);
    expect(await b.text()).toContain('The EHR did not answer.');
  } finally {
    await thrower.close();
    await rejecter.close();
  }
});
