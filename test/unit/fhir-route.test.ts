/**
 * fhirRoute: the request id, the anti-forgery header before any session lookup, the session, then the proxy with
 * the URL after /fhir; any error (a refused header, a store that fails, a proxy that rejects or throws) is answered
 * as an OperationOutcome carrying the request id and every /fhir answer's headers, internals hidden. The route sets
 * no header itself: the proxy's answers carry them from its one writeHead (proxy-responses.test.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fhirRoute, pathAfterFhir, type FhirRouteDeps } from '../../src/proxy/fhir-route.js';
import { Metrics } from '../../src/observability/metrics.js';
import { AppError, ErrorCode, StoreError } from '../../src/http/errors.js';
import { createLogger } from '../../src/log.js';
import type { ProxySession } from '../../src/session/proxy-sessions.js';

const CSRF = { 'X-CSRF': '1', 'X-Request-Id': 'req-12345678' };

async function serve(sessions: FhirRouteDeps['sessions'], proxy: FhirRouteDeps['proxy']) {
  const route = fhirRoute({ logger: createLogger({ level: 'silent' }), metrics: new Metrics(), sessions, proxy });
  const server = http.createServer(route);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { get: (path: string, headers: Record<string, string> = CSRF) => fetch(url + path, { headers }), close: () => new Promise((r) => server.close(r)) };
}

type Get = Awaited<ReturnType<typeof serve>>['get'];

/** `run` against a route served with these sessions and this proxy; the server is closed after, whatever happens. */
async function withRoute(sessions: FhirRouteDeps['sessions'], proxy: FhirRouteDeps['proxy'], run: (get: Get) => Promise<void>) {
  const s = await serve(sessions, proxy);
  try {
    await run(s.get);
  } finally {
    await s.close();
  }
}

const session: ProxySession = { id: 'sid-1', data: { contexts: {} } };

async function outcome(res: Response) {
  expect(res.headers.get('content-type')).toMatch(/^application\/fhir\+json/);
  expect(['x-content-type-options', 'cache-control', 'cross-origin-resource-policy', 'content-security-policy'].map((h) => res.headers.get(h)))
    .toEqual(['nosniff', 'no-store', 'same-origin', "sandbox; default-src 'none'"]);
  if (res.status !== 401) expect(res.headers.get('x-request-id')).toBe('req-12345678');
  else expect(res.headers.get('x-request-id')).toMatch(/^(req-12345678|[0-9a-f-]{36})$/);
  const oo = await res.json() as { resourceType: string; issue: { details: { coding: { code: string }[]; text: string }; diagnostics: string }[] };
  expect(oo.resourceType).toBe('OperationOutcome');
  return { code: oo.issue[0]!.details.coding[0]!.code, text: oo.issue[0]!.details.text, diagnostics: oo.issue[0]!.diagnostics };
}

test('the session is looked up after the anti-forgery header, then the proxy sees the URL after /fhir and the session', async () => {
  const seen: string[] = [];
  await withRoute(
    { atHand: () => undefined, forRequest: async (cookie) => { seen.push(`session ${cookie}`); return session; } },
    async (call, req, res) => {
      seen.push(`proxy ${call.path} ${req.url} ${call.session?.id} ${call.id}`);
      res.end('ok');
    },
    async (get) => {
      const res = await get('/fhir/Patient/1?x=1', { ...CSRF, cookie: 'a=b' });
      expect(await res.text()).toBe('ok');
      expect(seen).toEqual(['session a=b', 'proxy /Patient/1?x=1 /fhir/Patient/1?x=1 sid-1 req-12345678']);
    },
  );
});

test('a session at hand (in the read cache) goes straight to the proxy, without a store lookup', async () => {
  const seen: string[] = [];
  await withRoute(
    { atHand: (cookie) => (seen.push(`at hand ${cookie}`), session), forRequest: async () => { seen.push('store'); return undefined; } },
    async (call, req, res) => {
      seen.push(`proxy ${call.path} ${call.session?.id} ${call.id}`);
      res.end('ok');
    },
    async (get) => {
      const res = await get('/fhir/Patient/1', { ...CSRF, cookie: 'a=b' });
      expect(await res.text()).toBe('ok');
      expect(seen).toEqual(['at hand a=b', 'proxy /Patient/1 sid-1 req-12345678']);
    },
  );
});

test('without X-CSRF: 401 before any session lookup or proxying', async () => {
  const seen: string[] = [];
  await withRoute({ atHand: () => { seen.push('at hand'); return session; }, forRequest: async () => { seen.push('session'); return session; } }, async () => { seen.push('proxy'); }, async (get) => {
    for (const headers of [{}, { 'X-CSRF': '0' }, { 'X-CSRF': 'yes' }] as Record<string, string>[]) {
      const res = await get('/fhir/Patient/1', headers);
      expect(res.status).toBe(401);
      expect((await outcome(res)).code).toBe(ErrorCode.CSRF_HEADER_REQUIRED);
    }
    expect(seen).toEqual([]);
  });
});

test('a store that fails is 503 session_store_unavailable, never "no session"; the proxy is not reached', async () => {
  const seen: string[] = [];
  await withRoute({ atHand: () => undefined, forRequest: async () => { throw new StoreError('get', new Error('ECONNREFUSED')); } }, async () => { seen.push('proxy'); }, async (get) => {
    const res = await get('/fhir/Patient/1');
    expect(res.status).toBe(503);
    const o = await outcome(res);
    expect(o.code).toBe(ErrorCode.SESSION_STORE_UNAVAILABLE);
    expect(o.diagnostics).toContain('req-12345678');
    expect(seen).toEqual([]);
  });
});

test('a proxy that throws or rejects is an OperationOutcome, not a crash; internals stay hidden (a session from the store or at hand)', async () => {
  for (const sessions of [{ atHand: () => undefined, forRequest: async () => session }, { atHand: () => session, forRequest: async () => undefined }]) {
    const thrower = await serve(sessions, () => { throw new Error('boom at /secret/path'); });
    const rejecter = await serve(sessions, async () => { throw new AppError(ErrorCode.UPSTREAM_TIMEOUT, 504, 'The EHR did not answer.'); });
    try {
      const a = await thrower.get('/fhir/Patient/1');
      expect(a.status).toBe(500);
      expect(JSON.stringify(await outcome(a))).not.toContain('boom');
      const b = await rejecter.get('/fhir');
      expect(b.status).toBe(504);
      expect((await outcome(b)).text).toBe('The EHR did not answer.');
    } finally {
      await thrower.close();
      await rejecter.close();
    }
  }
});

test('a session lookup that throws at once is an OperationOutcome too, not a crash', async () => {
  await withRoute({ atHand: () => { throw new StoreError('get', new Error('boom')); }, forRequest: async () => session }, async () => undefined, async (get) => {
    const res = await get('/fhir/Patient/1');
    expect(res.status).toBe(503);
    expect((await outcome(res)).code).toBe(ErrorCode.SESSION_STORE_UNAVAILABLE);
  });
});

test('the path after /fhir is what a mount at /fhir sees', () => {
  expect(pathAfterFhir('/fhir/Patient/1?x=1')).toBe('/Patient/1?x=1');
  expect(pathAfterFhir('/fhir')).toBe('/');
  expect(pathAfterFhir('/fhir?x=1')).toBe('/?x=1');
  expect(pathAfterFhir('/fhir/')).toBe('/');
});
