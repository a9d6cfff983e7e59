/**
 * Unit tests of the launch story module and the log reader, on small records: the rules that the tests on real
 * launches (test/integration/explain.test.ts, admin-console.test.ts) cannot reach one by one.
 */
import { parseLogText } from '../../src/launch-trace/log-lines.js';
import { buildStory, groupRecords, LaunchGrouper, project, requestKey, storiesFromRecords, type LogRecord } from '../../src/launch-trace/story.js';
import { parseSince } from '../../src/cli/explain.js';

const T = (ms: number) => new Date(Date.UTC(2026, 10, 26, 1, 2, 3) + ms).toISOString();
const rec = (ms: number, event: string, extra: Record<string, unknown> = {}): LogRecord => ({ level: 'info', time: T(ms), service: 'smart-bff', event, ...extra });

describe('reading logs as the platforms hand them out', () => {
  test('raw lines, prefixes (heroku logs, a brace in the prefix), empty lines and lines with no JSON', () => {
    const line = JSON.stringify(rec(0, 'launch.start', { launchId: 'L1', requestId: 'R1' }));
    const p = parseLogText([
      line,
      '',
      `2026-11-26T01:02:03.123456+00:00 app[web.1]: ${line}`,
      `2026-11-26 01:02:03 default[{v1}]  ${line}`,
      '2026-11-26T01:02:03.123456+00:00 heroku[router]: at=info method=GET path="/callback" status=302',
      '    at Object.<anonymous> (/app/dist/server.js:1:1)',
      '{"not closed": ',
    ].join('\n'));
    expect(p.records).toHaveLength(3);
    expect(p.records.every((r) => r.launchId === 'L1')).toBe(true);
    expect([p.lines, p.notJson, p.otherEntries]).toEqual([6, 3, 0]);
  });

  test('Cloud Logging: jsonPayload (time from the entry), textPayload, request logs; a JSON array', () => {
    const { time, ...payload } = rec(5, 'token.request', { launchId: 'L1' });
    const entries = [
      { jsonPayload: payload, timestamp: time, logName: 'projects/p/logs/stdout', resource: { type: 'gae_app' } },
      { textPayload: JSON.stringify(rec(6, 'token.response', { launchId: 'L1' })), timestamp: T(6), logName: 'x', resource: {} },
      { textPayload: 'oidc-provider WARNING: …', timestamp: T(7), logName: 'x', resource: {} },
      { protoPayload: { '@type': 'type.googleapis.com/google.appengine.logging.v1.RequestLog' }, logName: 'x', resource: {} },
    ];
    for (const text of [entries.map((e) => JSON.stringify(e)).join('\n'), JSON.stringify(entries, null, 2)]) {
      const p = parseLogText(text);
      expect(p.records.map((r) => [r.event, r.time])).toEqual([['token.request', T(5)], ['token.response', T(6)]]);
      expect([p.lines, p.notJson, p.otherEntries]).toEqual([4, 0, 2]);
    }
  });

  test('--since: an ISO time or a duration back from now', () => {
    const now = Date.parse('2026-11-26T12:00:00Z');
    expect(parseSince('30m', now)).toBe(now - 1_800_000);
    expect(parseSince('2h', now)).toBe(now - 7_200_000);
    expect(parseSince('1d', now)).toBe(now - 86_400_000);
    expect(parseSince('90s', now)).toBe(now - 90_000);
    expect(parseSince('2026-11-26T01:00:00Z', now)).toBe(Date.parse('2026-11-26T01:00:00Z'));
    for (const bad of ['yesterday', '30', '1w', '']) expect(() => parseSince(bad, now)).toThrow('neither an ISO time');
  });
});

