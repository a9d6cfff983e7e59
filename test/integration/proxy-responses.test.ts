/**
 * Checklist #47: what the EHR answers cannot act on the app's origin. `/fhir` answers (proxied or our own
 * OperationOutcomes) carry `Content-Security-Policy: sandbox` and `nosniff`; only an allow-list of upstream
 * response headers reaches the browser; `Location`/`Content-Location` are rewritten to the proxy when they point
 * under the FHIR base and dropped otherwise. A real launch (sandbox authorization server) whose FHIR base is a
 * misbehaving upstream.
 */
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { MemoryTokenStore } from '../../src/session/token-store.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';
import { rawHttp } from '../helpers/raw-http.js';

let sandbox: Sandbox & { url: string };
let b: StartedBff;
let upstream: FaultUpstream;
let browser: Browser;
let context: string;
const tokenStore = new MemoryTokenStore();

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  } as Parameters<typeof startSandbox>[0]);
  upstream = await startFaultUpstream();
  b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', FHIR_PROXY_TIMEOUT_MS: '3000' }, { tokenStore }); // long enough for a loaded CI machine; one test waits it out
  browser = new Browser();
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  context = new URL(done.headers.get('location')!, b.url).searchParams.get('context')!;
  const tokens = (await tokenStore.get(context))!;
  await tokenStore.set(context, { ...tokens, fhirBaseUrl: upstream.base }, 3600);
});
afterAll(async () => {
  await b?.close();
  await upstream?.close();
  await sandbox?.close();
});

const fhir = (path: string, init: RequestInit = {}) =>
  browser.request(`${b.url}/fhir${path}`, { ...init, headers: { 'X-CSRF': '1', 'X-SMART-Context': context } });

function expectSandboxed(headers: { get(name: string): string | null }): void {
  expect(headers.get('content-security-policy')).toMatch(/(^|;\s*)sandbox(;|$)/);
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('cache-control')).toBe('no-store');
  expect(headers.get('cross-origin-resource-policy')).toBe('same-origin');
  expect(headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
}

