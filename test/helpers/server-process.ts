/** Runs the real server entry point (src/server.ts) as a child process, as Heroku or App Engine would. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { childEnv } from './child-env.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * `nodeArgs` go before the entry point (e.g. another `--import`). `entry`: a built JavaScript entry point (such as
 * dist/server.js) run by Node itself, instead of src/server.ts through tsx.
 */
export async function startServerProcess(env: Record<string, string>, port: number, opts: { nodeArgs?: string[]; entry?: string } = {}): Promise<ServerProcess> {
  const args = opts.entry ? [...(opts.nodeArgs ?? []), opts.entry] : ['--import', 'tsx', ...(opts.nodeArgs ?? []), 'src/server.ts'];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...childEnv(), NODE_ENV: 'test', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`server did not start:\n${out}`)); }, 20000);
    const check = () => {
      if (out.includes('"event":"server.listening"')) { clearTimeout(timer); resolve(); }
    };
    child.stdout!.on('data', check);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}:\n${out}`)); });
  });
  return {
    url: `http://127.0.0.1:${port}`,
    child,
    output: () => out,
    stop: (signal = 'SIGTERM') => new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
      child.once('exit', (code) => resolve(code));
      child.kill(signal);
    }),
  };
}
