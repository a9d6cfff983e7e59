/**
 * The log's redaction is keyed on where an OAuth secret can appear, not on a field's name alone: our own error
 * codes are logged as `code`; an authorization code is redacted among a request's parameters and in URLs' query
 * strings; fields that only ever hold secrets are redacted wherever they are.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { captureLogs } from '../helpers/log-capture.js';
import { flatInfoLine, redactUrl } from '../../src/log.js';

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

/** Runs `script` (ESM, with the server's createLogger imported) in a process of its own whose stdout is a file. */
function inOwnProcess(script: string): { status: number | null; stderr: string; lines: string[]; written: (n: number) => number } {
  const dir = mkdtempSync(join(tmpdir(), 'smart-bff-log-'));
  try {
    const out = openSync(join(dir, 'stdout'), 'w');
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      import { fstatSync } from 'node:fs';
      import { createLogger, flatInfoLine } from './src/log.ts';
      const logger = createLogger();
      const written = () => fstatSync(1).size;
      ${script}
    `], { cwd: process.cwd(), stdio: ['ignore', out, 'pipe'], encoding: 'utf8' });
    closeSync(out);
    const lines = readFileSync(join(dir, 'stdout'), 'utf8').split('\n').filter(Boolean);
    return { status: child.status, stderr: child.stderr, lines, written: (n) => (n === 0 ? 0 : lines.slice(0, n).join('\n').length + 1) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the server\'s log (stdout): the lines of one event-loop turn go out together when it ends, and a lone line on a quiet server goes out in its own turn', () => {
  const run = inOwnProcess(`
    const sizes = [];
    for (const event of ['launch.start', 'launch.failed', 'proxy.request']) {
      logger.info({ event }, 'a line');
      sizes.push(written());
    }
    setImmediate(() => {
      sizes.push(written());
      setTimeout(() => {
        logger.warn({ event: 'launch.failed' }, 'a lone line, a second later on a quiet server');
        setImmediate(() => {
          sizes.push(written());
          process.stderr.write(JSON.stringify(sizes));
        });
      }, 50);
    });
  `);
  expect(run.status).toBe(0);
  expect(run.lines.map((l) => JSON.parse(l).event)).toEqual(['launch.start', 'launch.failed', 'proxy.request', 'launch.failed']);
  // nothing written while the turn runs; all three once it ends; the lone line in the turn after it was logged
  expect(JSON.parse(run.stderr)).toEqual([0, 0, 0, run.written(3), run.written(4)]);
});

test('the server\'s log (stdout): a line logged just before the process ends is not lost, whether it exits or crashes', () => {
  const exits = inOwnProcess(`logger.error({ event: 'server.failed' }, 'about to exit'); process.exit(3);`);
  expect(exits.status).toBe(3);
  expect(exits.lines.map((l) => JSON.parse(l).event)).toEqual(['server.failed']);
  const crashes = inOwnProcess(`logger.info({ event: 'launch.start' }, 'the last line'); setTimeout(() => { logger.warn({ event: 'about.to.crash' }, 'x'); throw new Error('boom'); }, 5);`);
  expect(crashes.status).toBe(1);
  expect(crashes.stderr).toContain('boom');
  expect(crashes.lines.map((l) => JSON.parse(l).event)).toEqual(['launch.start', 'about.to.crash']);
});

/** What a line is without its time (each line reads the clock when it is made). */
const timeless = (line: string) => line.replace(/,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"/, ',"time":"T"');

test('a flat line put together by hand (the proxy\'s) is byte for byte what pino writes for the same fields, redaction included', () => {
  const keyPool = ['requestId', 'event', 'contextId', 'method', 'path', 'url', 'status', 'duration_ms', 'aborted', 'code', 'access_token', 'cookie', 'msg', 'level', 'a"b', 'é'];
  const value = fc.oneof(
    fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: fc.constantFrom('a', '"', '\\', '\n', '\u0000', '\u007f', '\u2028', 'é', '🚑', '?', '/', '=', '&') }),
    fc.constantFrom(`/callback?code=${AUTH_CODE}&state=s1`, `https://ehr.example.com/x?access_token=at-1&a=b`, '/Patient/1?_count=5', 'Patient/1?code=x', '/Patient/1'),
    fc.integer(), fc.double(), fc.constantFrom(NaN, Infinity, -Infinity, -0, 0.1), fc.boolean(),
  );
  const fields = fc.uniqueArray(fc.constantFrom(...keyPool), { minLength: 1 }).chain((keys) => fc.tuple(fc.constant(keys), fc.tuple(...keys.map(() => value))));
  fc.assert(fc.property(fields, fc.string(), ([keys, values], message) => {
    const logs = captureLogs('info');
    const record = Object.fromEntries(keys.map((k, i) => [k, values[i]!]));
    logs.logger.info(record, message);
    flatInfoLine(logs.logger, keys, message)(record);
    expect(logs.lines).toHaveLength(2);
    expect(timeless(logs.lines[1]!)).toBe(timeless(logs.lines[0]!));
  }), { numRuns: 500 });
});

