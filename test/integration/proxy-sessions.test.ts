/**
 * The FHIR proxy's own session path (proxy-sessions.ts, cached-stores.ts) over real sockets, against the sandbox:
 * it reads the store once and then from its read cache, yet every rule express-session's path keeps still holds
 * on /fhir: a forged cookie is no session, the absolute and idle timeouts end the session, a logout or any other
 * write is seen at the next call (on another app sharing the store too), and with Redis, on another instance at
 * once (pub/sub), tokens refreshed elsewhere included; Redis stopped is 503, never a session served from memory.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Store } from 'express-session';
import { loadConfig } from '../../src/config.js';
import { createApp, type App } from '../../src/app.js';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.js';
import { createMemorySessionStore } from '../../src/session/session-middleware.js';
import { busFor } from '../../src/session/cached-stores.js';
import { createRedisSessionStore, RedisTokenStore, RedisTransactionStore } from '../../src/session/redis-store.js';
import { RedisConnection } from '../../src/session/redis-client.js';
import type { TokenStore } from '../../src/session/token-store.js';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { captureLogs, type CapturedLogs } from '../helpers/log-capture.js';
import { startBff, TEST_SESSION_SECRET, type StartedBff } from '../helpers/bff.js';
import { redisAvailable, startRedis, type TestRedis } from '../helpers/redis.js';

const CSRF = { 'X-CSRF': '1' };
let sandbox: Sandbox & { url: string };
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  sandbox = await startSandbox({
    clients: [{ client_id: 'public-app', token_endpoint_auth_method: 'none', redirect_uris: [] }],
    redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/,
  } as Parameters<typeof startSandbox>[0]);
});

afterAll(async () => {
  for (const close of closers.reverse()) await close().catch(() => undefined);
  await sandbox?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A memory session store whose calls are counted. */
function countedStore(): { store: Store; calls: Record<string, number> } {
  const store = createMemorySessionStore();
  const calls: Record<string, number> = { get: 0, set: 0, touch: 0, destroy: 0 };
  for (const name of ['get', 'set', 'touch', 'destroy'] as const) {
    const original = (store[name] as (...a: unknown[]) => unknown).bind(store);
    (store as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
      calls[name]!++;
      return original(...args);
    };
  }
  return { store, calls };
}

