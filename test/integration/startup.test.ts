/** The real process entry point: configuration errors stop startup with every problem listed. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function run(env: Record<string, string>, waitFor?: RegExp): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (waitFor && waitFor.test(stdout)) child.kill('SIGTERM');
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

describe('startup', () => {
  test('production with a bad configuration exits 1 and lists every problem with its variable', async () => {
    const r = await run({ NODE_ENV: 'production', PUBLIC_URL: 'http://insecure.example', SESSION_SECRET: 'changeme', SMART_CLIENT_ID: 'x', PORT: '0' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot start/);
    expect(r.stderr).toMatch(/PUBLIC_URL: must be https in production/);
    expect(r.stderr).toMatch(/SESSION_SECRET: too weak/);
    expect(r.stderr).toMatch(/SMART_ISS: required/);
    expect(r.stderr).not.toMatch(/changeme/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  test('development with nothing configured starts the sandbox and says where to open it; SIGTERM stops it cleanly', async () => {
    const r = await run({ PORT: '0', NODE_ENV: 'development', HOST: '127.0.0.1' }, /sandbox\.ready/);
    expect(r.stdout).toMatch(/Sandbox EHR ready: open http:\/\/localhost:0\/sandbox\//);
    expect(r.stdout).toMatch(/SESSION_SECRET is not set/);
    expect(r.stdout).toMatch(/"event":"server.stopped"/);
    expect(r.code).toBe(0);
  });
});
