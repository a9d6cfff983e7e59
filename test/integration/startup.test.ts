/**
 * The real process entry point: configuration errors stop startup with every problem listed; the session store
 * choice is stated plainly in production; export output goes where the platform lets the process write; and
 * production start-up never loads the sandbox EHR's packages or the CLI.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSigningKey } from '../../src/keys.js';
import { freePort } from '../helpers/net.js';
import { startServerProcess } from '../helpers/server-process.js';
import { childEnv } from '../helpers/child-env.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const STRONG = 'q8Yt3vN0pLw2Zr7XcB5mKd9HsJ4fGa1e-Ux6';
const PRODUCTION = { NODE_ENV: 'production', PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: STRONG, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1', PORT: '0', HOST: '127.0.0.1' };

interface RunOptions { cwd?: string; uid?: number; gid?: number }

/** Runs src/server.ts (by absolute path, so any cwd works); with `waitFor`, sends SIGTERM once stdout matches. */
function run(env: Record<string, string>, waitFor?: RegExp, opts: RunOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', join(ROOT, 'node_modules/tsx/dist/loader.mjs'), join(ROOT, 'src/server.ts')], {
      cwd: opts.cwd ?? ROOT,
      env: { ...childEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid } : {}),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (waitFor && waitFor.test(stdout)) child.kill('SIGTERM');
    });
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30000);
    child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
    // e.g. EACCES: the node binary is not executable by `nobody` (one installed under /root)
    child.on('error', (err) => { clearTimeout(timer); reject(new Error(`cannot run ${process.execPath}${opts.uid !== undefined ? ` as uid ${opts.uid}` : ''}: ${err.message}`)); });
  });
}

