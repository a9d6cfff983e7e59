/**
 * Tokens end when the session ends: each way a launch context ends (eviction by MAX_CONTEXTS_PER_SESSION, the
 * absolute timeout, the idle timeout noticed by a request or by the sweep, a refresh token found invalid, logout)
 * sends its refresh and access tokens to the sandbox's real revocation endpoint (oidc-provider), without the
 * response that caused it waiting for the EHR (a revocation endpoint that hangs is held open by a gate while the
 * response arrives), after which the sandbox's FHIR server refuses the access token. Token sets live as long as
 * their session, never longer. With the memory store and a real Redis wherever they differ; checklist #19, #22,
 * #23.
 */
import { createClient } from 'redis';
import type { Store } from 'express-session';
import type { Sandbox } from '../../src/sandbox/index.js';
import { fingerprint } from '../../src/log.js';
import { MemoryTokenStore, type TokenSet, type TokenStore } from '../../src/session/token-store.js';
import { createMemorySessionStore } from '../../src/session/session-middleware.js';
import { createRedisSessionStore, RedisSessionIndex, RedisTokenStore, type RedisClient } from '../../src/session/redis-store.js';
import { sessionKey, tokenGraceMs } from '../../src/session/session-endings.js';
import { LOGOUT_DEADLINE_MS } from '../../src/routes/logout.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { json } from '../helpers/json.js';
import { startBff, type StartedBff } from '../helpers/bff.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';
import { startSandboxWithRevocationGate, waitFor, type RevocationWatch } from '../helpers/revocations.js';

const CSRF = { 'X-CSRF': '1' };
type SandboxWithUrl = Sandbox & { url: string };
const IDLE_MINUTES = '0.05'; // 3 s
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let sandbox: SandboxWithUrl;
let revocations: RevocationWatch;
const started: StartedBff[] = [];

beforeAll(async () => {
  ({ sandbox, revocations } = await startSandboxWithRevocationGate({
    clients: [
      { client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] },
      { client_id: 'symmetric-app', token_endpoint_auth_method: 'client_secret_basic', client_secret: 'symmetric-secret-0123456789', redirect_uris: [] },
    ],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  }));
});

afterEach(async () => {
  revocations.release();
  for (const b of started.splice(0)) {
    await b.app.locals.smart.endings.settled(5000);
    await b.close();
  }
});

afterAll(async () => {
  await sandbox?.close();
});

/** What the stores look like from outside: the memory store's own contents, or Redis keys. */
interface Stores {
  kind: 'memory' | 'redis';
  sessionStore: Store;
  tokenStore: TokenStore;
  /** Whether a token set for this context is held at all (expired or not). */
  holds(contextId: string): Promise<boolean>;
  /** Seconds the token set has left. */
  tokenTtl(contextId: string): Promise<number | undefined>;
  /** Whether the session index still names this session. */
  indexed(sessionId: string): Promise<boolean>;
}

function memoryStores(idleSeconds: number): Stores {
  const tokenStore = new MemoryTokenStore();
  return {
    kind: 'memory', tokenStore, sessionStore: createMemorySessionStore(idleSeconds),
    holds: async (id) => tokenStore.holds(id),
    tokenTtl: async (id) => tokenStore.remainingSeconds(id),
    indexed: async () => false,
  };
}

let redis: TestRedis | undefined;
const clients: RedisClient[] = [];

async function redisClient(): Promise<RedisClient> {
  redis ??= await startRedis();
  const client = createClient({ url: redis.url }) as unknown as RedisClient;
  client.on('error', () => undefined);
  await client.connect();
  clients.push(client);
  return client;
}

