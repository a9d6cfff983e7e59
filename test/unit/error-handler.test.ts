/**
 * The one error handler, on a small Express app over a real socket: an unexpected error is a 500 whose message and
 * stack reach the log and never the client (JSON for programs, the HTML page for people), and an error raised after
 * the response was complete answers nothing: it is logged as `error.after_response` and counted on its own, never
 * as an error response, a session store error or a launch outcome.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import { errorHandler } from '../../src/http/error-handler.js';
import { StoreError } from '../../src/http/errors.js';
import { Metrics } from '../../src/observability/metrics.js';
import { captureLogs, type CapturedLogs } from '../helpers/log-capture.js';

const SECRET_ISH = 'connection to db://admin:hunter2@10.0.0.5 refused';

let server: http.Server;
let url: string;
let logs: CapturedLogs;
let metrics: Metrics;

beforeAll(async () => {
  logs = captureLogs();
  metrics = new Metrics({ processMetrics: false });
  const app = express();
  app.set('views', fileURLToPath(new URL('../../views', import.meta.url)));
  app.set('view engine', 'ejs');
  app.use((req, _res, next) => {
    req.id = 'req-0123456789';
    req.log = logs.logger.child({ requestId: req.id });
    next();
  });
  app.get('/boom', () => {
    throw new Error(SECRET_ISH);
  });
  // what express-session does when its touch fails at the end of a request: the response is finished first
  const late = (err: () => Error) => (_req: Request, res: Response, next: NextFunction) => {
    res.json({ ok: true });
    res.on('finish', () => setImmediate(() => next(err())));
  };
  app.get('/late-store', late(() => new StoreError('touch', new Error('Socket closed unexpectedly'))));
  app.get('/callback', late(() => new StoreError('touch', new Error('Socket closed unexpectedly'))));
  app.get('/late-bug', late(() => new TypeError(SECRET_ISH)));
  app.use(errorHandler(metrics));
  server = http.createServer(app);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(() => new Promise((r) => server.close(r)));

const text = () => metrics.registry.metrics();

async function settled(event: string, n: number) {
  for (let i = 0; i < 100 && logs.find(event).length < n; i++) await new Promise((r) => setTimeout(r, 10));
  expect(logs.find(event)).toHaveLength(n);
}

test('an unexpected error: 500 with a generic message and the correlation id, the message and stack only in the log', async () => {
  const res = await fetch(`${url}/boom`, { headers: { accept: 'application/json' } });
  expect(res.status).toBe(500);
  const body = await res.text();
  expect(JSON.parse(body)).toEqual({ error: 'internal_error', message: 'Something went wrong on our side.', correlation_id: 'req-0123456789' });
  expect(body).not.toContain('hunter2');
  const page = await fetch(`${url}/boom`, { headers: { accept: 'text/html' } });
  expect(page.status).toBe(500);
  const html = await page.text();
  expect(html).toContain('req-0123456789');
  expect(html).not.toContain('hunter2');
  expect(html).not.toMatch(/at .*\.ts:\d+/);
  const lines = logs.find('error.unhandled');
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatchObject({ level: 'error', requestId: 'req-0123456789', err: { name: 'Error', message: SECRET_ISH } });
  expect(String((lines[0]!.err as { stack: string }).stack)).toMatch(/error-handler\.test\.ts/);
  expect(await text()).toMatch(/^smart_bff_error_responses_total\{status="500",code="internal_error"\} 2$/m);
});

test('a store failure after a complete response: the 200 stands; logged and counted as after the response, not as a refused request', async () => {
  const res = await fetch(`${url}/late-store`);
  expect([res.status, await res.json()]).toEqual([200, { ok: true }]);
  await settled('error.after_response', 1);
  expect(logs.find('error.after_response')[0]).toMatchObject({ level: 'warn', code: 'session_store_unavailable', status: 503, method: 'GET', path: '/late-store' });
  expect(logs.find('error.after_response')[0]!.err).toBeUndefined(); // a typed error: its code says it all
  const m = await text();
  expect(m).toMatch(/^smart_bff_errors_after_response_total\{code="session_store_unavailable"\} 1$/m);
  expect(m).toMatch(/^smart_bff_session_store_errors_total 0$/m);
  expect(m).not.toMatch(/^smart_bff_error_responses_total\{status="503"/m);
});

test('on a launch path, a late store failure is no launch outcome', async () => {
  const res = await fetch(`${url}/callback?code=x&state=y`);
  expect(res.status).toBe(200);
  await settled('error.after_response', 2);
  expect(logs.find('error.after_response')[1]).toMatchObject({ path: '/callback' }); // the query (code, state) is not logged
  expect(logs.text()).not.toContain('code=x');
  const m = await text();
  expect(m).not.toMatch(/^smart_bff_launches_total\{/m);
  expect(m).toMatch(/^smart_bff_errors_after_response_total\{code="session_store_unavailable"\} 2$/m);
});

test('an unexpected error after a complete response: logged with its stack as after the response, counted as internal_error', async () => {
  const res = await fetch(`${url}/late-bug`);
  expect(res.status).toBe(200);
  await settled('error.after_response', 3);
  expect(logs.find('error.after_response')[2]).toMatchObject({ code: 'internal_error', path: '/late-bug', err: { name: 'TypeError', message: SECRET_ISH } });
  expect(String((logs.find('error.after_response')[2]!.err as { stack: string }).stack)).toMatch(/error-handler\.test\.ts/);
  expect(logs.find('error.unhandled')).toHaveLength(2); // only the two /boom answers
  expect(await text()).toMatch(/^smart_bff_errors_after_response_total\{code="internal_error"\} 1$/m);
});