const logLines = (out: string, event: string) => out.split('\n').filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('startup', () => {
  test('production with a bad configuration exits 1 and lists every problem with its variable, schema and semantic ones together', async () => {
    const r = await run({ NODE_ENV: 'production', PUBLIC_URL: 'http://insecure.example', SESSION_SECRET: 'changeme', SMART_CLIENT_ID: 'x', PORT: 'abc' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot start/);
    expect(r.stderr).toMatch(/PORT: not a number \(got "abc"\)/);
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

  test('an unknown NODE_ENV (prod) stops startup, with the production checks beside it', async () => {
    const r = await run({ NODE_ENV: 'prod', PORT: '0', PUBLIC_URL: 'http://insecure.example' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NODE_ENV: must be production, development or test \(got "prod"\)/);
    expect(r.stderr).toMatch(/PUBLIC_URL: must be https in production/);
    expect(r.stdout).toBe('');
  });

  describe('one line for people on stderr; stdout stays one JSON object per line', () => {
    const stdoutIsJson = (stdout: string) => {
      const lines = stdout.split('\n').filter(Boolean);
      expect(lines.length).toBeGreaterThan(3);
      for (const l of lines) expect(() => JSON.parse(l)).not.toThrow();
    };

    test('development: where to open the sandbox', async () => {
      const port = await freePort();
      const r = await run({ PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}`, NODE_ENV: 'development', HOST: '127.0.0.1' }, /sandbox\.ready/);
      // (oidc-provider, under the sandbox, prints its own development warnings to stderr)
      expect(r.stderr.split('\n').filter((l) => l.startsWith('smart-bff'))).toEqual([`smart-bff is running (port ${port}): open http://127.0.0.1:${port}/sandbox/ and press "Launch app" next to a patient.`]);
      stdoutIsJson(r.stdout);
    });

    test('production: the launch and redirect URIs to register at the EHR', async () => {
      const r = await run({ ...PRODUCTION, SINGLE_INSTANCE: '1' }, /server\.listening/);
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^smart-bff is running \(port \d+\) at https:\/\/app\.example\.com\. Register at the EHR: launch URI https:\/\/app\.example\.com\/launch, redirect URI https:\/\/app\.example\.com\/callback\.$/);
      stdoutIsJson(r.stdout);
      expect(logLines(r.stdout, 'server.listening')).toHaveLength(1);
    });
  });

  test('production without REDIS_URL and without SINGLE_INSTANCE: an error-level line says launches fail at random across instances and what to set', async () => {
    const r = await run(PRODUCTION, /server\.listening/);
    const [line] = logLines(r.stdout, 'session.store');
    expect(line).toMatchObject({ level: 'error', store: 'memory', singleInstance: false });
    expect(line!.msg).toMatch(/NOTHING SAYS THIS IS THE ONLY INSTANCE/);
    expect(line!.msg).toMatch(/launches fail at random/);
    expect(line!.msg).toMatch(/Set REDIS_URL/);
    expect(line!.msg).toMatch(/max_instances: 1/);
    expect(line!.msg).toMatch(/SINGLE_INSTANCE=1/);
    expect(r.code).toBe(0);
  });

  test('production with SINGLE_INSTANCE=1 (app.yaml max_instances: 1): the in-memory store is a stated choice, a warning and no error', async () => {
    const r = await run({ ...PRODUCTION, SINGLE_INSTANCE: '1' }, /server\.listening/);
    const [line] = logLines(r.stdout, 'session.store');
    expect(line).toMatchObject({ level: 'warn', store: 'memory', singleInstance: true });
    expect(r.stdout).not.toMatch(/"level":"error"/);
  });

  test('production with REDIS_URL: Redis, whatever SINGLE_INSTANCE says (and a warning that it is moot)', async () => {
    const port = await freePort(); // nothing listens there: the server starts anyway
    const r = await run({ ...PRODUCTION, SINGLE_INSTANCE: '1', REDIS_URL: `redis://127.0.0.1:${port}` }, /server\.listening/);
    expect(logLines(r.stdout, 'session.store')[0]).toMatchObject({ level: 'info', store: 'redis' });
    expect(r.stdout).toMatch(/SINGLE_INSTANCE is set but so is REDIS_URL/);
  });

  describe('export output (BULK_DATA_DIR unset) in a working directory the process cannot write, as on App Engine', () => {
    let dir: string;
    let env: Record<string, string>;
    // Tests run as root in CI, and root may write into a mode-0555 directory: run the server as `nobody` then.
    const asRoot = process.getuid?.() === 0;
    const identity: RunOptions = asRoot ? { uid: 65534, gid: 65534 } : {};

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'smart-bff-readonly-'));
      const keys = join(dir, 'keys');
      const key = await generateSigningKey('ES384', keys);
      chmodSync(keys, 0o755);
      chmodSync(key.privateKeyPath, 0o644); // readable by `nobody` for this test only
      writeFileSync(join(dir, 'README'), 'the application directory\n');
      env = { ...PRODUCTION, SINGLE_INSTANCE: '1', ADMIN_TOKEN: 'admin-token-0123456789-abcdefgh', SMART_BACKEND_ISS: 'https://fhir.example.com/r4', SMART_BACKEND_CLIENT_ID: 'backend', SMART_BACKEND_KEY_FILE: key.privateKeyPath };
      chmodSync(dir, 0o555);
    });
    afterAll(() => {
      chmodSync(dir, 0o755);
      rmSync(dir, { recursive: true, force: true });
    });

    test('the server uses <OS temp dir>/smart-bff-bulk-data and says so; nothing is left in the working directory', async () => {
      const r = await run(env, /server\.listening/, { cwd: dir, ...identity });
      const [line] = logLines(r.stdout, 'bulk.dir');
      expect(line).toMatchObject({ source: 'tmp', dir: join(tmpdir(), 'smart-bff-bulk-data') });
      expect(line!.msg).toMatch(/read-only/);
      expect(line!.msg).toMatch(/ephemeral/);
      expect(readdirSync(dir).sort()).toEqual(['README', 'keys']);
      expect(r.code).toBe(0);
    });

    test('the same directory made writable: ./bulk-data, and the write test leaves nothing behind', async () => {
      chmodSync(dir, 0o777);
      try {
        const r = await run(env, /server\.listening/, { cwd: dir, ...identity });
        expect(logLines(r.stdout, 'bulk.dir')[0]).toMatchObject({ source: 'cwd', dir: join(dir, 'bulk-data') });
        expect(readdirSync(dir).sort()).toEqual(['README', 'keys']);
      } finally {
        chmodSync(dir, 0o555);
      }
    });
  });

  test('production start-up never loads the sandbox EHR (oidc-provider, @medplum) or the CLI, even with every feature on and requests served', async () => {
    const trace = join(mkdtempSync(join(tmpdir(), 'smart-bff-trace-')), 'modules.txt');
    const keys = await generateSigningKey('ES384', mkdtempSync(join(tmpdir(), 'smart-bff-keys-')));
    const port = await freePort();
    const server = await startServerProcess({
      ...PRODUCTION, PORT: String(port), MODULE_TRACE_FILE: trace, REDIS_URL: `redis://127.0.0.1:${await freePort()}`, METRICS_TOKEN: 'metrics-token-0123456789',
      ADMIN_TOKEN: 'admin-token-0123456789-abcdefgh', SMART_BACKEND_ISS: 'https://fhir.example.com/r4', SMART_BACKEND_CLIENT_ID: 'backend', SMART_BACKEND_KEY_FILE: keys.privateKeyPath,
      BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'smart-bff-bulk-')),
    }, port, { nodeArgs: ['--import', './test/helpers/module-trace.mjs'] });
    for (const path of ['/', '/healthz', '/readyz', '/launch?iss=https://evil.example&launch=x', '/login', '/.well-known/jwks.json', '/api/bulk-data/exports', '/fhir/Patient', '/nope']) {
      await fetch(`${server.url}${path}`, { redirect: 'manual' }).then((r) => r.arrayBuffer());
    }
    expect(await server.stop('SIGTERM')).toBe(0);
    const loaded = readFileSync(trace, 'utf8').split('\n').filter(Boolean);
    // the trace sees both kinds of module, so an absence below means something
    expect(loaded.some((l) => l.startsWith('esm ') && l.endsWith('/src/app.ts'))).toBe(true);
    expect(loaded.some((l) => l.startsWith('cjs ') && l.includes('/node_modules/express-session/'))).toBe(true);
    const forbidden = loaded.filter((l) => /\/node_modules\/(oidc-provider|@medplum)\/|\/src\/(sandbox|cli)\//.test(l));
    expect(forbidden).toEqual([]);
    // with REDIS_URL the Redis client is loaded (the check below can fail)
    expect(loaded.some((l) => l.includes('/node_modules/@redis/client/'))).toBe(true);
  });

  test('production without REDIS_URL never loads the Redis client', async () => {
    const trace = join(mkdtempSync(join(tmpdir(), 'smart-bff-trace-')), 'modules.txt');
    const port = await freePort();
    const server = await startServerProcess({ ...PRODUCTION, PORT: String(port), MODULE_TRACE_FILE: trace, SINGLE_INSTANCE: '1' }, port, { nodeArgs: ['--import', './test/helpers/module-trace.mjs'] });
    for (const path of ['/', '/healthz', '/readyz', '/launch?iss=https://evil.example&launch=x', '/login', '/fhir/Patient']) {
      await fetch(`${server.url}${path}`, { redirect: 'manual' }).then((r) => r.arrayBuffer());
    }
    expect(await server.stop('SIGTERM')).toBe(0);
    const loaded = readFileSync(trace, 'utf8').split('\n').filter(Boolean);
    expect(loaded.some((l) => l.startsWith('esm ') && l.endsWith('/src/app.ts'))).toBe(true);
    expect(loaded.filter((l) => /\/node_modules\/(redis|@redis\/[^/]+|connect-redis)\/|\/src\/session\/redis-/.test(l))).toEqual([]);
  });

  test('the same trace in development with the sandbox does see oidc-provider, @medplum and src/sandbox (the check above can fail)', async () => {
    const trace = join(mkdtempSync(join(tmpdir(), 'smart-bff-trace-')), 'modules.txt');
    const port = await freePort();
    const server = await startServerProcess({ NODE_ENV: 'development', MODULE_TRACE_FILE: trace }, port, { nodeArgs: ['--import', './test/helpers/module-trace.mjs'] });
    await server.stop('SIGTERM');
    const loaded = readFileSync(trace, 'utf8');
    expect(loaded).toMatch(/\/node_modules\/oidc-provider\//);
    expect(loaded).toMatch(/\/node_modules\/@medplum\//);
    expect(loaded).toMatch(/\/src\/sandbox\//);
  });
});