async function redisStores(idleSeconds: number, client?: RedisClient): Promise<Stores> {
  const c = client ?? await redisClient();
  return {
    kind: 'redis', sessionStore: createRedisSessionStore(c, idleSeconds), tokenStore: new RedisTokenStore(c),
    holds: async (id) => (await c.exists(`smart-bff:tokens:${id}`)) === 1,
    tokenTtl: async (id) => { const ms = await c.pTTL(`smart-bff:tokens:${id}`); return ms > 0 ? ms / 1000 : undefined; },
    indexed: async (sid) => (await c.exists(RedisSessionIndex.entryKey(sessionKey(sid)))) === 1 || (await c.zScore(RedisSessionIndex.DUE_KEY, sessionKey(sid))) !== null,
  };
}

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => undefined);
  await redis?.stop();
});

const kinds: ('memory' | 'redis')[] = redisAvailable() ? ['memory', 'redis'] : ['memory'];
const storesFor = (kind: 'memory' | 'redis', idleSeconds: number) => (kind === 'memory' ? Promise.resolve(memoryStores(idleSeconds)) : redisStores(idleSeconds));

async function bff(env: Record<string, string>, stores: Stores, opts: { sweep?: number | false } = {}): Promise<StartedBff> {
  const b = await startBff(
    { SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', LAUNCH_RATE_LIMIT: '100000', ...env },
    { sessionStore: stores.sessionStore, tokenStore: stores.tokenStore, ...(opts.sweep !== undefined ? { sessionSweepIntervalMs: opts.sweep } : {}) },
  );
  started.push(b);
  return b;
}

interface Launched {
  browser: Browser;
  context: string;
  tokens: TokenSet;
  patient: string;
}

async function launch(b: StartedBff, stores: Stores, browser = new Browser(), patient = sandbox.patients[0]!.id): Promise<Launched> {
  const start = await browser.get(`${b.url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(sandbox.createLaunch({ patient }))}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  expect(done.status).toBe(302);
  const context = new URL(done.headers.get('location')!, b.url).searchParams.get('context')!;
  return { browser, context, patient, tokens: (await stores.tokenStore.get(context))! };
}

/** The session id behind the browser's cookie (the signed cookie's value, unsigned). */
function sessionId(browser: Browser, b: StartedBff): string {
  const raw = decodeURIComponent(browser.cookies(b.url).get('smart-bff.sid')!);
  return raw.slice(2, raw.lastIndexOf('.'));
}

/** The sandbox's FHIR server, asked directly with this access token. */
async function fhirStatus(accessToken: string, patient = sandbox.patients[0]!.id): Promise<number> {
  const res = await fetch(`${sandbox.fhirBaseUrl}/Patient/${patient}`, { headers: { authorization: `Bearer ${accessToken}` } });
  await res.arrayBuffer();
  return res.status;
}

const proxied = (b: StartedBff, l: Launched) => l.browser.get(`${b.url}/fhir/Patient/${l.patient}`, { ...CSRF, 'X-SMART-Context': l.context });

/** Both tokens of this set reached the revocation endpoint, refresh token first, each once. */
function expectRevoked(t: TokenSet, clientId = 'public-app'): void {
  expect(revocations.of(t.refreshToken, t.accessToken).map((r) => [r.token_type_hint, r.token === t.refreshToken ? 'rt' : 'at', r.client_id, r.status]))
    .toEqual([['refresh_token', 'rt', clientId, 200], ['access_token', 'at', clientId, 200]]);
}

/** The log names the ended context, why, and its tokens by fingerprint only. */
function expectLogged(b: StartedBff, contextId: string, t: TokenSet, reason: string, extra: Record<string, unknown> = {}): void {
  const ended = b.logs.find('context.ended').filter((e) => e.contextId === contextId);
  expect(ended).toEqual([expect.objectContaining({ reason, refresh_fp: fingerprint(t.refreshToken), access_fp: fingerprint(t.accessToken), revocation: 'requested', ...extra })]);
  const revoked = b.logs.find('token.revocation').filter((e) => e.contextId === contextId);
  expect(revoked).toEqual([expect.objectContaining({
    reason, refresh: { fp: fingerprint(t.refreshToken), outcome: 'revoked' }, access: { fp: fingerprint(t.accessToken), outcome: 'revoked' },
    endpoint: `${sandbox.issuer}/token/revocation`,
  })]);
  for (const secret of [t.accessToken, t.refreshToken!, t.idToken!]) expect(b.logs.text()).not.toContain(secret);
}

describe.each(kinds)('%s store', (kind) => {
  test('MAX_CONTEXTS_PER_SESSION=1: the second launch evicts the first, whose tokens are revoked after the callback has answered', async () => {
    const stores = await storesFor(kind, 1800);
    const b = await bff({ MAX_CONTEXTS_PER_SESSION: '1' }, stores);
    const first = await launch(b, stores);
    expect(await fhirStatus(first.tokens.accessToken)).toBe(200);
    revocations.hold(); // the EHR's revocation endpoint hangs
    const second = await launch(b, stores, first.browser, sandbox.patients[1]!.id);
    // the callback has answered (launch() saw its redirect) while the revocation was still unanswered
    expect(revocations.of(first.tokens.refreshToken, first.tokens.accessToken)).toEqual([]);
    expect(revocations.aborted).toBe(0);
    await waitFor(() => revocations.waiting === 1, 'the revocation request to reach the EHR');
    revocations.release();
    await waitFor(() => revocations.of(first.tokens.accessToken).length === 1, 'the access token revocation');
    expectRevoked(first.tokens);
    expect(revocations.of(second.tokens.refreshToken, second.tokens.accessToken)).toEqual([]);
    expect(await fhirStatus(first.tokens.accessToken)).toBe(401);
    expect((await proxied(b, second)).status).toBe(200);
    expect(await stores.holds(first.context)).toBe(false);
    expect((await first.browser.get(`${b.url}/api/session`, { ...CSRF, 'X-SMART-Context': first.context })).status).toBe(401);
    expectLogged(b, first.context, first.tokens, 'evicted');
  });

  test('#21 the cookie of a session replaced at the next launch (regenerated) ends nothing: its contexts live on in the new session', async () => {
    const stores = await storesFor(kind, 1800);
    const b = await bff({}, stores, { sweep: 250 });
    const first = await launch(b, stores);
    const oldCookie = first.browser.cookieHeader(b.url);
    const second = await launch(b, stores, first.browser, sandbox.patients[1]!.id);
    expect(first.browser.cookieHeader(b.url)).not.toBe(oldCookie);
    // the old session id is gone from the store: a request with it finds no session…
    const stale = await fetch(`${b.url}/fhir/Patient/${first.patient}`, { headers: { ...CSRF, cookie: oldCookie, 'X-SMART-Context': first.context } });
    expect(stale.status).toBe(401);
    await sleep(500); // a sweep has run
    await b.app.locals.smart.endings.settled();
    // …and ends nothing: both contexts were carried over to the new session
    expect((await proxied(b, first)).status).toBe(200);
    expect((await proxied(b, second)).status).toBe(200);
    expect(revocations.of(first.tokens.refreshToken, first.tokens.accessToken, second.tokens.refreshToken, second.tokens.accessToken)).toEqual([]);
    expect(b.logs.find('context.ended')).toEqual([]);
  });

  test('#22 idle expiry noticed by a request with the stale cookie: 401 at once, then the contexts\' tokens are revoked and no token set is left', async () => {
    const stores = await storesFor(kind, 3);
    const b = await bff({ SESSION_IDLE_MINUTES: IDLE_MINUTES }, stores, { sweep: false });
    const l = await launch(b, stores);
    const sid = sessionId(l.browser, b);
    await sleep(3500); // the store has dropped the idle session
    revocations.hold();
    const res = await proxied(b, l);
    expect(res.status).toBe(401);
    expect(revocations.of(l.tokens.refreshToken, l.tokens.accessToken)).toEqual([]);
    await waitFor(() => revocations.waiting === 1, 'the revocation request');
    revocations.release();
    await waitFor(() => revocations.of(l.tokens.accessToken).length === 1, 'the access token revocation');
    expectRevoked(l.tokens);
    expect(await fhirStatus(l.tokens.accessToken)).toBe(401);
    expect(await stores.holds(l.context)).toBe(false);
    expect(await stores.indexed(sid)).toBe(false);
    expectLogged(b, l.context, l.tokens, 'idle_timeout', { noticed: 'request' });
    // the stale cookie again: nothing more is revoked
    expect((await proxied(b, l)).status).toBe(401);
    await b.app.locals.smart.endings.settled();
    expect(revocations.of(l.tokens.refreshToken, l.tokens.accessToken)).toHaveLength(2);
  });

  test('#22 idle expiry with no request: the sweep revokes the tokens, and the token store holds nothing for the ended context', async () => {
    const stores = await storesFor(kind, 3);
    const b = await bff({ SESSION_IDLE_MINUTES: IDLE_MINUTES }, stores, { sweep: 250 });
    const l = await launch(b, stores);
    const sid = sessionId(l.browser, b);
    expect(await stores.holds(l.context)).toBe(true);
    await waitFor(() => revocations.of(l.tokens.accessToken).length === 1, 'the sweep to revoke the access token');
    expectRevoked(l.tokens);
    expect(await fhirStatus(l.tokens.accessToken)).toBe(401);
    expect(await stores.holds(l.context)).toBe(false);
    expect(await stores.indexed(sid)).toBe(false);
    expectLogged(b, l.context, l.tokens, 'idle_timeout', { noticed: 'sweep' });
    // the cookie comes back later: 401, nothing revoked twice
    expect((await proxied(b, l)).status).toBe(401);
    await b.app.locals.smart.endings.settled();
    expect(revocations.of(l.tokens.refreshToken, l.tokens.accessToken)).toHaveLength(2);
  });

  test('#22 a session in use is never swept: requests push its deadline and its token sets\' expiry forward at the throttled touches', async () => {
    const stores = await storesFor(kind, 3);
    const b = await bff({ SESSION_IDLE_MINUTES: IDLE_MINUTES }, stores, { sweep: 250 });
    const l = await launch(b, stores);
    // stored for the session's idle life plus the grace, not for SESSION_MAX_HOURS
    const grace = tokenGraceMs(b.config) / 1000;
    const first = (await stores.tokenTtl(l.context))!;
    expect(first).toBeGreaterThan(grace);
    expect(first).toBeLessThanOrEqual(3 + grace + 1);
    const since = Date.now();
    for (let i = 0; i < 6; i++) {
      await sleep(1000);
      expect((await proxied(b, l)).status).toBe(200);
    }
    await sleep(200); // the last touch's commands have landed
    // six seconds later, twice the idle timeout: still alive, and its token set's expiry moved with it (without
    // the touches it would have lost those six seconds)
    const elapsed = (Date.now() - since) / 1000;
    expect(elapsed).toBeGreaterThan(6);
    expect((await stores.tokenTtl(l.context))!).toBeGreaterThan(first - elapsed + 3);
    expect(revocations.of(l.tokens.refreshToken, l.tokens.accessToken)).toEqual([]);
    expect(b.logs.find('context.ended')).toEqual([]);
  });

  test('#22 absolute timeout met by a request: the session is ended, its tokens revoked after the response', async () => {
    const stores = await storesFor(kind, 1800);
    const b = await bff({ SESSION_MAX_HOURS: '0.001' }, stores, { sweep: false }); // 4 s
    const l = await launch(b, stores);
    await sleep(4500);
    revocations.hold();
    const res = await l.browser.get(`${b.url}/api/session`, CSRF);
    expect(res.status).toBe(401);
    expect(revocations.of(l.tokens.refreshToken, l.tokens.accessToken)).toEqual([]);
    await waitFor(() => revocations.waiting === 1, 'the revocation request');
    revocations.release();
    await waitFor(() => revocations.of(l.tokens.accessToken).length === 1, 'the access token revocation');
    expectRevoked(l.tokens);
    expect(await fhirStatus(l.tokens.accessToken)).toBe(401);
    expect(await stores.holds(l.context)).toBe(false);
    expectLogged(b, l.context, l.tokens, 'absolute_timeout', { noticed: 'request' });
  });

  test('#22 absolute timeout with no request: the sweep ends the session\'s contexts at SESSION_MAX_HOURS, before the idle timeout', async () => {
    const stores = await storesFor(kind, 1800);
    const b = await bff({ SESSION_MAX_HOURS: '0.001' }, stores, { sweep: 250 });
    const l = await launch(b, stores);
    await waitFor(() => revocations.of(l.tokens.accessToken).length === 1, 'the sweep to revoke the access token');
    expectRevoked(l.tokens);
    expect(await fhirStatus(l.tokens.accessToken)).toBe(401);
    expect(await stores.holds(l.context)).toBe(false);
    expectLogged(b, l.context, l.tokens, 'absolute_timeout', { noticed: 'sweep' });
  });
});

test('#19 refresh answered invalid_grant: the still-live access token is revoked (not the dead refresh token), after the 401', async () => {
  const stores = memoryStores(1800);
  // every request finds the token due for refresh, while it is still valid at the EHR
  const b = await bff({ TOKEN_REFRESH_SKEW_SECONDS: '3600' }, stores);
  const l = await launch(b, stores);
  await (await sandbox.provider.RefreshToken.find(l.tokens.refreshToken!))!.destroy();
  expect(await fhirStatus(l.tokens.accessToken)).toBe(200);
  revocations.hold();
  const res = await proxied(b, l);
  expect(res.status).toBe(401);
  expect((await json(res)).issue[0].details.coding[0].code).toBe('session_expired');
  expect(revocations.of(l.tokens.accessToken)).toEqual([]);
  await waitFor(() => revocations.waiting === 1, 'the revocation request');
  revocations.release();
  await waitFor(() => revocations.of(l.tokens.accessToken).length === 1, 'the access token revocation');
  expect(revocations.of(l.tokens.refreshToken, l.tokens.accessToken).map((r) => [r.token_type_hint, r.status])).toEqual([['access_token', 200]]);
  expect(await fhirStatus(l.tokens.accessToken)).toBe(401);
  expect(stores.tokenStore instanceof MemoryTokenStore && stores.tokenStore.holds(l.context)).toBe(false);
  const revoked = b.logs.find('token.revocation').filter((e) => e.contextId === l.context);
  expect(revoked).toEqual([expect.objectContaining({ reason: 'refresh_invalid_grant', refresh: { fp: fingerprint(l.tokens.refreshToken), outcome: 'skipped' }, access: { fp: fingerprint(l.tokens.accessToken), outcome: 'revoked' } })]);
});

test('a context that ends while its token is being refreshed: the new tokens are revoked, never stored', async () => {
  const stores = memoryStores(1800);
  const b = await bff({ TOKEN_REFRESH_SKEW_SECONDS: '3600' }, stores);
  const l = await launch(b, stores);
  // the context ends (elsewhere: another tab's logout) after the EHR has issued new tokens, before the BFF stores them
  const endIt = (e: Record<string, unknown>) => { if (e.grant_type === 'refresh_token') void stores.tokenStore.take(l.context); };
  let issued: Record<string, unknown> | undefined;
  const capture = (e: Record<string, unknown>) => { if (typeof e.refresh_token === 'string' && !issued) issued = e; };
  sandbox.events.on('token-request', endIt);
  sandbox.events.on('token-response', capture);
  try {
    const res = await proxied(b, l);
    expect(res.status).toBe(401);
    expect((await json(res)).issue[0].details.coding[0].code).toBe('session_expired');
  } finally {
    sandbox.events.off('token-request', endIt);
    sandbox.events.off('token-response', capture);
  }
  const fresh = { accessToken: String(issued!.access_token), refreshToken: String(issued!.refresh_token) } as TokenSet;
  expect(fresh.accessToken).not.toBe(l.tokens.accessToken);
  await waitFor(() => revocations.of(fresh.accessToken).length === 1, 'the new access token revocation');
  expectRevoked(fresh);
  expect(await fhirStatus(fresh.accessToken)).toBe(401);
  expect(await stores.holds(l.context)).toBe(false);
  expect(b.logs.find('token.revocation')).toEqual([expect.objectContaining({ contextId: l.context, reason: 'ended_during_refresh', access: { fp: fingerprint(fresh.accessToken), outcome: 'revoked' } })]);
});

describe.each(kinds)('#23 logout (%s store)', (kind) => {
  test('#23 three contexts revoked in parallel under one deadline: the EHR hangs for one, the response comes anyway, the other two are revoked', async () => {
    const stores = await storesFor(kind, 1800);
    const b = await bff({ SMART_CLIENT_ID: 'symmetric-app', SMART_CLIENT_SECRET: 'symmetric-secret-0123456789' }, stores);
    const browser = new Browser();
    const launched: Launched[] = [];
    for (const p of sandbox.patients.slice(0, 3)) launched.push(await launch(b, stores, browser, p.id));
    revocations.hold(1); // the first revocation request to arrive hangs; the others are answered
    const res = await browser.request(`${b.url}/logout`, { method: 'POST', headers: CSRF });
    expect(res.status).toBe(200);
    // the response came while the hung request was still open at the EHR (not after its own timeout)
    expect(revocations.waiting).toBe(1);
    expect(revocations.aborted).toBe(0);
    const hung = launched.filter((l) => revocations.of(l.tokens.refreshToken).length === 0);
    const others = launched.filter((l) => !hung.includes(l));
    expect(hung.map((l) => l.context)).toHaveLength(1);
    for (const l of others) expectRevoked(l.tokens, 'symmetric-app');
    expect(await json(res)).toEqual({ ok: true, revoked: 2, unconfirmed: 1 });
    expect(b.logs.find('logout')).toEqual([expect.objectContaining({ contexts: 3, revoked: 2, unconfirmed_in_flight: [hung[0]!.context] })]);
    expect((await browser.get(`${b.url}/api/session`, CSRF)).status).toBe(401);
    for (const l of launched) expect(await stores.holds(l.context)).toBe(false);
    // the hung revocation finishes in the background once the EHR answers
    revocations.release();
    await waitFor(() => revocations.of(hung[0]!.tokens.accessToken).length === 1, 'the background revocation');
    expectRevoked(hung[0]!.tokens, 'symmetric-app');
    for (const l of launched) expect(await fhirStatus(l.tokens.accessToken, l.patient)).toBe(401);
    for (const l of launched) expectLogged(b, l.context, l.tokens, 'logout');
  }, 40_000);
});

test('the deadline is a few seconds, under the per-request timeout\'s default and Heroku\'s 30 s', () => {
  expect(LOGOUT_DEADLINE_MS).toBeLessThan(10_000);
  expect(LOGOUT_DEADLINE_MS).toBeGreaterThanOrEqual(1000);
});

(redisAvailable() ? describe : describe.skip)('several instances on one Redis', () => {
  test('#22 both instances sweep; each idle session\'s tokens are revoked once', async () => {
    const a = await redisStores(3);
    const other = await redisStores(3);
    const one = await bff({ SESSION_IDLE_MINUTES: IDLE_MINUTES }, a, { sweep: 100 });
    const two = await bff({ SESSION_IDLE_MINUTES: IDLE_MINUTES }, other, { sweep: 100 });
    const launched = [await launch(one, a), await launch(one, a, new Browser(), sandbox.patients[1]!.id)];
    for (const l of launched) await waitFor(() => revocations.of(l.tokens.accessToken).length > 0, 'the sweep');
    await sleep(1000); // a second sweep of each instance has run
    for (const l of launched) expectRevoked(l.tokens);
    for (const l of launched) expect(await a.holds(l.context)).toBe(false);
    // each session's entry was taken by one instance: each context ended once, on one of them
    const ended = [...one.logs.find('context.ended'), ...two.logs.find('context.ended')];
    expect(ended.map((e) => e.contextId).sort()).toEqual(launched.map((l) => l.context).sort());
  });
});