async function bff(env: Record<string, string> = {}, opts: Parameters<typeof startBff>[1] = {}): Promise<StartedBff> {
  const b = await startBff({ SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', ...env }, opts);
  closers.push(() => b.close());
  return b;
}

async function launch(url: string, browser = new Browser()): Promise<{ browser: Browser; context: string; cookie: string }> {
  const start = await browser.get(`${url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${encodeURIComponent(sandbox.createLaunch({ patient: sandbox.patients[0]!.id }))}`);
  const done = await browser.get(await authorize(start.headers.get('location')!));
  expect(done.status).toBe(302);
  const context = new URL(done.headers.get('location')!, url).searchParams.get('context')!;
  return { browser, context, cookie: browser.cookieHeader(url) };
}

/** GET /fhir/Patient/<the launch patient> on `url` with this cookie header: the status. */
async function read(url: string, cookie: string, context?: string): Promise<number> {
  return Number((await readCode(url, cookie, context)).split(' ')[0]);
}

/** The same: `<status> <OperationOutcome code>`, or `200` alone. */
async function readCode(url: string, cookie: string, context?: string): Promise<string> {
  const res = await fetch(`${url}/fhir/Patient/${sandbox.patients[0]!.id}`, { headers: { ...CSRF, cookie, ...(context ? { 'X-SMART-Context': context } : {}) } });
  if (res.ok) {
    await res.arrayBuffer();
    return String(res.status);
  }
  const oo = (await res.json()) as { issue: { details: { coding: { code: string }[] } }[] };
  return `${res.status} ${oo.issue[0]!.details.coding[0]!.code}`;
}

describe('memory store', () => {
  test('the stored session is read once, then from memory; read from the store, it is touched (the throttle lets one through); each call logs once', async () => {
    const { store, calls } = countedStore();
    const b = await bff({}, { sessionStore: store });
    const l = await launch(b.url);
    const before = { ...calls };
    for (let i = 0; i < 20; i++) expect(await read(b.url, l.cookie)).toBe(200);
    expect(calls.get! - before.get!).toBe(1);
    // the call that read it from the store touched it, through the throttle (one touch per interval, 60 s here)
    expect(calls.touch! - before.touch!).toBe(1);
    expect(b.logs.find('proxy.request').length).toBeGreaterThanOrEqual(20);
  });

  test('a forged or altered cookie is no session, every time, even after the real one was verified', async () => {
    const b = await bff();
    const l = await launch(b.url);
    expect(await read(b.url, l.cookie)).toBe(200);
    const value = decodeURIComponent(l.cookie.split('smart-bff.sid=')[1]!.split(';')[0]!); // s:<sid>.<signature>
    const sid = value.slice(2, value.lastIndexOf('.'));
    const altered = `${value.slice(0, -1)}${value.endsWith('A') ? 'B' : 'A'}`;
    for (const forged of [altered, `s:${sid}.bm90LXRoZS1zaWduYXR1cmU`, sid, `s:${sid}`]) {
      for (let i = 0; i < 2; i++) expect(await read(b.url, `smart-bff.sid=${encodeURIComponent(forged)}`)).toBe(401);
    }
    expect(await read(b.url, l.cookie)).toBe(200);
  });

  test('a store that reports itself disconnected is 503 session_store_unavailable at the next call, though the session is in memory; it serves again once connected', async () => {
    const store = createMemorySessionStore();
    const b = await bff({}, { sessionStore: store });
    const l = await launch(b.url);
    expect(await read(b.url, l.cookie)).toBe(200);
    expect(await read(b.url, l.cookie)).toBe(200); // now from the read cache
    store.emit('disconnect');
    expect(await readCode(b.url, l.cookie)).toBe('503 session_store_unavailable');
    store.emit('connect');
    expect(await read(b.url, l.cookie)).toBe(200);
  });

  test('logout is seen at the very next call; so is a logout through another app sharing the store', async () => {
    const store = createMemorySessionStore();
    const a = await bff({}, { sessionStore: store });
    const other = await bff({}, { sessionStore: store });
    for (const [via, url] of [['the same app', a.url], ['another app', other.url]] as const) {
      const l = await launch(a.url);
      expect([via, await read(a.url, l.cookie)]).toEqual([via, 200]);
      const out = await fetch(`${url}/logout`, { method: 'POST', headers: { ...CSRF, cookie: l.cookie } });
      expect([via, out.status]).toEqual([via, 200]);
      expect([via, await read(a.url, l.cookie)]).toEqual([via, 401]);
    }
  });

  test('absolute timeout on /fhir: the session ends however active, its contexts end, and the store no longer holds it', async () => {
    const { store, calls } = countedStore();
    const b = await bff({ SESSION_MAX_HOURS: '0.0006' }, { sessionStore: store }); // 2.16 s
    const l = await launch(b.url);
    const statuses: string[] = [];
    for (let i = 0; i < 7; i++) {
      statuses.push(await readCode(b.url, l.cookie));
      await sleep(500);
    }
    expect(statuses.slice(0, 2)).toEqual(['200', '200']);
    expect(statuses.at(-1)).toBe('401 not_authenticated'); // the session ended, not only its tokens
    expect(b.logs.find('session.expired')).toEqual([expect.objectContaining({ reason: 'absolute_timeout' })]);
    expect(calls.destroy).toBeGreaterThanOrEqual(1);
    await sleep(200);
    expect(await b.app.locals.smart.tokenStore.get(l.context)).toBeUndefined(); // the context ended: its tokens taken
  });

  test('idle timeout on /fhir: calls alone keep the session alive (they touch the store); without them it ends', async () => {
    const b = await bff({ SESSION_IDLE_MINUTES: '0.05' }); // 3 s
    const l = await launch(b.url);
    for (let second = 0; second <= 4; second++) {
      if (second > 0) await sleep(1000);
      expect([second, await read(b.url, l.cookie)]).toEqual([second, 200]);
    }
    await sleep(4000);
    expect(await readCode(b.url, l.cookie)).toBe('401 not_authenticated'); // the session itself is gone, not only its tokens
  }, 20000);

  test('idle timeout: a session in the read cache is not served once the store has let it expire', async () => {
    const b = await bff({ SESSION_IDLE_MINUTES: '0.05' }); // 3 s; the sweep takes its tokens 2 s after that
    const l = await launch(b.url);
    expect(await read(b.url, l.cookie)).toBe(200); // read, cached and touched now
    await sleep(3500);
    expect(await readCode(b.url, l.cookie)).toBe('401 not_authenticated');
  }, 20000);
});

/** The session id a `smart-bff.sid=s:<id>.<signature>` cookie header names. */
function sessionIdOf(cookie: string): string {
  const value = decodeURIComponent(cookie.split('smart-bff.sid=')[1]!.split(';')[0]!);
  return value.slice(2, value.lastIndexOf('.'));
}

/** Two instances of the app in this process, each with its own Redis connection, as two dynos would be. */
async function instance(redis: TestRedis, logs: CapturedLogs, env: Record<string, string> = {}): Promise<{ url: string; app: App; tokenStore: TokenStore; sessionStore: Store; client: RedisConnection['client'] }> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const config = await loadConfig({
    NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: TEST_SESSION_SECRET, ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off',
    SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'public-app', REDIS_URL: redis.url, ...env,
  });
  const connection = new RedisConnection(config.redis!, logs.logger);
  await connection.start();
  const sessionStore = createRedisSessionStore(connection.client, config.sessionIdleSeconds);
  const app = createApp({
    config, logger: logs.logger, redis: connection, sessionStore, tokenStore: new RedisTokenStore(connection.client),
    transactionStore: new RedisTransactionStore(connection.client),
  });
  server.on('request', app);
  closers.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await connection.close();
  });
  return { url, app, tokenStore: app.locals.smart.tokenStore, sessionStore, client: connection.client };
}

