/**
 * Our server for the benchmark, in its own process: the real app (createApp) with a real launch completed
 * against the sandbox EHR, whose token context is then bound to the fast local upstream so that the proxy is
 * what gets measured. Prints {"port","cookie","context","iss"} when ready (`iss`: the sandbox's FHIR base, for
 * launches). `--redis URL` uses the Redis stores; FHIR_PROXY_REWRITE_LINKS=0 turns link rewriting off.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config.js';
import { createApp } from '../src/app.js';
import { createLogger } from '../src/log.js';
import { startSandbox } from '../src/sandbox/index.js';
import { MemoryTokenStore, type TokenStore } from '../src/session/token-store.js';
import { createRedisSessionStore, RedisTokenStore, RedisTransactionStore } from '../src/session/redis-store.js';
import { RedisConnection } from '../src/session/redis-client.js';
import { Browser } from '../test/helpers/browser.js';
import { authorize } from '../test/helpers/authorize.js';

const upstreamBase = process.argv[2]!;
const redisUrl = process.argv[3] === '--redis' ? process.argv[4] : undefined;
const logger = createLogger({ level: 'silent' });
const sandbox = await startSandbox({ clients: [{ client_id: 'bench', token_endpoint_auth_method: 'none', redirect_uris: [] }], redirectUriPattern: /^http:\/\/127\.0\.0\.1:\d+\/callback$/ });
const server = http.createServer();
server.keepAliveTimeout = 60_000;
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const config = await loadConfig({
  NODE_ENV: 'test', PUBLIC_URL: url, SESSION_SECRET: 'bench-9f8e7d6c5b4a3928170615243342516071829', SMART_ISS: sandbox.fhirBaseUrl, SMART_CLIENT_ID: 'bench',
  LOG_LEVEL: 'silent', ALLOW_INSECURE_HTTP: '1', SANDBOX: 'off', LAUNCH_RATE_LIMIT: '100000', FHIR_PROXY_REWRITE_LINKS: process.env.FHIR_PROXY_REWRITE_LINKS ?? '1', ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
});
let tokenStore: TokenStore = new MemoryTokenStore();
let extra = {};
if (redisUrl) {
  const redis = new RedisConnection(config.redis!, logger);
  const ready = new Promise<void>((resolve) => redis.client.once('ready', () => resolve()));
  void redis.start();
  await ready;
  tokenStore = new RedisTokenStore(redis.client);
  extra = { sessionStore: createRedisSessionStore(redis.client, config.sessionIdleSeconds), transactionStore: new RedisTransactionStore(redis.client), redis };
}
server.on('request', createApp({ config, logger, tokenStore, ...extra }));
const browser = new Browser();
const start = await browser.get(`${url}/launch?iss=${encodeURIComponent(sandbox.fhirBaseUrl)}&launch=${sandbox.createLaunch({ patient: sandbox.patients[0]!.id })}`);
const done = await browser.get(await authorize(start.headers.get('location')!));
const context = new URL(done.headers.get('location')!, url).searchParams.get('context')!;
const tokens = (await tokenStore.get(context))!;
await tokenStore.set(context, { ...tokens, fhirBaseUrl: upstreamBase, expiresAt: Date.now() + 3600_000 }, 7200);
process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, cookie: browser.cookieHeader(url), context, iss: sandbox.fhirBaseUrl })}\n`);
// BENCH_CPU_PROFILE=file: a CPU profile of the serving phase only (start-up excluded), written on SIGTERM.
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
