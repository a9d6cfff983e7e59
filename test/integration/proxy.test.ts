/**
 * The FHIR proxy and the token lifecycle over real sockets: the real BFF, the sandbox's real authorization
 * server and FHIR server (which checks the bearer token), and a misbehaving upstream for fault cases.
 */
import http from 'node:http';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { MemoryTokenStore } from '../../src/session/token-store.js';
import { authorize } from '../helpers/authorize.js';
import { json } from '../helpers/json.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';
import { metricValue as valueOf } from '../helpers/metrics-text.js';

const CSRF = { 'X-CSRF': '1' };
type SandboxWithUrl = Sandbox & { url: string };

let sandbox: SandboxWithUrl;
let b: StartedBff;
let tokenStore: MemoryTokenStore;
const tokenRequests: Record<string, unknown>[] = [];
const tokenResponses: Record<string, unknown>[] = [];

const BFF_ENV = () => ({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', FHIR_PROXY_MAX_BODY: '64kb' });

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  } as Parameters<typeof startSandbox>[0]);
  sandbox.events.on('token-request', (e: Record<string, unknown>) => tokenRequests.push(e));
  sandbox.events.on('token-response', (e: Record<string, unknown>) => tokenResponses.push(e));
  tokenStore = new MemoryTokenStore();
  // A generous upstream timeout: a first read from the sandbox on a loaded CI machine can take over a second, and
  // must never be taken for a hang. The timeout test has a BFF of its own with a short one.
  b = await startBff({ ...BFF_ENV(), FHIR_PROXY_TIMEOUT_MS: '10000' }, { tokenStore });
});

afterAll(async () => {
  await b?.close();
  await sandbox?.close();
});