(redisAvailable() ? describe : describe.skip)('Redis, two instances, short timeouts', () => {
  const logs = captureLogs('info');
  let redis: TestRedis;

  beforeAll(async () => {
    redis = await startRedis();
    closers.push(() => redis.stop());
  });

  async function pair(env: Record<string, string>) {
    const a = await instance(redis, logs, env);
    const b = await instance(redis, logs, env);
    for (let i = 0; i < 50 && ![a, b].every((x) => (busFor(x.sessionStore, logs.logger) as unknown as { isLive: boolean }).isLive); i++) await sleep(50);
    return [a, b] as const;
  }

  test('idle timeout: calls on either instance keep the session alive (throttled touches reach Redis); without calls it ends on both', async () => {
    const [a, b] = await pair({ SESSION_IDLE_MINUTES: '0.05' }); // 3 s
    const l = await launch(a.url);
    for (let second = 0; second <= 5; second++) {
      if (second > 0) await sleep(1000);
      const url = second % 2 ? b.url : a.url;
      expect([second, await read(url, l.cookie)]).toEqual([second, 200]);
    }
    await sleep(4000);
    // the session itself is gone (not only its tokens, which the sweep takes too)
    expect([await readCode(a.url, l.cookie), await readCode(b.url, l.cookie)]).toEqual(['401 not_authenticated', '401 not_authenticated']);
  }, 30000);

  test('absolute timeout: the session ends however active, on the instance that meets it and on the other', async () => {
    const [a, b] = await pair({ SESSION_MAX_HOURS: '0.0006' }); // 2.16 s
    const l = await launch(a.url);
    const statuses: string[] = [];
    for (let i = 0; i < 8; i++) {
      statuses.push(await readCode(i % 2 ? b.url : a.url, l.cookie));
      await sleep(500);
    }
    expect(statuses.slice(0, 2)).toEqual(['200', '200']);
    expect(statuses.slice(-2)).toEqual(['401 not_authenticated', '401 not_authenticated']); // the session ended, not only its tokens
    expect(logs.find('session.expired')).toEqual(expect.arrayContaining([expect.objectContaining({ reason: 'absolute_timeout' })]));
    await sleep(200);
    expect(await a.tokenStore.get(l.context)).toBeUndefined(); // its context ended: the tokens taken
  }, 30000);
});

