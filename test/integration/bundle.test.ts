/**
 * The built server as `npm start`, Heroku's Procfile and App Engine's entrypoint run it: dist/server.js, one
 * bundle (scripts/bundle-server.mjs) with chunks beside it. Bundled here into a directory of its own, laid out as
 * the repository is (views, public and node_modules beside dist), then run with Node alone, given `npm start`'s Node
 * options (test/helpers/start-command.ts): it serves its pages (paths relative to the bundle), its static files and
 * the FHIR proxy's refusals in production, without loading the sandbox, the Redis client or the packages only they
 * use; and the sandbox in development, whose packages are loaded from node_modules.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { authorize } from '../helpers/authorize.js';
import { Browser } from '../helpers/browser.js';
import { freePort } from '../helpers/net.js';
import { startServerProcess } from '../helpers/server-process.js';
import { START_NODE_ARGS } from '../helpers/start-command.js';
import { redisAvailable, startRedis } from '../helpers/redis.js';
import { waitFor } from '../helpers/revocations.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SECRET = 'bundle-test-session-secret-0123456789abcdefghij';
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'smart-bff-bundle-'));
  for (const d of ['views', 'public', 'node_modules']) symlinkSync(join(ROOT, d), join(dir, d));
  const r = spawnSync(process.execPath, ['scripts/bundle-server.mjs', '--outdir', join(dir, 'dist')], { cwd: ROOT, encoding: 'utf8' });
  expect([r.status, r.stderr]).toEqual([0, '']);
}, 60000);

test('the bundle is one module with chunks beside it, and a source map', () => {
  const files = readdirSync(join(dir, 'dist'));
  expect(files).toEqual(expect.arrayContaining(['server.js', 'server.js.map']));
  expect(files.filter((f) => f.endsWith('.js')).every((f) => f === 'server.js' || /^server\..+-[A-Z0-9]{8}\.js$/.test(f))).toBe(true);
  expect(files.some((f) => f.startsWith('server.sandbox-'))).toBe(true);
  const sources = (JSON.parse(readFileSync(join(dir, 'dist/server.js.map'), 'utf8')) as { sources: string[] }).sources;
  expect(sources.map((s) => join(dir, 'dist', s))).toContain(join(ROOT, 'src/app.ts'));
});

test('production: pages, static files and the proxy\'s refusals; nothing of the sandbox, Redis or the proxy\'s HTTP client is loaded', async () => {
  const trace = join(dir, 'modules.txt');
  const port = await freePort();
  const server = await startServerProcess({
    NODE_ENV: 'production', PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: SECRET, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1',
    SINGLE_INSTANCE: '1', MODULE_TRACE_FILE: trace,
  }, port, { entry: join(dir, 'dist/server.js'), nodeArgs: [...START_NODE_ARGS, '--import', join(ROOT, 'test/helpers/module-trace.mjs')] });
  try {
    const health = await fetch(`${server.url}/healthz`);
    expect([health.status, await health.json()]).toEqual([200, { status: 'ok' }]);
    const home = await fetch(`${server.url}/`);
    expect([home.status, home.headers.get('content-type')]).toEqual([200, expect.stringMatching(/^text\/html/)]);
    expect(await home.text()).toContain('https://app.example.com/launch');
    const css = await fetch(`${server.url}/static/style.css`);
    expect([css.status, await css.text()]).toEqual([200, readFileSync(join(ROOT, 'public/style.css'), 'utf8')]);
    const fhir = await fetch(`${server.url}/fhir/Patient`);
    expect([fhir.status, ((await fhir.json()) as { resourceType: string }).resourceType]).toEqual([401, 'OperationOutcome']);
  } finally {
    expect(await server.stop('SIGTERM')).toBe(0);
  }
  const loaded = readFileSync(trace, 'utf8').split('\n').filter(Boolean);
  expect(loaded).toContain(`esm file://${join(dir, 'dist/server.js')}`);
  expect(loaded.filter((l) => /\/node_modules\/(oidc-provider|@medplum|redis|@redis\/[^/]+)\/|\/dist\/server\.(sandbox|redis)-|\/src\//.test(l))).toEqual([]);
  // the proxy's HTTP client (undici's Agent) is loaded by the first call that goes upstream, not at start-up; the
  // call above was refused before that
  expect(loaded.filter((l) => /\/dist\/server\.agent-|\/node_modules\/undici\//.test(l))).toEqual([]);
  // the packages are in the bundle: none of the production ones is loaded from node_modules
  expect(loaded.filter((l) => /\/node_modules\/(express|express-session|pino|zod|openid-client|jose|prom-client)\//.test(l))).toEqual([]);
}, 60000);

test('two packages are lighter in the bundle: zod speaks English only, and body-parser has no iconv-lite tables', () => {
  const sources = readdirSync(join(dir, 'dist')).filter((f) => f.endsWith('.js.map'))
    .flatMap((f) => (JSON.parse(readFileSync(join(dir, 'dist', f), 'utf8')) as { sources: string[] }).sources);
  expect(sources.filter((s) => /\/zod\/v4\/locales\//.test(s))).toEqual([expect.stringMatching(/\/zod\/v4\/locales\/en\.js$/)]);
  expect(sources.filter((s) => /\/iconv-lite\//.test(s))).toEqual([]);
  expect(sources.filter((s) => /bundle-stubs/.test(s)).map((s) => s.replace(/.*\//, '')).sort()).toEqual(['iconv-lite.cjs', 'zod-locales.js']);
});

test('production: JSON bodies through the bundle\'s body-parser (UTF-8, UTF-16 with a byte-order mark; another charset a 4xx) and zod\'s English messages', async () => {
  const port = await freePort();
  const admin = 'bundle-test-admin-token-0123456789abcdef';
  const server = await startServerProcess({
    NODE_ENV: 'production', PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: SECRET, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1',
    SINGLE_INSTANCE: '1', ADMIN_TOKEN: admin, BULK_DATA_DIR: mkdtempSync(join(tmpdir(), 'smart-bff-bundle-bulk-')),
  }, port, { entry: join(dir, 'dist/server.js'), nodeArgs: START_NODE_ARGS });
  const post = (body: Buffer, charset: string) => fetch(`${server.url}/api/bulk-data/exports`, {
    method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': `application/json; charset=${charset}` }, body,
  });
  const json = JSON.stringify({ level: 'everything', registration: 'café' });
  try {
    for (const [body, charset] of [[Buffer.from(json), 'utf-8'], [Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(json, 'utf16le')]), 'utf-16le']] as const) {
      const res = await post(body, charset);
      const answer = await res.json() as { error: string; message: string };
      // the body was read (zod saw its level) and zod's message is its English one
      expect({ charset, status: res.status, message: answer.message }).toEqual({ charset, status: 400, message: expect.stringMatching(/^Invalid export request: level: Invalid option: expected one of /) });
    }
    const other = await post(Buffer.from(json), 'utf-32');
    expect([other.status, ((await other.json()) as { error: string }).error]).toEqual([expect.any(Number), 'bad_request']);
    expect(other.status === 400 || other.status === 415).toBe(true);
  } finally {
    expect(await server.stop('SIGTERM')).toBe(0);
  }
}, 60000);

(redisAvailable() ? test : test.skip)('production with Redis: the Redis client runs from its chunk', async () => {
  const redis = await startRedis();
  const port = await freePort();
  const server = await startServerProcess({
    NODE_ENV: 'production', PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: SECRET, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1', REDIS_URL: redis.url,
  }, port, { entry: join(dir, 'dist/server.js'), nodeArgs: START_NODE_ARGS });
  try {
    const ready = await fetch(`${server.url}/readyz`);
    expect([ready.status, await ready.json()]).toEqual([200, { status: 'ready', checks: { config: 'ok', redis: 'ok' } }]);
  } finally {
    expect(await server.stop('SIGTERM')).toBe(0);
    await redis.stop();
  }
}, 60000);

test('development: the sandbox runs from its chunk, with its packages from node_modules; a launch reads through the proxy, whose client has a chunk of its own, and the call\'s one line is on stdout', async () => {
  const port = await freePort();
  const server = await startServerProcess({ NODE_ENV: 'development', SESSION_SECRET: SECRET, PUBLIC_URL: `http://127.0.0.1:${port}` }, port, { entry: join(dir, 'dist/server.js'), nodeArgs: START_NODE_ARGS });
  try {
    const page = await fetch(`${server.url}/sandbox/`);
    expect(page.status).toBe(200);
    const smart = await fetch(`${server.url}/sandbox/fhir/.well-known/smart-configuration`);
    expect([smart.status, ((await smart.json()) as { token_endpoint: string }).token_endpoint]).toEqual([200, `${server.url}/sandbox/auth/token`]);
    const fhir = await fetch(`${server.url}/sandbox/fhir/Patient`);
    expect(fhir.status).toBe(401); // the sandbox's FHIR server wants a token
    // a launch, and a read through the proxy: its HTTP client runs from its chunk
    const browser = new Browser();
    const login = await browser.get(`${server.url}/login`);
    const done = await browser.get(await authorize(login.headers.get('location')!));
    const context = new URL(done.headers.get('location')!, server.url).searchParams.get('context')!;
    const read = await browser.request(`${server.url}/fhir/Patient?_count=1`, { headers: { 'X-CSRF': '1', 'X-SMART-Context': context } });
    const bundle = (await read.json()) as { resourceType: string; entry: { fullUrl: string }[] };
    expect([read.status, bundle.resourceType]).toEqual([200, 'Bundle']);
    expect(bundle.entry[0]!.fullUrl.startsWith(`${server.url}/fhir/Patient/`)).toBe(true);
    // the call's one log line, built when its turn ended, is on stdout while the server runs (not held until exit)
    const requestId = read.headers.get('x-request-id')!;
    const proxyLines = () => server.output().split('\n').filter((l) => l.includes('"event":"proxy.request"') && l.includes(requestId));
    await waitFor(() => proxyLines().length > 0, 'the proxy.request line on stdout', 5000);
    expect(proxyLines().map((l) => JSON.parse(l))).toEqual([expect.objectContaining({ level: 'info', requestId, contextId: context, method: 'GET', status: 200, path: '/sandbox/fhir/Patient', msg: 'proxy: request forwarded' })]);
  } finally {
    expect(await server.stop('SIGTERM')).toBe(0);
  }
}, 60000);