describe('which records belong to which launch', () => {
  test('a request id\'s lines written before its launch is known join that launch; later ones too', () => {
    const g = new LaunchGrouper();
    expect(g.accept(rec(0, 'callback.received', { requestId: 'R2', has_code: true }))).toEqual([]);
    const joined = g.accept(rec(1, 'callback.state', { requestId: 'R2', launchId: 'L1', found: true }));
    expect(joined).toEqual([{ key: 'L1', records: [expect.objectContaining({ event: 'callback.received' }), expect.objectContaining({ event: 'callback.state' })] }]);
    expect(g.accept(rec(2, 'error.response', { requestId: 'R2', status: 401, path: '/callback' }))).toEqual([{ key: 'L1', records: [expect.objectContaining({ event: 'error.response' })] }]);
  });

  test('a request refused before a launch existed is a story of its own, which a client-chosen request id cannot make someone\'s launch', () => {
    const g = new LaunchGrouper();
    g.accept(rec(0, 'launch.start', { requestId: 'R1', launchId: 'hY2k3Jd9aB1c' }));
    // X-Request-Id is the client's choice: the same value as a launch id
    const refused = g.accept(rec(1, 'callback.state', { requestId: 'hY2k3Jd9aB1c', found: false, launch_cookie: true, reason: 'unknown_or_used' }));
    expect(refused.map((x) => x.key)).toEqual([requestKey('hY2k3Jd9aB1c')]);
    expect(requestKey('hY2k3Jd9aB1c')).not.toBe('hY2k3Jd9aB1c');
  });

  test('lines of other routes, other events and of no request are not a launch\'s', () => {
    const g = new LaunchGrouper();
    expect(g.accept(rec(0, 'proxy.request', { requestId: 'R9', status: 200 }))).toEqual([]);
    expect(g.accept(rec(1, 'error.response', { requestId: 'R9', status: 401, path: '/api/session' }))).toEqual([]);
    expect(g.accept(rec(2, 'discovery', { iss: 'https://x' }))).toEqual([]);
    expect(g.accept(rec(3, 'error.response', { requestId: 'R8', status: 429, path: '/launch' })).map((x) => x.key)).toEqual(['r.R8']);
  });

  test('a whole log in any order: sorted by time; a newest-first export reversed first, so lines of the same millisecond keep their order', () => {
    const lines = [
      rec(0, 'launch.start', { requestId: 'R1', launchId: 'L1' }),
      rec(10, 'callback.received', { requestId: 'R2' }),
      rec(10, 'callback.state', { requestId: 'R2', launchId: 'L1', found: true }),
      rec(20, 'launch.complete', { requestId: 'R2', launchId: 'L1' }),
    ];
    for (const input of [lines, [...lines].reverse()]) {
      const groups = groupRecords(input);
      expect([...groups.keys()]).toEqual(['L1']);
      expect(groups.get('L1')!.map((r) => r.event)).toEqual(['launch.start', 'callback.received', 'callback.state', 'launch.complete']);
    }
  });
});