test('a flat line carries its own time, is written only when the logger\'s level lets info through, and goes through pino for a child logger', () => {
  const logs = captureLogs('info');
  const line = flatInfoLine(logs.logger, ['event', 'url', 'access_token'], 'a call');
  const before = Date.now();
  line({ event: 'proxy.request', url: `/callback?code=${AUTH_CODE}`, access_token: 'at-secret-5678' });
  const [entry] = logs.entries();
  expect(Date.parse(entry!.time as string)).toBeGreaterThanOrEqual(before);
  expect(Date.parse(entry!.time as string)).toBeLessThanOrEqual(Date.now());
  expect(entry).toMatchObject({ level: 'info', service: 'smart-bff', event: 'proxy.request', url: '/callback?code=%5Bredacted%5D', access_token: '[redacted]', msg: 'a call' });
  expect(logs.text()).not.toMatch(new RegExp(`${AUTH_CODE}|at-secret-5678`));

  const quiet = captureLogs('warn');
  flatInfoLine(quiet.logger, ['event'], 'a call')({ event: 'proxy.request' });
  expect(quiet.lines).toEqual([]);

  // a logger createLogger did not make (a child) writes it through pino, with its bindings and the same redaction
  const child = logs.logger.child({ requestId: 'r-12345678' });
  flatInfoLine(child, ['event', 'refresh_token'], 'a child\'s call')({ event: 'proxy.request', refresh_token: 'rt-secret' });
  expect(logs.find('proxy.request')[1]).toMatchObject({ requestId: 'r-12345678', refresh_token: '[redacted]', msg: 'a child\'s call' });
});

test('the server\'s log (stdout): a flat line (the proxy\'s) goes out with the lines of its turn, in the order logged, and is not lost at exit', () => {
  const run = inOwnProcess(`
    const call = flatInfoLine(logger, ['event', 'n'], 'a call');
    const sizes = [];
    call({ event: 'proxy.request', n: 1 });
    logger.info({ event: 'launch.start' }, 'a line');
    call({ event: 'proxy.request', n: 2 });
    sizes.push(written());
    setImmediate(() => {
      sizes.push(written());
      process.stderr.write(JSON.stringify(sizes));
      call({ event: 'proxy.request', n: 3 });
      process.exit(0);
    });
  `);
  expect(run.status).toBe(0);
  expect(run.lines.map((l) => [JSON.parse(l).event, JSON.parse(l).n])).toEqual([['proxy.request', 1], ['launch.start', undefined], ['proxy.request', 2], ['proxy.request', 3]]);
  expect(JSON.parse(run.stderr)).toEqual([0, run.written(3)]);
});

test('the server\'s log (stdout): a turn that logs a great deal writes as it goes (at 8 KiB), not all at its end', () => {
  const run = inOwnProcess(`
    const sizes = [];
    for (let i = 0; i < 200; i++) {
      logger.info({ event: 'proxy.request', i, path: '/Patient/' + 'x'.repeat(100) }, 'a line');
      sizes.push(written());
    }
    process.stderr.write(JSON.stringify(sizes));
  `);
  expect(run.status).toBe(0);
  expect(run.lines).toHaveLength(200);
  const sizes = JSON.parse(run.stderr) as number[];
  const total = run.written(200);
  // while the turn runs, never more than 8 KiB (and one line) is held back
  for (const [i, size] of sizes.entries()) expect(run.written(i + 1) - size).toBeLessThan(8 * 1024 + 400);
  expect(sizes[199]).toBeLessThan(total);
});

test('every line carries the time it was logged (ISO 8601, to the millisecond), not a time remembered from an earlier line', async () => {
  const logs = captureLogs();
  const times: { before: number; after: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const before = Date.now();
    logs.logger.info({ event: 'proxy.request', i }, 'a line');
    times.push({ before, after: Date.now() });
    await new Promise((r) => setTimeout(r, 15));
  }
  const logged = logs.entries().map((e) => e.time as string);
  expect(new Set(logged).size).toBe(3);
  for (const [i, t] of logged.entries()) {
    expect(t).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Date.parse(t)).toBeGreaterThanOrEqual(times[i]!.before);
    expect(Date.parse(t)).toBeLessThanOrEqual(times[i]!.after);
  }
});
