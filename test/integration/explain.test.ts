/**
 * `smart-bff explain` on the log of real launches: the real server entry point (src/server.ts as a child process,
 * with its sandbox EHR) serves one successful EHR launch, one that fails with a real `invalid_grant` from the
 * authorization server (the code was redeemed first by someone else), and one refused iss; its output (stdout and
 * stderr, as `heroku logs` mixes them) is what the command reads: raw, with Heroku's prefixes, and as Cloud Logging
 * hands it out (LogEntries with jsonPayload or textPayload, one per line, or gcloud's JSON array, newest first).
 * The command runs as users run it (bin/smart-bff.js), reading stdin or a file.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { failedLaunch, successfulLaunch } from '../helpers/launches.js';
import { freePort } from '../helpers/net.js';
import { startServerProcess } from '../helpers/server-process.js';
import { childEnv } from '../helpers/child-env.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let log: string;
let okLaunch: string;
let failedLaunchId: string;
let failedCallbackRequest: string;
let secrets: string[];
let dir: string;

function explain(args: string[], input?: string) {
  return new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const child = spawn(process.execPath, ['bin/smart-bff.js', 'explain', ...args], {
      cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...childEnv(), SMART_BFF_FROM_SOURCE: '1' },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('exit', (code) => resolve({ code, out, err }));
    child.stdin.end(input ?? '');
  });
}

/** The launchId of the launch whose callback had this request id, from the log itself. */
function launchOf(requestId: string | null): string {
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as { requestId?: string; launchId?: string };
    if (r.requestId === requestId && r.launchId) return r.launchId;
  }
  throw new Error(`no launch for request ${requestId}`);
}

const storiesOf = (out: string) => out.slice(0, out.lastIndexOf('\n', out.length - 2));

beforeAll(async () => {
  const port = await freePort();
  const server = await startServerProcess({ PUBLIC_URL: `http://127.0.0.1:${port}` }, port);
  try {
    const ok = await successfulLaunch(server.url);
    const bad = await failedLaunch(server.url);
    // a refused launch whose iss carries a terminal escape sequence
    expect((await fetch(`${server.url}/launch?iss=${encodeURIComponent('https://ehr.example/\u001b[2J\u001b[31mred')}&launch=x`)).status).toBe(400);
    secrets = bad.stolenTokens!;
    await new Promise((r) => setTimeout(r, 200));
    log = server.output();
    okLaunch = launchOf(ok.callbackRequestId);
    failedLaunchId = launchOf(bad.callbackRequestId);
    failedCallbackRequest = bad.callbackRequestId!;
  } finally {
    await server.stop();
  }
  dir = mkdtempSync(join(tmpdir(), 'explain-'));
}, 90000);

test('the raw log on stdin: the failed launch first, with invalid_grant, its likely causes and the fix; the successful one with its steps', async () => {
  const r = await explain([], log);
  expect([r.code, r.err]).toEqual([0, '']);
  const failedAt = r.out.indexOf(`✗ FAILED · launch ${failedLaunchId} · EHR launch · registration sandbox · client smart-bff-dev`);
  const okAt = r.out.indexOf(`✓ COMPLETE · launch ${okLaunch} · EHR launch · registration sandbox · client smart-bff-dev`);
  expect(failedAt).toBeGreaterThanOrEqual(0);
  expect(okAt).toBeGreaterThan(failedAt);

  const failed = r.out.slice(failedAt, r.out.indexOf('\n\n', r.out.indexOf('Fix:', failedAt)));
  expect(failed).toMatch(/✗ {2}\d\d:\d\d:\d\d\.\d{3} +\+\d+ ms +\d+ ms {2}token\.response +400 invalid_grant: "grant request is invalid"/);
  expect(failed).toContain('What failed (token.response): The token endpoint refused the authorization code: invalid_grant');
  expect(failed).toContain('error: invalid_grant — "grant request is invalid" (HTTP 400)');
  expect(failed).toContain('the person saw: "The EHR refused to exchange the sign-in code for a token (invalid_grant)."');
  expect(failed).toContain('Likely causes:\n    - The code was already used, expired, or was issued for another client or redirect URI; start the launch again.');
  expect(failed).toMatch(/Fix: Check, in this order: the redirect URI registered at the EHR is exactly http:\/\/127\.0\.0\.1:\d+\/callback/);
  expect(failed).toContain('code sent before: no');

  const complete = r.out.slice(okAt);
  const steps = [...complete.matchAll(/^ {2}([✓!✗]) {2}\d\d:\d\d:\d\d\.\d{3} .*? ((?:launch|discovery|authorize|callback|token|error)(?:\.[a-z_]+)?) {2,}/gm)].map((m) => `${m[1]} ${m[2]}`);
  expect(steps.slice(0, 8)).toEqual([
    '✓ launch.start', '✓ discovery', '✓ authorize.redirect', '✓ callback.received', '✓ callback.state', '✓ token.request', '✓ token.response', '✓ launch.complete',
  ]);
  expect(complete).toMatch(/token\.response +Tokens received \(200; scope "launch openid fhirUser online_access patient\/\*\.rs"; expires in \d+ s; patient in context: yes\)/);
  expect(r.out).toMatch(/\n3 launches: 2 failed, 1 complete, 0 without a callback yet\. Read \d+ lines; \d+ were not JSON and skipped\.\n$/);
  for (const s of secrets) expect(r.out).not.toContain(s);
}, 30000);

