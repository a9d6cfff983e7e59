/**
 * Faults at the token endpoint during the code exchange: down, answering 5xx, hanging. Each reaches the user as
 * a clear error quickly, nothing crashes, no half-written session, and no secret is logged.
 */
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { switchableTokenEndpoint } from '../helpers/discovery.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { json } from '../helpers/json.js';
import { startFaultUpstream, type FaultUpstream } from '../helpers/fault-upstream.js';

let sandbox: Sandbox & { url: string };
let fault: FaultUpstream;
let b: StartedBff;
let setBroken: (on: boolean) => void;

const HTTP_TIMEOUT_MS = 3000;

beforeAll(async () => {
  sandbox = await startSandbox({ clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }], redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/ });
  fault = await startFaultUpstream('/token');
  // the EHR's discovery document names a token endpoint that misbehaves on demand
  const switchable = switchableTokenEndpoint(fault.base);
  const discovery = switchable.discovery;
  setBroken = switchable.useFaulty;
  // 3 s: short enough to wait out in the hanging test, long enough that a pause of a loaded CI machine (a major GC in
  // the Jest worker that runs the sandbox too) is not taken for a hanging EHR in the others
  b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', SMART_HTTP_TIMEOUT_MS: String(HTTP_TIMEOUT_MS) }, { discovery });
});
afterAll(async () => {
  await b?.close();
  await fault?.close();
  await sandbox?.close();
});

async function callbackWith(mode: FaultUpstream['mode'] | 'down') {
  setBroken(false);
  const browser = new Browser();
  // an earlier launch in the same browser, which must survive the failure
  const first = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
  await browser.get(await authorize(first.headers.get('location')!));
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[1]!.id })}`);
  const cb = await authorize(start.headers.get('location')!);
  setBroken(true);
  if (mode === 'down') await fault.close(); else fault.mode = mode;
  const started = Date.now();
  const res = await browser.get(cb, { accept: 'application/json' });
  const ms = Date.now() - started;
  setBroken(false);
  const session = await browser.get(`${b.url}/api/session`, { 'X-CSRF': '1' });
  return { res, ms, session, body: await json(res) };
}

test('token endpoint answering 500: 502 with a relaunch hint; the earlier launch is intact', async () => {
  const r = await callbackWith({ kind: 'status', status: 500, body: '{"error":"server_error"}' });
  expect(r.res.status).toBe(502);
  expect(r.body).toMatchObject({ error: 'token_endpoint_unavailable', relaunch: true });
  expect(r.session.status).toBe(200);
  expect((await json(r.session)).patient).toBe(sandbox.patients[0]!.id);
});

test('token endpoint hanging: 504 within the configured timeout', async () => {
  const r = await callbackWith({ kind: 'hang' });
  expect(r.res.status).toBe(504);
  // it waited for the configured timeout, not the default (10 s)
  expect(r.ms).toBeGreaterThanOrEqual(HTTP_TIMEOUT_MS - 100);
  expect(r.ms).toBeLessThan(HTTP_TIMEOUT_MS + 5000);
  expect(r.body.error).toBe('token_endpoint_unavailable');
  expect(r.session.status).toBe(200);
});

test('token endpoint down: 502 that says it could not be reached', async () => {
  const r = await callbackWith('down');
  expect(r.res.status).toBe(502);
  expect(r.body.message).toMatch(/could not be reached \(connection refused\)/);
  expect(r.session.status).toBe(200);
  for (const line of b.logs.lines) expect(() => JSON.parse(line)).not.toThrow();
});
