/** The one retry decision (retry.ts): what is retried, how, and within what. */
import { Deadline, DeadlineExceededError, decideError, decideStatus, parseRetryAfter, withRetries, type RetryEvent } from '../../../src/backend-services/retry.js';
import { BackendTokenError } from '../../../src/backend-services/token-client.js';
import { PERMANENT } from '../../../src/backend-services/retry.js';

const response = (status: number, headers: Record<string, string> = {}) => new Response(status === 204 ? null : 'x', { status, headers });

test('statuses: 429 is throttling (with its Retry-After), 5xx transient, everything else is the caller\'s', () => {
  expect(decideStatus(429, '7')).toEqual({ kind: 'throttled', reason: 'status 429', retryAfterMs: 7000 });
  expect(decideStatus(503)).toEqual({ kind: 'transient', reason: 'status 503' });
  for (const s of [200, 202, 301, 400, 401, 403, 404, 409]) expect(decideStatus(s)).toBeUndefined();
  expect(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())).toBeGreaterThan(55_000);
  expect(parseRetryAfter('soon')).toBeUndefined();
});

test('errors: an error that carries its decision keeps it; network failures and timeouts are transient; anything else is permanent', () => {
  expect(decideError(new BackendTokenError('x', 'invalid_client', [], PERMANENT))).toBe(PERMANENT);
  expect(decideError(new TypeError('fetch failed', { cause: Object.assign(new Error('x'), { code: 'ECONNRESET' }) }))).toEqual({ kind: 'transient', reason: 'connection reset' });
  expect(decideError(new DOMException('slow', 'TimeoutError'))).toEqual({ kind: 'transient', reason: 'timeout' });
  expect(decideError(new Error('boom'))).toBe(PERMANENT);
  const aborted = new AbortController();
  aborted.abort();
  expect(decideError(new TypeError('fetch failed'), aborted.signal)).toBe(PERMANENT);
});

test('a permanent error is thrown at once: one attempt', async () => {
  let attempts = 0;
  const err = new BackendTokenError('refused', 'invalid_client', ['cause'], PERMANENT);
  await expect(withRetries('t', async () => { attempts++; throw err; }, { baseMs: 1 })).rejects.toBe(err);
  expect(attempts).toBe(1);
});

test('transient failures use up the budget, then the last error is thrown as it was', async () => {
  let attempts = 0;
  const events: RetryEvent[] = [];
  const err = new TypeError('fetch failed');
  await expect(withRetries('t', async () => { attempts++; throw err; }, { maxRetries: 2, baseMs: 1, onRetry: (e) => events.push(e) })).rejects.toBe(err);
  expect(attempts).toBe(3);
  expect(events.map((e) => [e.kind, e.attempt])).toEqual([['transient', 1], ['transient', 2]]);
});

test('429s wait as asked and never use up the budget; a 5xx after them still has its retries', async () => {
  const answers = [429, 429, 429, 429, 503, 200];
  const events: RetryEvent[] = [];
  const res = await withRetries('t', async () => response(answers.shift()!, { 'retry-after': '0' }), { maxRetries: 1, baseMs: 1, onRetry: (e) => events.push(e) }, (r) => decideStatus(r.status, r.headers.get('retry-after')));
  expect(res.status).toBe(200);
  expect(events.map((e) => e.kind)).toEqual(['throttled', 'throttled', 'throttled', 'throttled', 'transient']);
});

test('a wait that would end past the deadline fails at once with DeadlineExceededError', async () => {
  const deadline = new Deadline(5, '--timeout 5 s');
  let attempts = 0;
  const err = await withRetries('status', async () => { attempts++; return response(429, { 'retry-after': '3600' }); }, { deadline, baseMs: 1 }, (r) => decideStatus(r.status, r.headers.get('retry-after'))).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(DeadlineExceededError);
  expect((err as Error).message).toMatch(/^status: the server asks to wait 3600 s more, but the deadline \(--timeout 5 s\) is in [45] s\.$/);
  expect(attempts).toBe(1);
});