describe('#47 upstream responses cannot act on the app origin', () => {
  test('#47 only FHIR headers pass; headers that act on the origin are dropped; CSP sandbox and nosniff are added', async () => {
    const kept = {
      etag: 'W/"4"', 'last-modified': 'Tue, 01 Jul 2025 10:00:00 GMT', 'x-progress': 'exporting 3/10', 'retry-after': '120',
      expires: 'Tue, 01 Jul 2025 11:00:00 GMT', 'content-language': 'en', 'preference-applied': 'return=minimal', 'x-correlation-id': 'corr-1',
    };
    const dropped = {
      refresh: '0; url=https://evil.example/', link: '<https://evil.example/x.css>; rel=stylesheet', 'clear-site-data': '"cookies", "storage"',
      'content-security-policy': 'default-src *', 'content-security-policy-report-only': "default-src 'none'; report-uri https://evil.example/r",
      'set-cookie': 'upstream=1; Path=/', 'service-worker-allowed': '/', 'origin-agent-cluster': '?0', 'permissions-policy': 'camera=*',
      'report-to': '{"group":"x","max_age":1,"endpoints":[{"url":"https://evil.example/r"}]}', nel: '{"report_to":"x","max_age":1}',
      'reporting-endpoints': 'x="https://evil.example/r"', 'timing-allow-origin': '*', 'x-frame-options': 'ALLOWALL',
      'cross-origin-opener-policy': 'unsafe-none', 'cross-origin-embedder-policy': 'unsafe-none', 'cross-origin-resource-policy': 'cross-origin',
      'x-dns-prefetch-control': 'on', 'accept-ch': 'Sec-CH-UA-Model', 'x-xss-protection': '1', 'access-control-allow-origin': '*',
      'strict-transport-security': 'max-age=0', 'alt-svc': 'h3=":443"', server: 'upstream/1.0', 'x-powered-by': 'php', 'www-authenticate': 'Basic realm="ehr"',
      'speculation-rules': '"/rules.json"', 'supports-loading-mode': 'credentialed-prerender', 'x-permitted-cross-domain-policies': 'all',
    };
    upstream.mode = { kind: 'ok', headers: { ...kept, ...dropped } };
    const res = await fhir('/Patient/1');
    expect(res.status).toBe(200);
    for (const [name, value] of Object.entries(kept)) expect({ name, value: res.headers.get(name) }).toEqual({ name, value });
    for (const name of Object.keys(dropped)) {
      if (name === 'content-security-policy') continue;
      if (name === 'cross-origin-resource-policy') { expect(res.headers.get(name)).toBe('same-origin'); continue; } // ours
      expect({ name, value: res.headers.get(name) }).toEqual({ name, value: null });
    }
    expect(res.headers.get('content-type')).toBe('application/fhir+json');
    expectSandboxed(res.headers);
    expect(res.headers.get('content-security-policy')).not.toContain('default-src *');
  });

  test('#47 a header the EHR repeats reaches the browser once: the first of a one-value header (Content-Type, ETag, Location), the others joined', async () => {
    upstream.mode = { kind: 'ok', status: 201, headers: {
      'content-type': ['application/fhir+json', 'text/html'], etag: ['W/"1"', 'W/"2"'], 'x-progress': ['step 1', 'step 2'],
      location: [`${upstream.base}/Patient/9`, 'https://evil.example/Patient/9'],
    } };
    const res = await fhir('/Patient', { method: 'POST', body: '{"resourceType":"Patient"}' });
    expect(res.status).toBe(201);
    // fetch joins repeated lines with ", ": a second Content-Type or ETag line would show here
    expect(res.headers.get('content-type')).toBe('application/fhir+json');
    expect(res.headers.get('etag')).toBe('W/"1"');
    expect(res.headers.get('location')).toBe(`${b.url}/fhir/Patient/9`);
    expect(res.headers.get('x-progress')).toBe('step 1, step 2');
  });

  test.each([
    ['an absolute URL under the FHIR base → rewritten to the proxy', () => `${upstream.base}/Patient/9/_history/2`, () => `${b.url}/fhir/Patient/9/_history/2`],
    ['a URL relative to the FHIR base → rewritten to the proxy', () => 'Patient/9/_history/2', () => `${b.url}/fhir/Patient/9/_history/2`],
    ['an absolute path under the FHIR base → rewritten to the proxy', () => '/fhir/Patient/9', () => `${b.url}/fhir/Patient/9`],
    ['another origin → dropped', () => 'https://evil.example/Patient/9', () => null],
    ['a scheme-relative URL to another host → dropped', () => '//evil.example/Patient/9', () => null],
    ['the same origin outside the FHIR base → dropped', () => `${upstream.url}/sandbox/`, () => null],
    ['a path that climbs out of the base → dropped', () => '/fhir/../sandbox/', () => null],
    ['a base that only shares a prefix → dropped', () => `${upstream.base}x/Patient/9`, () => null],
    ['javascript: → dropped', () => 'javascript:alert(1)', () => null],
  ])('#47 Location and Content-Location: %s', async (_name, value, expected) => {
    upstream.mode = { kind: 'ok', status: 201, headers: { location: value(), 'content-location': value() } };
    const res = await fhir('/Patient', { method: 'POST', body: '{"resourceType":"Patient"}' });
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toBe(expected());
    expect(res.headers.get('content-location')).toBe(expected());
  });

  test('#47 an HTML body from the EHR is served sandboxed, so its scripts cannot run as the app', async () => {
    upstream.mode = { kind: 'ok', contentType: 'text/html; charset=utf-8', body: '<!doctype html><script>fetch("/api/session")</script>' };
    const res = await fhir('/Binary/page');
    expect(res.status).toBe(200);
    expectSandboxed(res.headers);
  });

  test('#47 the proxy\'s own error answers carry the same headers (401, 405, 400, 504)', async () => {
    const noSession = await fetch(`${b.url}/fhir/Patient/1`, { headers: { 'X-CSRF': '1' } });
    expect(noSession.status).toBe(401);
    expectSandboxed(noSession.headers);
    const trace = await rawHttp(b.url, `TRACE /fhir/Patient HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nCookie: ${browser.cookieHeader(b.url)}\r\n\r\n`);
    expect(trace.status).toBe(405);
    expectSandboxed({ get: (n) => trace.headers[n] ?? null });
    const body = await rawHttp(b.url, `GET /fhir/Patient HTTP/1.1\r\nHost: x\r\nX-CSRF: 1\r\nCookie: ${browser.cookieHeader(b.url)}\r\nContent-Length: 2\r\n\r\nhi`);
    expect(body.status).toBe(400);
    expectSandboxed({ get: (n) => body.headers[n] ?? null });
    upstream.mode = { kind: 'hang' };
    const timeout = await fhir('/Patient/1');
    expect(timeout.status).toBe(504);
    expectSandboxed(timeout.headers);
    const noCsrf = await fetch(`${b.url}/fhir/Patient/1`);
    expect(noCsrf.status).toBe(401);
    expectSandboxed(noCsrf.headers);
  });
});
