/**
 * A real Redis for tests: redis-server from Debian on an ephemeral port, with no persistence, that a test can
 * stop and start again on the same port. Locally, without redis-server, `redisAvailable()` is false and the
 * Redis tests skip with a message; in CI (CI=true) a missing redis-server is an error.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { freePort, waitForPort } from './net.js';

export { freePort };

export function redisAvailable(): boolean {
  const found = spawnSync('redis-server', ['--version']).status === 0;
  if (!found && process.env.CI) throw new Error('redis-server is not installed: .ci/run must install it (apt-get install redis-server)');
  if (!found) process.stderr.write('Redis tests skipped: redis-server is not installed (apt-get install redis-server)\n');
  return found;
}

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: 'ignore' });
    await waitForPort(port);
  };
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const c = child;
    await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL'); });
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, port, stop, start };
}
