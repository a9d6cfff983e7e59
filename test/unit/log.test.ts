/**
 * The log's redaction is keyed on where an OAuth secret can appear, not on a field's name alone: our own error
 * codes are logged as `code`; an authorization code is redacted among a request's parameters and in URLs' query
 * strings; fields that only ever hold secrets are redacted wherever they are.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureLogs } from '../helpers/log-capture.js';
import { redactUrl } from '../../src/log.js';

const AUTH_CODE = 'SplxlOBeZQQYbYS6WxSbIA-authorization-code';

function logged(obj: Record<string, unknown>, msg = 'm'): Record<string, unknown> {
  const logs = captureLogs();
  logs.logger.info(obj, msg);
  expect(logs.text()).not.toContain(AUTH_CODE);
  return logs.entries()[0]!;
}

test('our error codes are logged as they are, at any depth', () => {
  expect(logged({ event: 'error.response', code: 'iss_not_allowed' }).code).toBe('iss_not_allowed');
  expect(logged({ err: { code: 'ECONNREFUSED' }, job: { error: { code: 'invalid_client' } } })).toMatchObject({ err: { code: 'ECONNREFUSED' }, job: { error: { code: 'invalid_client' } } });
});

test('an authorization code among a request\'s parameters is redacted', () => {
  expect(logged({ query: { code: AUTH_CODE, state: 's' } }).query).toEqual({ code: '[redacted]', state: 's' });
  expect(logged({ req: { body: { grant_type: 'authorization_code', code: AUTH_CODE } } }).req).toEqual({ body: { grant_type: 'authorization_code', code: '[redacted]' } });
  expect(logged({ token: { params: { code: AUTH_CODE } } }).token).toEqual({ params: { code: '[redacted]' } });
  expect(logged({ form: { code: AUTH_CODE } }).form).toEqual({ code: '[redacted]' });
});

test('a URL or path with a query has its secret parameters redacted, wherever the string is', () => {
  const e = logged({
    url: `/callback?code=${AUTH_CODE}&state=abc&iss=https%3A%2F%2Fehr`,
    nested: { location: `https://app.example/callback?state=abc&code=${AUTH_CODE}` },
    list: [`http://x/y?CODE=${AUTH_CODE}`],
  });
  expect(e.url).toBe('/callback?code=%5Bredacted%5D&state=%5Bredacted%5D&iss=https%3A%2F%2Fehr');
  expect((e.nested as Record<string, string>).location).toBe('https://app.example/callback?state=%5Bredacted%5D&code=%5Bredacted%5D');
  expect((e.list as string[])[0]).toMatch(/^http:\/\/x\/y\?CODE=%5Bredacted%5D$/);
  // a URL without secret parameters is left exactly as it was (no re-encoding)
  expect(logged({ url: 'https://fhir.example/r4/Patient?name=a%20b&_count=10' }).url).toBe('https://fhir.example/r4/Patient?name=a%20b&_count=10');
  expect(redactUrl('/launch?iss=https%3A%2F%2Fehr&launch=xyz#frag')).toBe('/launch?iss=https%3A%2F%2Fehr&launch=%5Bredacted%5D');
});

test('fields that only hold secrets are redacted wherever they are; a code is logged as its fingerprint', () => {
  const e = logged({ access_token: 'a', tokens: { refresh_token: 'r' }, x: { y: { client_secret: 's', code_verifier: 'v' } }, code_fp: 'len:42/sha:abc' });
  expect(e).toMatchObject({ access_token: '[redacted]', tokens: '[redacted]', x: { y: { client_secret: '[redacted]', code_verifier: '[redacted]' } }, code_fp: 'len:42/sha:abc' });
});

test('the same redaction in a child logger\'s bindings, in arrays, in headers, and in a logged error\'s own fields', () => {
  const logs = captureLogs();
  logs.logger.child({ requestId: 'r1', cookie: 'sid=secret' }).info({ list: [{ refresh_token: 'r' }], res: { headers: { 'set-cookie': ['a=b'] } }, req: { headers: { authorization: 'Bearer t' } } }, 'm');
  logs.logger.error({ err: Object.assign(new Error('boom'), { access_token: 'a', status: 400, cause: Object.assign(new Error('inner'), { refresh_token: 'rt-secret' }) }) }, 'failed');
  const [first, second] = logs.entries();
  expect(first).toMatchObject({ requestId: 'r1', cookie: '[redacted]', list: [{ refresh_token: '[redacted]' }], res: { headers: { 'set-cookie': '[redacted]' } }, req: { headers: { authorization: '[redacted]' } } });
  expect(second!.err).toMatchObject({ message: 'boom: inner', access_token: '[redacted]', status: 400 });
  expect(logs.text()).not.toMatch(/sid=secret|Bearer t|"a=b"|rt-secret/);
});

test('the caller\'s object is never modified by the redaction', () => {
  const obj = { access_token: 'a', query: { code: AUTH_CODE }, url: `/callback?code=${AUTH_CODE}` };
  logged(obj);
  expect(obj).toEqual({ access_token: 'a', query: { code: AUTH_CODE }, url: `/callback?code=${AUTH_CODE}` });
});

test('the server\'s log (stdout) holds each line as soon as the logging call returns: written synchronously, not later from the thread pool', () => {
  // A process of its own whose stdout is a file: after each call it reports how many bytes the file holds. pino's
  // asynchronous destination would still have the line in its buffer or on a pool thread (0, then one line).
  const dir = mkdtempSync(join(tmpdir(), 'smart-bff-log-'));
  try {
    const out = openSync(join(dir, 'stdout'), 'w');
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      import { fstatSync } from 'node:fs';
      import { createLogger } from './src/log.ts';
      const logger = createLogger();
      const sizes = [];
      for (const event of ['launch.start', 'launch.failed', 'proxy.request']) {
        logger.info({ event }, 'a line');
        sizes.push(fstatSync(1).size);
      }
      process.stderr.write(JSON.stringify(sizes));
    `], { cwd: process.cwd(), stdio: ['ignore', out, 'pipe'], encoding: 'utf8' });
    closeSync(out);
    expect(child.status).toBe(0);
    const lines = readFileSync(join(dir, 'stdout'), 'utf8').split('\n').filter(Boolean);
    expect(lines.map((l) => JSON.parse(l).event)).toEqual(['launch.start', 'launch.failed', 'proxy.request']);
    const written = lines.map((_, i) => lines.slice(0, i + 1).join('\n').length + 1);
    expect(JSON.parse(child.stderr)).toEqual(written);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