describe('what is read of a record', () => {
  test('known fields of launch events only: objects, hashes and unknown fields are dropped, long text clipped', () => {
    const p = project(rec(0, 'token.request', {
      launchId: 'L1', endpoint: 'https://ehr/token', code_fp: 'len:20/sha:abc', verifier_fp: 'len:43/sha:def', client_id: 'c', nested: { secret: 'x' }, extra: 'y', client_auth: 'x'.repeat(1000),
    }))!;
    expect(Object.keys(p).sort()).toEqual(['client_auth', 'client_id', 'endpoint', 'event', 'launchId', 'level', 'time']);
    expect((p.client_auth as string).length).toBeLessThan(700);
    expect(project(rec(0, 'proxy.request', { launchId: 'L1' }))).toBeUndefined();
    expect(project({ event: 'launch.start' })).toBeUndefined(); // no time: not a record of the log
  });

  test('outcomes: failed when any step failed, complete with launch.complete, else waiting for the callback; failed ones first', () => {
    const stories = storiesFromRecords([
      rec(0, 'launch.start', { requestId: 'A', launchId: 'OK' }), rec(5, 'launch.complete', { requestId: 'B', launchId: 'OK' }),
      rec(1, 'launch.start', { requestId: 'C', launchId: 'WAIT' }), rec(2, 'authorize.redirect', { requestId: 'C', launchId: 'WAIT' }),
      rec(3, 'launch.start', { requestId: 'D', launchId: 'BAD' }), rec(4, 'discovery', { requestId: 'D', launchId: 'BAD', outcome: 'discovery_failed', reason: 'HTTP 404', url: 'https://ehr/.well-known/smart-configuration' }),
    ]);
    expect(stories.map((s) => [s.id, s.outcome])).toEqual([['BAD', 'failed'], ['WAIT', 'pending'], ['OK', 'complete']]);
    expect(stories[0]!.diagnosis).toMatchObject({ step: 'discovery', headline: expect.stringContaining('discovery_failed'), errorDescription: 'HTTP 404', fix: expect.stringContaining('https://ehr/.well-known/smart-configuration') });
  });

  test('diagnoses name the fix for each kind of failure', () => {
    const story = (...records: LogRecord[]) => buildStory('k', records);
    expect(story(rec(0, 'callback.state', { requestId: 'R', found: false, launch_cookie: false })).diagnosis!.fix).toContain('COOKIE_MODE=embedded');
    expect(story(rec(0, 'callback.state', { requestId: 'R', found: false, launch_cookie: true, reason: 'unknown_or_used' })).diagnosis!.fix).toContain('REDIS_URL');
    expect(story(rec(0, 'launch.rejected', { requestId: 'R', reason: 'iss_not_allowed', iss: 'https://x' })).diagnosis!.fix).toContain('SMART_ISS');
    expect(story(rec(0, 'token.response', { launchId: 'L', status: 401, error: 'invalid_client' }), rec(0, 'token.request', { launchId: 'L', client_auth: 'private_key_jwt', client_id: 'c1' })).diagnosis!.fix)
      .toMatch(/client id \(c1\).*kid\) must be in the JWKS/);
    expect(story(rec(0, 'token.response', { launchId: 'L', outcome: 'timeout', duration_ms: 10000 })).diagnosis!.headline).toBe('The token endpoint did not answer in time');
    expect(story(rec(0, 'launch.failed', { launchId: 'L', step: 'authorize', error: 'access_denied' })).diagnosis!.fix).toContain('declined');
    // our error code, when the log shows it; a redacted one is not shown as a code
    expect(story(rec(0, 'error.response', { requestId: 'R', status: 400, code: 'launch_params_missing', path: '/launch', msg: 'The launch request is missing iss.' })).diagnosis).toMatchObject({ errorCode: 'launch_params_missing', fix: expect.stringContaining('PUBLIC_URL + /launch') });
    const redacted = story(rec(0, 'error.response', { requestId: 'R', status: 429, code: '[redacted]', path: '/launch', msg: 'Too many launch attempts' }));
    expect(redacted.diagnosis).toMatchObject({ errorCode: null, fix: expect.stringContaining('LAUNCH_RATE_LIMIT') });
    expect(redacted.steps[0]!.details.map((d) => d.label)).not.toContain('code');
  });

  test('#7 #17 #48 the RFC 9207 iss check, the ID token checks, the Basic encoding and the discovery warnings are told', () => {
    const story = (...records: LogRecord[]) => buildStory('k', records);
    const iss = story(rec(0, 'callback.iss', { launchId: 'L', outcome: 'mismatch', iss: 'https://evil/auth', expected: 'https://ehr/auth' }));
    expect(iss.steps[0]).toMatchObject({ outcome: 'failed', summary: expect.stringContaining('another issuer (iss https://evil/auth)') });
    expect(iss.diagnosis!.fix).toMatch(/https:\/\/ehr\/auth.*https:\/\/evil\/auth/);
    expect(story(rec(0, 'callback.iss', { launchId: 'L', iss: 'https://x' })).steps[0]!.outcome).toBe('warning'); // no issuer to compare with
    const idToken = story(rec(0, 'token.response', { launchId: 'L', outcome: 'id_token_invalid', id_token_check: 'exp', reason: 'it has expired' }));
    expect(idToken.steps[0]).toMatchObject({ outcome: 'failed', summary: 'The ID token failed the exp check: it has expired' });
    expect(idToken.diagnosis).toMatchObject({ headline: 'The ID token failed the exp check', fix: expect.stringContaining('NTP') });
    expect(story(rec(0, 'token.id_token_ignored', { launchId: 'L', reason: 'openid_not_requested' })).steps[0]!.outcome).toBe('warning');
    const basic = story(rec(0, 'token.response', { launchId: 'L', status: 401, error: 'invalid_client' }), rec(0, 'token.request', { launchId: 'L', client_auth: 'client_secret_basic' }));
    expect(basic.diagnosis!.fix).toContain('SMART_CLIENT_AUTH_ENCODING (form or raw)');
    const warned = story(rec(0, 'discovery', { launchId: 'L', level: 'warn', warning: 'signing_alg_not_advertised', advertised: ['RS256'], ours: 'ES384', msg: 'discovery: Our client assertions are signed with ES384' }));
    expect(warned).toMatchObject({ outcome: 'pending', steps: [{ outcome: 'warning', summary: 'Our client assertions are signed with ES384' }] });
    expect(warned.steps[0]!.details.map((d) => d.label)).toEqual(expect.arrayContaining(['advertised', 'ours']));
  });
});
