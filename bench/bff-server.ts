/**
 * Our server for the benchmark, in its own process: the real app (createApp) after a real standalone launch
 * against the sandbox EHR (another process, bench/sandbox-server.ts), whose token is then bound to the fast local
 * upstream so that the proxy is what gets measured. Usage: bff-server.ts <upstream FHIR base> <sandbox FHIR base>
 * [--redis URL]. Prints {"port","cookie","context","iss"} when ready (`iss`: the sandbox's FHIR base, for launches).
 *
 * Like src/server.ts, it starts the idle heap warmer (src/idle-heap-warmer.ts) unless HEAP_KEEP_WARM=off.
 * It logs as in production, at `info` (one `proxy.request` line per proxied call), through the server's own
 * destination (log.ts, logDestination: one synchronous write per line), to BENCH_LOG_FILE (default /dev/null): the
 * line is built and written, and nothing reads it.
 * FHIR_PROXY_REWRITE_LINKS=0 turns link rewriting off. BENCH_CPU_PROFILE=file writes a CPU profile of the serving
 * phase (start-up and the launch excluded) on SIGTERM.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AppDeps } from '../src/app.js';
import type { TokenStore } from '../src/session/token-store.js';
import { Browser } from '../test/helpers/browser.js';
import { authorize } from '../test/helpers/authorize.js';

// The server's modules as production runs them: tsc's output in dist/ (npm run bench builds it first).
// BENCH_FROM_SOURCE=1 runs src/ through tsx instead (whose helpers add a little to every function made per request).
const from = <T>(module: string): Promise<T> => import(process.env.BENCH_FROM_SOURCE === '1' ? `../src/${module}.ts` : `../dist/${module}.js`) as Promise<T>;
const { loadConfig } = await from<typeof import('../src/config.js')>('config');
const { createApp } = await from<typeof import('../src/app.js')>('app');
const { createLogger, logDestination } = await from<typeof import('../src/log.js')>('log');
const { MemoryTokenStore } = await from<typeof import('../src/session/token-store.js')>('session/token-store');
const { startIdleHeapWarmer } = await from<typeof import('../src/idle-heap-warmer.js')>('idle-heap-warmer');

const [upstreamBase, sandboxFhirBase] = process.argv.slice(2);
const redisUrl = process.argv[4] === '--redis' ? process.argv[5] : undefined;
if (!upstreamBase || !sandboxFhirBase) throw new Error('usage: bff-server.ts <upstream FHIR base> <sandbox FHIR base> [--redis URL]');
const logger = createLogger({ level: 'info', destination: logDestination(process.env.BENCH_LOG_FILE ?? '/dev/null') });
const server = http.createServer();
server.keepAliveTimeout = 60_000;
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const config = await loadConfig({
  NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: 'bench-9f8e7d6c5b4a3928170615243342516071829', SMART_ISS: sandboxFhirBase, SMART_CLIENT_ID: 'bench',
  LOG_LEVEL: 'info', ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', LAUNCH_RATE_LIMIT: '100000', FHIR_PROXY_REWRITE_LINKS: process.env.FHIR_PROXY_REWRITE_LINKS ?? '1',
  HEAP_KEEP_WARM: process.env.HEAP_KEEP_WARM ?? 'on',
  ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
});
let tokenStore: TokenStore = new MemoryTokenStore();
let stores: Partial<AppDeps> = {};
if (redisUrl) {
  const { createRedisSessionStore, RedisTokenStore, RedisTransactionStore } = await from<typeof import('../src/session/redis-store.js')>('session/redis-store');
  const { RedisConnection } = await from<typeof import('../src/session/redis-client.js')>('session/redis-client');
  const redis = new RedisConnection(config.redis!, logger);
  const ready = new Promise<void>((resolve) => redis.client.once('ready', () => resolve()));
  void redis.start();
  await ready;
  tokenStore = new RedisTokenStore(redis.client);
  stores = { sessionStore: createRedisSessionStore(redis.client, config.sessionIdleSeconds), transactionStore: new RedisTransactionStore(redis.client), redis };
}
server.on('request', createApp({ config, logger, tokenStore, ...stores }));
// as server.ts does: the young generation keeps its size through quiet spells (HEAP_KEEP_WARM, on unless set off)
if (config.heapKeepWarm) startIdleHeapWarmer();

// A real standalone launch: /login → the sandbox's sign-in and consent pages → /callback.
const browser = new Browser();
const start = await browser.get(`${url}/login?iss=${encodeURIComponent(sandboxFhirBase)}`);
const done = await browser.get(await authorize(start.headers.get('location')!));
const location = done.headers.get('location');
if (done.status !== 302 || !location?.includes('context=')) throw new Error(`the launch failed: /callback answered ${done.status} ${await done.text()}`);
const context = new URL(location, url).searchParams.get('context')!;
const tokens = (await tokenStore.get(context))!;
await tokenStore.set(context, { ...tokens, fhirBaseUrl: upstreamBase, expiresAt: Date.now() + 3600_000 }, 7200);
process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, cookie: browser.cookieHeader(url), context, iss: sandboxFhirBase })}\n`);

const profileFile = process.env.BENCH_CPU_PROFILE;
if (profileFile) {
  const { Session } = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const inspector = new Session();
  inspector.connect();
  const post = (method: string, params?: object) => new Promise<any>((resolve, reject) => inspector.post(method, params, (err, result) => (err ? reject(err) : resolve(result))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 200 });
  await post('Profiler.start');
  process.on('SIGTERM', () => void post('Profiler.stop').then(({ profile }) => { writeFileSync(profileFile, JSON.stringify(profile)); process.exit(0); }));
} else {
  process.on('SIGTERM', () => process.exit(0));
}