(redisAvailable() ? describe : describe.skip)('Redis, two instances', () => {
  let redis: TestRedis;
  let a: Awaited<ReturnType<typeof instance>>;
  let b: Awaited<ReturnType<typeof instance>>;
  const logs = captureLogs('info');

  beforeAll(async () => {
    redis = await startRedis();
    closers.push(() => redis.stop());
    a = await instance(redis, logs);
    b = await instance(redis, logs);
    // each instance's invalidation subscriber is up before anything is cached
    for (let i = 0; i < 50 && !(await bothLive()); i++) await sleep(50);
  });

  /**
   * Every announcement A has made so far has reached B: a marker published by A after them is delivered to B after
   * them (Redis delivers one connection's messages in order). A test whose premise is a session B holds in its cache
   * waits for this first, or a late announcement of A's launch could drop it from B's cache after B read it.
   */
  async function announcementsArrived(): Promise<void> {
    const marker = `marker-${Math.random().toString(36).slice(2)}`;
    let arrived = false;
    busFor(b.sessionStore, logs.logger).register('tokens', { invalidate: (key) => { if (key === marker) arrived = true; }, setLive: () => undefined });
    busFor(a.sessionStore, logs.logger).publish('tokens', marker);
    for (let i = 0; i < 400 && !arrived; i++) await sleep(5);
    expect(arrived).toBe(true);
  }

  async function bothLive(): Promise<boolean> {
    return [a, b].every((x) => (busFor(x.sessionStore, logs.logger) as unknown as { isLive: boolean }).isLive);
  }

  test('a logout on one instance is seen by the other at once, though it had the session in memory', async () => {
    const l = await launch(a.url);
    for (let i = 0; i < 3; i++) expect(await read(b.url, l.cookie)).toBe(200); // B holds it now
    const out = await fetch(`${a.url}/logout`, { method: 'POST', headers: { ...CSRF, cookie: l.cookie } });
    expect(out.status).toBe(200);
    // the announcement travels through Redis: within a moment, far sooner than the caches' 5 s; B finds no session
    // at all (not a cached session whose tokens are gone)
    const seen: string[] = [];
    for (let i = 0; i < 20 && seen.at(-1) !== '401 not_authenticated'; i++) {
      seen.push(await readCode(b.url, l.cookie));
      if (seen.at(-1) !== '401 not_authenticated') await sleep(25);
    }
    expect(seen.at(-1)).toBe('401 not_authenticated');
  });

  test('a session saved on one instance (a context dropped from it) is read again by the other at its next call', async () => {
    const browser = new Browser();
    const first = await launch(a.url, browser);
    const second = await launch(a.url, browser); // the same browser: one session, two contexts (and a new id)
    const cookie = second.cookie;
    expect(await read(b.url, cookie, first.context)).toBe(200);
    expect(await readCode(b.url, cookie)).toBe('400 context_required'); // B holds the session with both contexts
    // the first context's tokens go; A's next call with it drops it from the session (a session save on A)
    await a.tokenStore.delete(first.context);
    expect(await readCode(a.url, cookie, first.context)).toBe('401 session_expired');
    const seen: string[] = [];
    for (let i = 0; i < 20 && seen.at(-1) !== '200'; i++) {
      seen.push(await readCode(b.url, cookie));
      if (seen.at(-1) !== '200') await sleep(25);
    }
    expect(seen.at(-1)).toBe('200'); // B reads the saved session: one context left, used without naming it
  });

  test('a session gone from Redis without a word (an announcement lost) is never written back when its tokens are found gone', async () => {
    const l = await launch(a.url);
    await announcementsArrived(); // so that none of the launch's arrives after B has read the session
    expect(await read(b.url, l.cookie, l.context)).toBe(200); // B holds the session
    const key = `smart-bff:sess:${sessionIdOf(l.cookie)}`;
    expect(await b.client.del(key)).toBe(1); // no announcement: B's cache still has it
    await a.tokenStore.delete(l.context);
    const seen: string[] = [];
    for (let i = 0; i < 20 && seen.at(-1) !== '401 session_expired'; i++) {
      seen.push(await readCode(b.url, l.cookie, l.context));
      if (seen.at(-1) !== '401 session_expired') await sleep(25); // the tokens' announcement is on its way
    }
    expect(seen.at(-1)).toBe('401 session_expired');
    expect(await b.client.exists(key)).toBe(0); // B dropped the context from the store's session, not its cached copy
  });

  test('tokens replaced on one instance (a refresh) are used by the other at its next call', async () => {
    const seenTokens: string[] = [];
    const upstream = http.createServer((req, res) => {
      seenTokens.push(String(req.headers.authorization));
      res.writeHead(200, { 'content-type': 'application/fhir+json' });
      res.end('{"resourceType":"Patient","id":"x"}');
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => upstream.close(r)));
    const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/fhir`;
    const l = await launch(a.url);
    const tokens = (await a.tokenStore.get(l.context))!;
    await a.tokenStore.set(l.context, { ...tokens, fhirBaseUrl: base, accessToken: 'first-token' }, 600);
    expect(await read(b.url, l.cookie)).toBe(200);
    expect(await read(b.url, l.cookie)).toBe(200); // from B's cache
    expect(await a.tokenStore.replace(l.context, { ...tokens, fhirBaseUrl: base, accessToken: 'second-token' })).toBe(true);
    for (let i = 0; i < 20 && seenTokens.at(-1) !== 'Bearer second-token'; i++) {
      await sleep(25);
      expect(await read(b.url, l.cookie)).toBe(200);
    }
    expect(seenTokens.at(-1)).toBe('Bearer second-token'); // within half a second, far sooner than the caches' 5 s
  });

  test('a context ended on one instance (its tokens taken) ends on the other at its next call, which also drops it from the session', async () => {
    const l = await launch(a.url);
    for (let i = 0; i < 3; i++) expect(await read(b.url, l.cookie, l.context)).toBe(200); // B holds the session and the tokens
    await Promise.all(a.app.locals.smart.endings.end([l.context], { reason: 'logout' }));
    const seen: number[] = [];
    for (let i = 0; i < 20 && seen.at(-1) !== 401; i++) {
      seen.push(await read(b.url, l.cookie, l.context));
      if (seen.at(-1) !== 401) await sleep(25);
    }
    expect(seen.at(-1)).toBe(401);
    // B wrote the session without the context (the fast path's own write), and A sees that at once
    const stored = await new Promise<unknown>((resolve, reject) => a.sessionStore.get(sessionIdOf(l.cookie), (err, s) => (err ? reject(err) : resolve(s))));
    expect(Object.keys((stored as { contexts: object }).contexts)).toEqual([]);
  });

  test('a token store that fails (a Redis error on the token set\'s key) is 503 session_store_unavailable, never a 500', async () => {
    const l = await launch(a.url);
    // a real Redis error on the token read only: the key now holds a list (WRONGTYPE); B has never read these tokens
    const key = `smart-bff:tokens:${l.context}`;
    const tokens = await a.client.get(key);
    expect(tokens).toBeTruthy();
    await a.client.del(key);
    await a.client.lPush(key, 'not a token set');
    expect(await readCode(b.url, l.cookie, l.context)).toBe('503 session_store_unavailable');
    await a.client.del(key);
    await a.client.set(key, tokens!, { EX: 600 });
    expect(await read(b.url, l.cookie, l.context)).toBe(200);
  });

  test('the anti-forgery header is still required on a session both instances hold; a forged cookie is never a session', async () => {
    const l = await launch(a.url);
    for (const url of [a.url, b.url]) expect(await read(url, l.cookie)).toBe(200);
    for (const url of [a.url, b.url]) {
      const res = await fetch(`${url}/fhir/Patient/${sandbox.patients[0]!.id}`, { headers: { cookie: l.cookie } });
      expect([res.status, ((await res.json()) as { issue: { details: { coding: { code: string }[] } }[] }).issue[0]!.details.coding[0]!.code]).toEqual([401, 'csrf_header_required']);
      const sid = sessionIdOf(l.cookie);
      for (let i = 0; i < 2; i++) expect(await read(url, `smart-bff.sid=${encodeURIComponent(`s:${sid}.bm90LXRoZS1zaWduYXR1cmU`)}`)).toBe(401);
    }
  });

  test('Redis stopped: /fhir answers 503 session_store_unavailable, never a session from memory; it recovers when Redis is back', async () => {
    const l = await launch(a.url);
    expect(await read(a.url, l.cookie)).toBe(200);
    await redis.stop();
    const during: number[] = [];
    for (let i = 0; i < 40 && during.at(-1) !== 503; i++) {
      during.push(await read(a.url, l.cookie));
      if (during.at(-1) !== 503) await sleep(50);
    }
    expect(during.at(-1)).toBe(503);
    expect(during.length * 50).toBeLessThan(2500); // the cache was dropped with the connection, not kept for its TTL
    const res = await fetch(`${a.url}/fhir/Patient/x`, { headers: { ...CSRF, cookie: l.cookie } });
    expect([res.status, ((await res.json()) as { issue: { details: { coding: { code: string }[] } }[] }).issue[0]!.details.coding[0]!.code]).toEqual([503, 'session_store_unavailable']);
    await redis.start();
    const l2 = await (async () => {
      for (let i = 0; i < 60; i++) {
        try {
          return await launch(a.url);
        } catch {
          await sleep(200);
        }
      }
      throw new Error('the instance did not recover');
    })();
    expect(await read(a.url, l2.cookie)).toBe(200);
  }, 30000);
});