test('only known fields are printed: the log\'s fingerprints, hashes and context ids stay in the log', async () => {
  for (const args of [[], ['--json']]) {
    const r = await explain(args, log);
    for (const field of ['code_fp', 'verifier_fp', 'state_sha', 'code_challenge_sha', 'session_sha', 'contextId', 'len:']) {
      expect(log).toContain(field);
      expect([args.join(' '), field, r.out.includes(field)]).toEqual([args.join(' '), field, false]);
    }
  }
}, 30000);

test('the refused request is a story of its own, and a terminal escape sequence in the log never reaches the terminal', async () => {
  const r = await explain([], log);
  expect(r.out).toMatch(/✗ FAILED · request [0-9a-f-]{36} \(refused before a launch started\)\n {2}iss https:\/\/ehr\.example\/�\[2J�\[31mred/);
  expect(r.out).toContain('Fix: If this EHR should be allowed, add its FHIR base URL to SMART_ISS');
  expect(r.out).not.toContain('\u001b');
}, 30000);

test('a file argument reads the same log, and heroku logs\' prefixes change nothing', async () => {
  const raw = await explain([], log);
  const file = join(dir, 'server.log');
  writeFileSync(file, log);
  expect((await explain([file])).out).toBe(raw.out);
  const heroku = log.split('\n').filter(Boolean).map((l, i) => `2026-11-26T01:02:${String(i % 60).padStart(2, '0')}.123456+00:00 app[web.1]: ${l}`).join('\n');
  const herokuFile = join(dir, 'heroku.log');
  writeFileSync(herokuFile, `${heroku}\n2026-11-26T01:03:00.000000+00:00 heroku[router]: at=info method=GET path="/callback" status=401\n`);
  const h = await explain([herokuFile]);
  expect(storiesOf(h.out)).toBe(storiesOf(raw.out));
  expect(h.out).toMatch(/\d+ were not JSON and skipped\.\n$/);
}, 30000);

test('Cloud Logging: LogEntries with jsonPayload or textPayload, one per line or gcloud\'s JSON array newest first', async () => {
  const raw = await explain([], log);
  const entries = log.split('\n').filter(Boolean).map((line, i) => {
    const common = { insertId: `id${i}`, logName: 'projects/p/logs/stdout', resource: { type: 'gae_app', labels: { module_id: 'default' } }, receiveTimestamp: '2026-11-26T01:02:03Z' };
    if (!line.startsWith('{')) return { ...common, textPayload: line, timestamp: '2026-11-26T01:02:03Z' };
    const { time, ...payload } = JSON.parse(line) as Record<string, unknown>;
    // App Engine parses JSON stdout into jsonPayload and keeps `time` as the entry's timestamp
    return i % 2 ? { ...common, jsonPayload: payload, timestamp: time, severity: 'INFO' } : { ...common, textPayload: line, timestamp: time };
  });
  const perLine = await explain([], `${entries.map((e) => JSON.stringify(e)).join('\n')}\n`);
  expect(storiesOf(perLine.out)).toBe(storiesOf(raw.out));
  const array = await explain([], JSON.stringify([...entries].reverse(), null, 2));
  expect(storiesOf(array.out)).toBe(storiesOf(raw.out));
  expect(array.out).toMatch(/Read \d+ lines; \d+ log entries were not the app's lines\.\n$/);
}, 30000);

test('filters: --failed, --launch (a launch id or a request id), --since', async () => {
  const failed = await explain(['--failed'], log);
  expect(failed.out).not.toContain('✓ COMPLETE');
  expect(failed.out).toContain(`✗ FAILED · launch ${failedLaunchId}`);
  expect(failed.out).toMatch(/2 launches matching --failed: 2 failed, 0 complete/);

  const one = await explain(['--launch', okLaunch], log);
  expect(one.out.match(/^(✓|✗|…) /gm)).toEqual(['✓ ']);
  expect(one.out).toContain(`✓ COMPLETE · launch ${okLaunch}`);
  const byRequest = await explain(['--launch', failedCallbackRequest], log);
  expect(byRequest.out.match(/^(✓|✗|…) .*$/gm)).toEqual([expect.stringContaining(`✗ FAILED · launch ${failedLaunchId}`)]);

  expect((await explain(['--since', new Date(Date.now() + 3600_000).toISOString()], log)).out).toMatch(/^No launches found matching --since .*\. Read \d+ lines/);
  expect((await explain(['--since', '1h', '--failed'], log)).out).toMatch(/2 launches matching --failed --since /);
  const bad = await explain(['--since', 'yesterday'], log);
  expect(bad.code).not.toBe(0);
  expect(bad.err).toContain('neither an ISO time');
}, 30000);

test('--json: the stories and a summary, for programs', async () => {
  const r = await explain(['--json'], log);
  const body = JSON.parse(r.out) as { summary: Record<string, number>; launches: { id: string; outcome: string; diagnosis: { error: string; likelyCauses: string[]; fix: string } | null; steps: { event: string }[] }[] };
  expect(body.summary).toMatchObject({ launches: 3, failed: 2, complete: 1, pending: 0 });
  const failed = body.launches.find((l) => l.id === failedLaunchId)!;
  expect(failed.outcome).toBe('failed');
  expect(failed.diagnosis).toMatchObject({ error: 'invalid_grant', likelyCauses: [expect.stringContaining('already used')] });
  expect(body.launches.at(-1)!.id).toBe(okLaunch);
  for (const s of secrets) expect(r.out).not.toContain(s);
}, 30000);