async function launch(patient: string, browser = new Browser(), bff: StartedBff = b): Promise<{ browser: Browser; context: string }> {
  const start = await browser.get(`${bff.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(sandbox.createLaunch({ patient }))}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  const context = new URL(done.headers.get('location')!, bff.url).searchParams.get('context')!;
  return { browser, context };
}

function fhir(browser: Browser, path: string, context?: string, init: Omit<RequestInit, "headers"> & { headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...CSRF, ...(init.headers ?? {}) };
  if (context) headers["X-SMART-Context"] = context;
  return browser.request(`${b.url}/fhir${path}`, { ...init, headers });
}

function rawRequest(method: string, path: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(b.url);
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('reads and searches through the proxy', () => {
  test('read the launch patient; the response has no-store and no upstream cookies', async () => {
    const patient = sandbox.patients[0]!.id;
    const { browser, context } = await launch(patient);
    const res = await fhir(browser, `/Patient/${patient}`, context);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.getSetCookie().filter((c) => !c.startsWith('smart-bff.sid='))).toEqual([]);
    expect(res.headers.get('set-cookie')).toBeNull(); // not even ours: the session is touched on the server, not re-sent
    const body = await json(res);
    expect(body).toMatchObject({ resourceType: 'Patient', id: patient });
    // a small body is rewritten whole and sent with its length, not chunked
    expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(JSON.stringify(body)));
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    // one log line per proxied call, carrying the request id the response names; no separate access-log line
    const requestId = res.headers.get('x-request-id')!;
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    const lines = b.logs.entries().filter((e) => e.requestId === requestId);
    expect(lines).toEqual([expect.objectContaining({ event: 'proxy.request', status: 200, method: 'GET', contextId: context })]);
  });

  test('search with paging: links point at the proxy and the next page works through it', async () => {
    const patient = sandbox.patients[0]!.id;
    const { browser, context } = await launch(patient);
    const first = await json(await fhir(browser, `/Observation?patient=${patient}&_count=5`, context));
    expect(first.resourceType).toBe('Bundle');
    expect(first.entry.length).toBe(5);
    const next = first.link.find((l: { relation: string }) => l.relation === 'next');
    expect(next.url.startsWith(`${b.url}/fhir/`)).toBe(true);
    expect(JSON.stringify(first)).not.toContain(sandbox.fhirBaseUrl);
    for (const e of first.entry) expect(e.fullUrl.startsWith(`${b.url}/fhir/Observation/`)).toBe(true);
    const u = new URL(next.url);
    const second = await json(await fhir(browser, `${u.pathname.slice('/fhir'.length)}${u.search}`, context));
    expect(second.entry.length).toBeGreaterThan(0);
    const ids1 = first.entry.map((e: { resource: { id: string } }) => e.resource.id);
    const ids2 = second.entry.map((e: { resource: { id: string } }) => e.resource.id);
    expect(ids1.filter((id: string) => ids2.includes(id))).toEqual([]);
  });

  test('no session → 401 JSON and no upstream call; no X-CSRF → 401', async () => {
    const res = await new Browser().get(`${b.url}/fhir/Patient/1`, CSRF);
    expect(res.status).toBe(401);
    expect((await json(res)).resourceType).toBe('OperationOutcome');
    const { browser } = await launch(sandbox.patients[0]!.id);
    const noCsrf = await browser.get(`${b.url}/fhir/Patient/${sandbox.patients[0]!.id}`);
    expect(noCsrf.status).toBe(401);
    expect(noCsrf.headers.get('location')).toBeNull();
  });
});

describe('launch contexts never cross', () => {
  test('two launches with different patients in one cookie jar', async () => {
    const [pa, pb] = [sandbox.patients[0]!.id, sandbox.patients[1]!.id];
    const browser = new Browser();
    const a = await launch(pa, browser);
    const bb = await launch(pb, browser);
    expect((await json(await fhir(browser, `/Patient/${pa}`, a.context))).id).toBe(pa);
    expect((await json(await fhir(browser, `/Patient/${pb}`, bb.context))).id).toBe(pb);
    // tab B's token cannot read patient A: the sandbox enforces the token's patient
    expect((await fhir(browser, `/Patient/${pa}`, bb.context)).status).toBe(403);
    expect((await fhir(browser, `/Patient/${pa}`)).status).toBe(400);
    expect((await fhir(browser, `/Patient/${pa}`, 'unknown-context')).status).toBe(401);
  });
});

describe('launch contexts are bounded per session', () => {
  test('the oldest context is evicted beyond MAX_CONTEXTS_PER_SESSION and then gets 401', async () => {
    const small = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', MAX_CONTEXTS_PER_SESSION: '2' });
    try {
      const browser = new Browser();
      const ids: string[] = [];
      for (const p of [sandbox.patients[0]!.id, sandbox.patients[1]!.id, sandbox.patients[2]!.id]) {
        const start = await browser.get(`${small.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: p })}`);
        const done = await browser.get(await authorize(start.headers.get('location')!));
        ids.push(new URL(done.headers.get('location')!, small.url).searchParams.get('context')!);
      }
      const status = async (id: string) => (await browser.get(`${small.url}/fhir/Patient/${sandbox.patients[ids.indexOf(id)]!.id}`, { ...CSRF, 'X-SMART-Context': id })).status;
      expect(await status(ids[0]!)).toBe(401);
      expect(await status(ids[1]!)).toBe(200);
      expect(await status(ids[2]!)).toBe(200);
    } finally {
      await small.close();
    }
  });
});

describe('path and method safety: 400/405 and no upstream call', () => {
  let upstream: FaultUpstream;
  let browser: Browser;
  let context: string;
  beforeAll(async () => {
    upstream = await startFaultUpstream();
    ({ browser, context } = await launch(sandbox.patients[0]!.id));
    const tokens = (await tokenStore.get(context))!;
    await tokenStore.set(context, { ...tokens, fhirBaseUrl: upstream.base }, 3600);
  });
  afterAll(() => upstream.close());

  test.each([
    '/../x', '/%2e%2e/x', '/.%2e/x', '/%2E%2e/x', '//evil.com/x', '/\\evil.com', '/https://evil.com', '/Patient%2f1', '/Patient%5c1', '/Patient%00',
  ])('%s → 400', async (path) => {
    const before = upstream.received.length;
    // a raw request: fetch would normalise the dot segments before sending
    const res = await rawRequest('GET', `/fhir${path}`, { ...CSRF, cookie: browser.cookieHeader(b.url), 'X-SMART-Context': context });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).resourceType).toBe('OperationOutcome');
    expect(upstream.received.length).toBe(before);
  });

  test.each(['TRACE', 'OPTIONS', 'PROPFIND'])('%s → 405', async (method) => {
    const before = upstream.received.length;
    const res = await rawRequest(method, '/fhir/Patient', { ...CSRF, cookie: browser.cookieHeader(b.url), 'X-SMART-Context': context });
    expect(res.status).toBe(405);
    expect(res.headers.allow).toMatch(/GET/);
    expect(upstream.received.length).toBe(before);
  });

  test('headers: allow-listed ones forwarded, credentials and forwarding headers dropped; response cleaned', async () => {
    upstream.mode = { kind: 'ok', headers: { 'set-cookie': 'upstream=1', 'access-control-allow-origin': '*', etag: 'W/"3"', location: `${upstream.base}/Patient/1/_history/3` } };
    const res = await fetch(`${b.url}/fhir/Patient/1`, {
      headers: {
        ...CSRF, cookie: browser.cookieHeader(b.url), 'X-SMART-Context': context, authorization: 'Bearer from-browser', 'x-forwarded-host': 'evil.example',
        'if-none-match': 'W/"2"', prefer: 'return=minimal', accept: 'application/fhir+json',
      },
    });
    expect(res.status).toBe(200);
    const got = upstream.received.at(-1)!;
    expect(got.headers.authorization).toMatch(/^Bearer (?!from-browser)/);
    expect(got.headers.cookie).toBeUndefined();
    expect(got.headers['x-forwarded-host']).toBeUndefined();
    expect(got.headers['x-smart-context']).toBeUndefined();
    expect(got.headers['if-none-match']).toBe('W/"2"');
    expect(got.headers.prefer).toBe('return=minimal');
    expect(res.headers.get('set-cookie')).toBeNull();
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('etag')).toBe('W/"3"');
    expect(res.headers.get('location')).toBe(`${b.url}/fhir/Patient/1/_history/3`);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  test('an EHR at an IPv6 literal (http://[::1]:port/fhir) gets the path and query, and links come back mapped', async () => {
    const v6 = await startFaultUpstream('/fhir', '::1');
    try {
      await tokenStore.set(context, { ...(await tokenStore.get(context))!, fhirBaseUrl: v6.base }, 3600);
      v6.mode = { kind: 'ok', body: JSON.stringify({ resourceType: 'Bundle', link: [{ relation: 'next', url: `${v6.base}/Patient?page=2` }] }) };
      const res = await fhir(browser, '/Patient?name=Shaw&_count=2', context);
      expect(res.status).toBe(200);
      expect(v6.received.map((r) => r.url)).toEqual(['/fhir/Patient?name=Shaw&_count=2']);
      expect((await json(res)).link[0].url).toBe(`${b.url}/fhir/Patient?page=2`);
    } finally {
      await tokenStore.set(context, { ...(await tokenStore.get(context))!, fhirBaseUrl: upstream.base }, 3600);
      await v6.close();
    }
  });

  test('body size limit → 413 (declared and streamed)', async () => {
    upstream.mode = { kind: 'echo' };
    const big = 'x'.repeat(70 * 1024);
    const res = await fetch(`${b.url}/fhir/Patient`, { method: 'POST', body: big, headers: { ...CSRF, cookie: browser.cookieHeader(b.url), 'X-SMART-Context': context, 'content-type': 'application/fhir+json' } });
    expect(res.status).toBe(413);
    const ok = await fetch(`${b.url}/fhir/Patient`, { method: 'POST', body: '{"resourceType":"Patient"}', headers: { ...CSRF, cookie: browser.cookieHeader(b.url), 'X-SMART-Context': context, 'content-type': 'application/fhir+json' } });
    expect(ok.status).toBe(200);
    expect((await json(ok)).body).toBe('{"resourceType":"Patient"}');
  });

  test('upstream timeout → 504 OperationOutcome with the correlation id', async () => {
    const quick = await startBff({ ...BFF_ENV(), FHIR_PROXY_TIMEOUT_MS: '1000' }, { tokenStore });
    try {
      const l = await launch(sandbox.patients[0]!.id, new Browser(), quick);
      await tokenStore.set(l.context, { ...(await tokenStore.get(l.context))!, fhirBaseUrl: upstream.base }, 3600);
      upstream.mode = { kind: 'hang' };
      const before = upstream.received.length;
      const res = await l.browser.request(`${quick.url}/fhir/Patient/1`, { headers: { ...CSRF, 'X-SMART-Context': l.context } });
      expect(upstream.received.length).toBe(before + 1); // it reached the upstream, which never answered
      expect(res.status).toBe(504);
      const oo = await json(res);
      expect(oo.resourceType).toBe('OperationOutcome');
      expect(oo.issue[0].code).toBe('timeout');
      expect(oo.issue[0].details.text).toMatch(/did not answer within 1\.0 s\.$/);
      expect(oo.issue[0].diagnostics).toContain(res.headers.get('x-request-id'));
    } finally {
      await quick.close();
    }
  });

  test('a request that times out while it waits for a connection to the EHR is never sent', async () => {
    // The pool holds 256 connections to an origin. 256 downloads keep them all busy; 4 reads then wait for one, time
    // out, and get their 504. When the downloads end and free their connections, the reads must not go out after
    // all (a POST would be made after its browser was told it failed).
    const quick = await startBff({ ...BFF_ENV(), FHIR_PROXY_TIMEOUT_MS: '1000' }, { tokenStore });
    const ehr = await startFaultUpstream();
    const downloads = new AbortController();
    try {
      const l = await launch(sandbox.patients[0]!.id, new Browser(), quick);
      await tokenStore.set(l.context, { ...(await tokenStore.get(l.context))!, fhirBaseUrl: ehr.base }, 3600);
      const get = (path: string, signal?: AbortSignal) => l.browser.request(`${quick.url}/fhir${path}`, { headers: { ...CSRF, 'X-SMART-Context': l.context }, signal });
      ehr.mode = { kind: 'open' };
      const open = await Promise.all(Array.from({ length: 256 }, (_, i) => get(`/Binary/${i}`, downloads.signal)));
      expect(open.map((r) => r.status)).toEqual(Array(256).fill(200));
      expect(await quick.app.locals.proxyClient.stats()).toMatchObject({ connected: 256, running: 256, pending: 0 });

      const reads = await Promise.all(Array.from({ length: 4 }, (_, i) => get(`/Patient/${i}`).then(async (r) => (await r.arrayBuffer(), r.status))));
      expect(reads).toEqual([504, 504, 504, 504]);
      downloads.abort(); // the downloads end: their connections close
      await new Promise((r) => setTimeout(r, 500)); // time for anything still queued to go out
      expect(ehr.aborted).toBe(256);
      expect(ehr.received.filter((r) => r.url.startsWith('/fhir/Patient/'))).toEqual([]);
      expect(await quick.app.locals.proxyClient.stats()).toMatchObject({ running: 0, pending: 0 });
    } finally {
      downloads.abort();
      await quick.close();
      await ehr.close();
    }
  }, 30000);

  test('connection refused → 502 OperationOutcome that says so without internals', async () => {
    const gone = await startFaultUpstream();
    await gone.close();
    const tokens = (await tokenStore.get(context))!;
    await tokenStore.set(context, { ...tokens, fhirBaseUrl: gone.base }, 3600);
    try {
      const res = await fhir(browser, '/Patient/1', context);
      expect(res.status).toBe(502);
      const oo = await json(res);
      expect(oo.issue[0].details.text).toMatch(/could not be reached/);
      expect(JSON.stringify(oo)).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    } finally {
      await tokenStore.set(context, tokens, 3600);
    }
  });

  test('upstream reset → 502; upstream 5xx passes through unchanged', async () => {
    upstream.mode = { kind: 'reset' };
    expect((await fhir(browser, '/Patient/1', context)).status).toBe(502);
    upstream.mode = { kind: 'status', status: 503, body: '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"busy"}]}' };
    const res = await fhir(browser, '/Patient/1', context);
    expect(res.status).toBe(503);
    expect((await json(res)).issue[0].diagnostics).toBe('busy');
  });

  test('streams a large body in bounded memory, rewriting links on the way', async () => {
    const line = `{"resourceType":"Observation","subject":{"reference":"${upstream.base}/Patient/1"},"valueString":"${'v'.repeat(200)}"}\n`;
    const total = 200 * 1024 * 1024;
    upstream.mode = { kind: 'huge', bytes: total, contentType: 'application/fhir+ndjson', line };
    global.gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const timer = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
    const res = await fhir(browser, '/Observation/$export-file', context);
    expect(res.status).toBe(200);
    let bytes = 0;
    let sample = '';
    const reader = res.body!.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      if (sample.length < 1000) sample += Buffer.from(value).toString('utf8', 0, 1000);
    }
    clearInterval(timer);
    expect(bytes).toBeGreaterThan(total * 0.9);
    expect(sample).toContain(`${b.url}/fhir/Patient/1`);
    expect(sample).not.toContain(upstream.base);
    // loose bound: the body is 200 MB; buffering it would add far more than this
    expect(peak - baseline).toBeLessThan(120 * 1024 * 1024);
  }, 60000);

  test('a body of unknown length streams through the rewriter to its last byte: a FHIR base at its very end is rewritten too', async () => {
    upstream.mode = { kind: 'ok', contentType: 'application/fhir+ndjson', body: `{"id":"1"}\n${upstream.base}` };
    const res = await fhir(browser, '/Observation/$export-file', context);
    expect(res.headers.get('content-length')).toBeNull(); // streamed, not rewritten whole
    expect(await res.text()).toBe(`{"id":"1"}\n${b.url}/fhir`);
  });

  test.each([
    ['passed on as it is', 'application/octet-stream', 'x'.repeat(1000)],
    ['links rewritten on the way', 'application/fhir+ndjson', `{"subject":{"reference":"UPSTREAM/Patient/1"},"v":"${'v'.repeat(900)}"}\n`],
  ])('a browser that stops reading holds the EHR back (%s): the proxy takes no more than it can pass on', async (_name, contentType, line) => {
    upstream.mode = { kind: 'huge', bytes: 256 * 1024 * 1024, contentType, line: line.replace('UPSTREAM', upstream.base) };
    const ac = new AbortController();
    const res = await fhir(browser, '/Binary/big', context, { signal: ac.signal });
    const before = upstream.hugeBytesSent;
    const reader = res.body!.getReader();
    await reader.read();
    await new Promise((r) => setTimeout(r, 1000)); // the browser reads nothing for a second
    const taken = upstream.hugeBytesSent - before;
    await new Promise((r) => setTimeout(r, 500));
    // socket buffers on both sides, and nothing more: without back-pressure the proxy reads on at full speed
    expect(taken).toBeLessThan(32 * 1024 * 1024);
    expect(upstream.hugeBytesSent - before - taken).toBeLessThan(1024 * 1024); // and it stays stopped
    const aborted = upstream.aborted;
    ac.abort();
    for (let i = 0; i < 50 && upstream.aborted === aborted; i++) await new Promise((r) => setTimeout(r, 20)); // done before the next test counts
    expect(upstream.aborted).toBe(aborted + 1);
  });

  test('a browser abort destroys the upstream request', async () => {
    upstream.mode = { kind: 'huge', bytes: 500 * 1024 * 1024, contentType: 'application/octet-stream', line: 'x'.repeat(1000) };
    const before = upstream.aborted;
    const ac = new AbortController();
    const res = await fhir(browser, '/Binary/big', context, { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await new Promise((r) => setTimeout(r, 300));
    expect(upstream.aborted).toBe(before + 1);
  });
});

describe('metrics: every proxied call is counted', () => {
  const METRICS = 'metrics-token-0123456789';
  const scrape = async (bff: StartedBff) => (await fetch(`${bff.url}/metrics`, { headers: { authorization: `Bearer ${METRICS}` } })).text();

  test('each call is in /metrics at the next scrape, by method and status, with its latency, and never twice', async () => {
    const m = await startBff({ ...BFF_ENV(), METRICS_TOKEN: METRICS }, { tokenStore: new MemoryTokenStore() });
    try {
      const { browser, context } = await launch(sandbox.patients[0]!.id, new Browser(), m);
      const call = async (method: string, path: string) => {
        const res = await browser.request(`${m.url}/fhir${path}`, { method, headers: { ...CSRF, 'X-SMART-Context': context } });
        await res.arrayBuffer();
        return `method="${method}",status="${res.status}"`;
      };
      const made = new Map<string, number>();
      for (const [method, path] of [['GET', `/Patient/${sandbox.patients[0]!.id}`], ['GET', `/Patient/${sandbox.patients[0]!.id}`], ['GET', '/Observation?_count=2'], ['GET', '/Patient/no-such-patient'], ['HEAD', `/Patient/${sandbox.patients[0]!.id}`]] as const) {
        const labels = await call(method, path);
        made.set(labels, (made.get(labels) ?? 0) + 1);
      }
      expect(made.size).toBeGreaterThan(2); // more than one method and status, each counted under its own labels
      let text = await scrape(m);
      for (const [labels, n] of made) expect(valueOf(text, `smart_bff_proxy_requests_total{${labels}}`)).toBe(n);
      expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_count{method="GET"}')).toBe(4);
      expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_count{method="HEAD"}')).toBe(1);

      const again = await call('GET', `/Patient/${sandbox.patients[0]!.id}`);
      text = await scrape(m);
      expect(valueOf(text, `smart_bff_proxy_requests_total{${again}}`)).toBe((made.get(again) ?? 0) + 1);
      expect(valueOf(text, 'smart_bff_proxy_request_duration_seconds_count{method="GET"}')).toBe(5);
      expect(valueOf(await scrape(m), 'smart_bff_proxy_request_duration_seconds_count{method="GET"}')).toBe(5);
    } finally {
      await m.close();
    }
  });
});
