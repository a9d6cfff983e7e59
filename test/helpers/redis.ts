/**
 * A real Redis for tests: redis-server from Debian on an ephemeral port, with no persistence, that a test can
 * stop and start again on the same port. With `tls`, it serves TLS only (no plain port), on a self-signed
 * certificate chain made for the test (see tls-certs.ts), as Heroku Redis does; with `password`, it requires
 * AUTH; with `started: false`, the port is chosen but nothing listens until `start()` (Redis down at boot).
 * Locally, without redis-server, `redisAvailable()` is false and the Redis tests skip with a message; in CI
 * (CI=true) a missing redis-server is an error.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createClient } from 'redis';
import type { RedisClient } from '../../src/session/redis-client.js';
import { freePort, waitForPort } from './net.js';
import { makeTestCertificates, type TestCertificates } from './tls-certs.js';

export { freePort };

export function redisAvailable(): boolean {
  const found = spawnSync('redis-server', ['--version']).status === 0;
  if (!found && process.env.CI) throw new Error('redis-server is not installed: .ci/run must install it (apt-get install redis-server)');
  if (!found) process.stderr.write('Redis tests skipped: redis-server is not installed (apt-get install redis-server)\n');
  return found;
}

export interface TestRedis {
  /** redis://127.0.0.1:port, or rediss:// with `tls` (with the password when there is one). */
  url: string;
  port: number;
  /** With `tls`: the certificates (caFile is the CA that signed the server's certificate). */
  certs?: TestCertificates;
  /** What redis-server printed (TLS handshake errors appear here). */
  output(): string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startRedis(opts: { tls?: boolean; password?: string; started?: boolean } = {}): Promise<TestRedis> {
  const port = await freePort();
  const certs = opts.tls ? makeTestCertificates() : undefined;
  const listen = certs
    ? ['--port', '0', '--tls-port', String(port), '--tls-cert-file', certs.chainFile, '--tls-key-file', certs.keyFile, '--tls-ca-cert-file', certs.caFile, '--tls-auth-clients', 'no']
    : ['--port', String(port)];
  let child: ChildProcess | undefined;
  let out = '';
  const start = async () => {
    child = spawn('redis-server', [...listen, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', ...(opts.password ? ['--requirepass', opts.password] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    await waitForPort(port);
  };
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const c = child;
    await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL'); });
  };
  if (opts.started !== false) await start();
  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  return { url: `${certs ? 'rediss' : 'redis'}://${auth}127.0.0.1:${port}`, port, ...(certs ? { certs } : {}), output: () => out, stop, start };
}

/**
 * For a test file whose tests each want clients of one Redis: the server starts at the first client asked for;
 * after the file's tests every client is closed and the server stopped. Call at the top level of the file.
 */
export function redisClientsForFile(): () => Promise<RedisClient> {
  let redis: TestRedis | undefined;
  const clients: RedisClient[] = [];
  afterAll(async () => {
    for (const c of clients) await c.close();
    await redis?.stop();
  });
  return async () => {
    redis ??= await startRedis();
    const c = createClient({ url: redis.url }) as unknown as RedisClient;
    await c.connect();
    clients.push(c);
    return c;
  };
}
