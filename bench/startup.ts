/**
 * Start-up time: from spawning the built server as `npm start`, the Procfile and App Engine's entrypoint run it
 * (`node <npm start's options> dist/server.js`) to its first successful `GET /healthz`, polled every 5 ms.
 */
import http from 'node:http';
import { spawn } from 'node:child_process';
import { freePort } from '../test/helpers/net.js';
import { START_NODE_ARGS } from '../test/helpers/start-command.js';
import { ROOT, stopChild, track } from './lib.js';

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/healthz', agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
  });
}

export async function startupMs(env: Record<string, string>): Promise<number> {
  const port = await freePort();
  const started = performance.now();
  const child = track(spawn(process.execPath, [...START_NODE_ARGS, 'dist/server.js'], {
    cwd: ROOT, stdio: 'ignore',
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...env },
  }));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode} before answering /healthz`);
      if (await healthy(port)) return performance.now() - started;
      await new Promise((r) => setTimeout(r, 5));
    }
  } finally {
    await stopChild(child);
  }
}
