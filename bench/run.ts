/**
 * `npm run bench`: everything measured side by side in one run on this machine, written to docs/benchmarks.md.
 *  1. proxied small reads (GET /fhir/Patient/<id>, about 1 KB) at 1, 16 and 64 connections with wrk: the upstream
 *     directly, the bare Node proxy (bearer token, keep-alive, nothing else), the same on undici (a reference),
 *     nginx proxy_pass (when installed),
 *     ours with the memory store and with Redis (when installed); requests/s, p50/p99 and the server's CPU time
 *     per request, in interleaved rounds;
 *  2. large bodies (a Bundle and an NDJSON file): throughput and the server's peak RSS growth, links rewritten or not;
 *  3. launches and callbacks per second against the sandbox EHR, and the time of each step of a callback;
 *  4. start-up time of the built server to its first successful /healthz;
 *  5. the cost of the proxy's log line by where it goes (bench/log-line.ts), and a CPU profile of ours under the
 *     16-connection read, by layer;
 *  6. where a read's time goes at 64 connections, as each server sees it (bench/time-split.ts): time in the server,
 *     time between requests, event-loop delay, user and system CPU per request, for the bare proxies and ours.
 * Needs wrk (apt-get install wrk); nginx and redis-server are optional. BENCH_SECONDS sets each load measurement
 * (default 5), BENCH_ROUNDS the rounds of small reads (default 5); BENCH_QUICK=1 shrinks everything for a smoke
 * run; BENCH_PIN=0 turns CPU pinning off; BENCH_NODE=24 (a major, or a path) runs it all on that Node
 * (bench/bench-node.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { freePort, waitForPort } from '../test/helpers/net.js';
// Ours runs with the Node options production starts it with (npm start's); the bare proxies with Node's defaults.
import { START_NODE_ARGS } from '../test/helpers/start-command.js';
import { rerunOnChosenNode } from './bench-node.js';
import { available, cpuMs, DURATION, LOAD_CPUS, median, pinned, pinning, ROOT, round, SERVER_CPUS, startChild, stopChild, track, wrk, type LoadResult } from './lib.js';
import { measureBody, type BodyResult, type BodyTarget } from './large-bodies.js';
import { callbacksPerSecond, callbackTimings, launchesPerSecond, medianSteps, type CallbackResult } from './launches.js';
import { startupMs } from './startup.js';
import { profileByLayer, type LayerRow } from './profile.js';
import { timeSplit, type SplitRow, type SplitTarget } from './time-split.js';

const QUICK = process.env.BENCH_QUICK === '1';
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 1 : 5));
const CONNECTIONS = [1, 16, 64];
/** "Where a read's time goes": at the connection count whose goals are hardest to meet, in rounds of its own. */
const SPLIT_CONNECTIONS = 64;
const SPLIT_ROUNDS = QUICK ? 1 : 3;
const BODIES = [
  { name: `Bundle, ${QUICK ? 20 : 200} MB`, path: `/fhir/Bundle/large?mb=${QUICK ? 20 : 200}` },
  { name: `NDJSON, ${QUICK ? 32 : 256} MB`, path: `/fhir/Observation.ndjson?mb=${QUICK ? 32 : 256}` },
];
const BODY_ROUNDS = QUICK ? 1 : 3;
const CALLBACKS = QUICK ? 40 : 300;
const STARTS = QUICK ? 2 : 5;
const OURS = 'smart-bff, memory store';
const OURS_REDIS = 'smart-bff, Redis store';
const BARE = 'bare Node proxy';
/** A reference only: the bare proxy on smart-bff's HTTP client (undici); the goals are measured against BARE. */
const BARE_UNDICI = 'bare proxy on undici (reference)';
const log = (s: string) => process.stderr.write(`${s}\n`);

interface Target { name: string; url: string; headers: Record<string, string>; pid?: number }
interface OurServer { child: ChildProcess; port: number; cookie: string; context: string; iss: string }
type Small = LoadResult & { cpuUs?: number };

async function startOurs(upstreamBase: string, sandboxBase: string, extra: string[], env: Record<string, string> = {}): Promise<OurServer> {
  const s = await startChild(SERVER_CPUS, process.execPath, [...START_NODE_ARGS, '--import', 'tsx', 'bench/bff-server.ts', upstreamBase, sandboxBase, ...extra], env);
  return { child: s.child, ...(JSON.parse(s.firstLine) as Omit<OurServer, 'child'>) };
}
const oursHeaders = (o: OurServer) => ({ 'X-CSRF': '1', 'X-SMART-Context': o.context, Cookie: o.cookie });

async function main() {
  rerunOnChosenNode(new URL(import.meta.url));
  if (!available('wrk', ['-v'])) {
    log('npm run bench needs wrk, the HTTP load generator (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk).');
    process.exit(2);
  }
  log(`== ${pinning}`);
  log('== building (npm run build) for the start-up measurement');
  const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');

  const upstream = await startChild(LOAD_CPUS, process.execPath, ['bench/upstream.mjs']);
  const upstreamPort = Number(upstream.firstLine);
  const upstreamBase = `http://127.0.0.1:${upstreamPort}/fhir`;
  const sandbox = JSON.parse((await startChild(LOAD_CPUS, process.execPath, ['--import', 'tsx', 'bench/sandbox-server.ts'])).firstLine) as { fhirBaseUrl: string };
  const targets: Target[] = [{ name: 'upstream directly', url: `${upstreamBase}/Patient/bench-1`, headers: {}, pid: upstream.child.pid }];
  const bare = await startChild(SERVER_CPUS, process.execPath, ['bench/bare-proxy.mjs', String(await freePort()), String(upstreamPort)]);
  const bareBase = `http://127.0.0.1:${bare.firstLine}`;
  targets.push({ name: BARE, url: `${bareBase}/fhir/Patient/bench-1`, headers: {}, pid: bare.child.pid });
  const bareUndici = await startChild(SERVER_CPUS, process.execPath, ['bench/bare-undici-proxy.mjs', String(await freePort()), String(upstreamPort)]);
  targets.push({ name: BARE_UNDICI, url: `http://127.0.0.1:${bareUndici.firstLine}/fhir/Patient/bench-1`, headers: {}, pid: bareUndici.child.pid });

  if (available('nginx', ['-v'])) {
    // one process, no master: killed at exit (SIGKILL) it leaves no orphaned worker behind
    const dir = mkdtempSync(join(os.tmpdir(), 'bench-nginx-'));
    const port = await freePort();
    for (const d of ['cb', 'px', 'fc', 'uw', 'sc']) mkdirSync(join(dir, d));
    writeFileSync(join(dir, 'nginx.conf'), `master_process off; worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}/cb; proxy_temp_path ${dir}/px; fastcgi_temp_path ${dir}/fc; uwsgi_temp_path ${dir}/uw; scgi_temp_path ${dir}/sc;
  upstream up { server 127.0.0.1:${upstreamPort}; keepalive 128; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Authorization "Bearer bench-access-token-0123456789abcdefghijklmnopqrstuvwxyz"; } } }`);
    const [cmd, args] = pinned(SERVER_CPUS, 'nginx', ['-c', join(dir, 'nginx.conf')]);
    track(spawn(cmd, args, { stdio: 'ignore' }));
    await waitForPort(port);
    targets.push({ name: 'nginx proxy_pass', url: `http://127.0.0.1:${port}/fhir/Patient/bench-1`, headers: {} });
  } else {
    log('nginx not installed: skipping the nginx reference (apt-get install nginx-light)');
  }

  const ours = await startOurs(upstreamBase, sandbox.fhirBaseUrl, []);
  // Every target gets the same request, as the app's page sends it (the session cookie, X-CSRF, X-SMART-Context):
  // a proxy in front of an EHR receives them whatever it does with them, and the others ignore them.
  for (const t of targets) t.headers = oursHeaders(ours);
  targets.push({ name: OURS, url: `http://127.0.0.1:${ours.port}/fhir/Patient/bench-1`, headers: oursHeaders(ours), pid: ours.child.pid });
  let redisUrl: string | undefined;
  if (available('redis-server', ['--version'])) {
    const port = await freePort();
    const [cmd, args] = pinned(LOAD_CPUS, 'redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no']);
    track(spawn(cmd, args, { stdio: 'ignore' }));
    await waitForPort(port);
    redisUrl = `redis://127.0.0.1:${port}`;
    const withRedis = await startOurs(upstreamBase, sandbox.fhirBaseUrl, ['--redis', redisUrl]);
    targets.push({ name: OURS_REDIS, url: `http://127.0.0.1:${withRedis.port}/fhir/Patient/bench-1`, headers: oursHeaders(withRedis), pid: withRedis.child.pid });
  } else {
    log('redis-server not installed: skipping the Redis store (apt-get install redis-server)');
  }

  // 1. Small reads: a warm-up per target at every connection count (a target's first load at 64 connections is often
  // its slowest by far, whichever target it is), then rounds in which every target is measured at every connection
  // count in turn, so that a slower minute of a shared machine falls on all of them alike.
  for (const t of targets) for (const c of CONNECTIONS) await wrk(t.url, c, t.headers, { seconds: Math.min(3, DURATION) });
  const runs = new Map<string, Map<number, Small[]>>(targets.map((t) => [t.name, new Map(CONNECTIONS.map((c) => [c, []]))]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of CONNECTIONS) {
      for (const t of targets) {
        const before = t.pid ? cpuMs(t.pid) : 0;
        const x = await wrk(t.url, c, t.headers);
        runs.get(t.name)!.get(c)!.push({ ...x, cpuUs: t.pid ? ((cpuMs(t.pid) - before) * 1000) / x.total : undefined });
        log(`small reads, round ${r + 1}, ${t.name}, ${c} connections: ${Math.round(x.rps)} req/s, p99 ${x.p99.toFixed(2)} ms`);
      }
    }
  }

  // 2. Large bodies.
  const plain = await startOurs(upstreamBase, sandbox.fhirBaseUrl, [], { FHIR_PROXY_REWRITE_LINKS: '0' });
  const bodyTargets: BodyTarget[] = [
    { name: 'upstream directly', base: `http://127.0.0.1:${upstreamPort}`, headers: {}, pid: upstream.child.pid },
    { name: BARE, base: bareBase, headers: {}, pid: bare.child.pid },
    { name: 'smart-bff, links rewritten', base: `http://127.0.0.1:${ours.port}`, headers: oursHeaders(ours), pid: ours.child.pid },
    { name: 'smart-bff, no rewriting', base: `http://127.0.0.1:${plain.port}`, headers: oursHeaders(plain), pid: plain.child.pid },
  ];
  const bodies: (BodyResult & { growth: number; toBare: number })[] = [];
  for (const body of BODIES) {
    const perTarget = new Map<string, BodyResult[]>(bodyTargets.map((t) => [t.name, []]));
    for (let r = 0; r < BODY_ROUNDS; r++) {
      for (const t of bodyTargets) {
        const x = await measureBody(t, body);
        perTarget.get(t.name)!.push(x);
        log(`large body, ${t.name}, ${body.name}: ${round(x.mbPerSecond)} MB/s, RSS ${round(x.rssBefore ?? NaN)} → peak ${round(x.peakRss ?? NaN)} MiB`);
      }
    }
    const bareRounds = perTarget.get(BARE)!;
    for (const xs of perTarget.values()) {
      const byRate = [...xs].sort((a, b) => a.mbPerSecond - b.mbPerSecond);
      bodies.push({
        ...byRate[Math.floor(byRate.length / 2)]!, growth: Math.max(...xs.map((x) => (x.peakRss ?? NaN) - (x.rssBefore ?? NaN))),
        toBare: median(xs.map((x, r) => x.mbPerSecond / bareRounds[r]!.mbPerSecond)), // paired by round, as for small reads
      });
    }
  }
  await stopChild(plain.child);

  // 3. Launches and callbacks, on a server of their own whose log is kept for the callbacks' step times.
  const logFile = join(mkdtempSync(join(os.tmpdir(), 'bench-log-')), 'server.log');
  const launcher = await startOurs(upstreamBase, sandbox.fhirBaseUrl, [], { BENCH_LOG_FILE: logFile });
  const launchBase = `http://127.0.0.1:${launcher.port}`;
  await launchesPerSecond(launchBase, launcher.iss, 1); // discovery fetched once, then cached
  const launches: { c: number; r: LoadResult }[] = [];
  for (const c of [16, 64]) {
    launches.push({ c, r: await launchesPerSecond(launchBase, launcher.iss, c) });
    log(`launches, ${c} connections: ${Math.round(launches.at(-1)!.r.rps)}/s`);
  }
  const callbacks: CallbackResult[] = [];
  const timingsBefore = await settledTimings(logFile, 1); // the server's own launch at start-up
  callbacks.push(await callbacksPerSecond(launchBase, launcher.iss, Math.ceil(CALLBACKS / 5), 1));
  const serial = (await settledTimings(logFile, timingsBefore.length + callbacks[0]!.callbacks)).slice(timingsBefore.length);
  callbacks.push(await callbacksPerSecond(launchBase, launcher.iss, CALLBACKS, 16));
  for (const x of callbacks) log(`callbacks, concurrency ${x.concurrency}: ${round(x.perSecond, 1)}/s`);
  const steps = medianSteps(serial);
  await stopChild(launcher.child);

  // 4. Start-up.
  const secret = 'bench-start-up-secret-0123456789abcdefghijklmnop';
  const configs: { name: string; env: Record<string, string> }[] = [
    { name: 'production, one EHR configured', env: { NODE_ENV: 'production', PUBLIC_URL: 'https://bff.example.org', SESSION_SECRET: secret, SMART_ISS: 'https://ehr.example.org/fhir/r4', SMART_CLIENT_ID: 'bench', SINGLE_INSTANCE: '1' } },
    { name: 'development, built-in sandbox EHR', env: { NODE_ENV: 'development', SESSION_SECRET: secret } },
  ];
  const startups = [];
  for (const cfg of configs) {
    const times: number[] = [];
    for (let i = 0; i < STARTS; i++) times.push(await startupMs(cfg.env));
    startups.push({ name: cfg.name, runs: times });
    log(`start-up, ${cfg.name}: median ${Math.round(median(times))} ms`);
  }

  // The proxy's log line, by where it goes (a process of its own on the servers' CPU).
  const [llCmd, llArgs] = pinned(SERVER_CPUS, process.execPath, ['--import', 'tsx', 'bench/log-line.ts']);
  const ll = spawnSync(llCmd, llArgs, { cwd: ROOT, encoding: 'utf8' });
  if (ll.status !== 0) throw new Error(`bench/log-line.ts failed: ${ll.stderr}`);
  const logLine = JSON.parse(ll.stdout) as { name: string; us: number }[];
  log(`log line: ${logLine.map((l) => `${l.us.toFixed(1)} µs`).join(', ')}`);

  // 5. Where the time goes: ours under the 16-connection read with the CPU profiler on (a run of its own: the
  // profiler costs time too).
  const profileFile = join(mkdtempSync(join(os.tmpdir(), 'bench-prof-')), 'read.cpuprofile');
  const profiled = await startOurs(upstreamBase, sandbox.fhirBaseUrl, [], { BENCH_CPU_PROFILE: profileFile });
  const cpuBefore = cpuMs(profiled.child.pid!);
  const profiledRead = await wrk(`http://127.0.0.1:${profiled.port}/fhir/Patient/bench-1`, 16, oursHeaders(profiled));
  const profiledCpuUs = ((cpuMs(profiled.child.pid!) - cpuBefore) * 1000) / profiledRead.total;
  await stopChild(profiled.child);
  const layers = profileByLayer(JSON.parse(readFileSync(profileFile, 'utf8')), profiledCpuUs);

  // 6. Where a read's time goes at 64 connections: the two bare proxies and ours again, each with the same timing
  // wrapper preloaded (bench/server-timing.mjs), in rounds of their own.
  const splitDir = mkdtempSync(join(os.tmpdir(), 'bench-split-'));
  const timed = (name: string) => ({
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${JSON.stringify(join(ROOT, 'bench/server-timing.mjs'))}`.trim(),
    SERVER_TIMING_FILE: join(splitDir, `${name}.json`),
  });
  const oursEnv = timed('ours');
  const timedOurs = await startOurs(upstreamBase, sandbox.fhirBaseUrl, [], oursEnv);
  const splitTargets: SplitTarget[] = [];
  for (const [name, script] of [[BARE, 'bench/bare-proxy.mjs'], [BARE_UNDICI, 'bench/bare-undici-proxy.mjs']] as const) {
    const env = timed(name.replace(/\W+/g, '-'));
    const p = await startChild(SERVER_CPUS, process.execPath, [script, String(await freePort()), String(upstreamPort)], env);
    // the same request to every target, as above
    splitTargets.push({ name, url: `http://127.0.0.1:${p.firstLine}/fhir/Patient/bench-1`, headers: oursHeaders(timedOurs), pid: p.child.pid!, timingFile: env.SERVER_TIMING_FILE });
  }
  splitTargets.push({ name: OURS, url: `http://127.0.0.1:${timedOurs.port}/fhir/Patient/bench-1`, headers: oursHeaders(timedOurs), pid: timedOurs.child.pid!, timingFile: oursEnv.SERVER_TIMING_FILE });
  const split = await timeSplit(splitTargets, SPLIT_CONNECTIONS, SPLIT_ROUNDS);
  for (const x of split) log(`time split, ${x.name}: ${Math.round(x.rps)} req/s, in the server p50 ${x.inServer.p50.toFixed(2)} ms, between requests p50 ${x.between.p50.toFixed(2)} ms, loop delay p50 ${x.loopDelay.p50.toFixed(2)} ms, user ${x.userUs.toFixed(0)} µs, system ${x.sysUs.toFixed(0)} µs`);

  const small = summarise(runs);
  writeFileSync(join(ROOT, 'docs/benchmarks.md'), render({ small, runs, bodies, launches, callbacks, steps, startups, logLine, layers, split, redis: redisUrl !== undefined }));
  log('wrote docs/benchmarks.md');
  process.exit(0);
}

/** The timings in the log once it holds at least `count` (the server writes its log at the end of each event-loop turn); what there is after 5 s. */
async function settledTimings(logFile: string, count: number): Promise<Record<string, number>[]> {
  let t = callbackTimings(logFile);
  for (let i = 0; i < 100 && t.length < count; i++) {
    await new Promise((r) => setTimeout(r, 50));
    t = callbackTimings(logFile);
  }
  return t;
}

/**
 * Per target and connection count: the round with the median req/s (its latencies with it), and its ratios to the
 * bare proxy and to the upstream, each the median over the rounds of the two measured in the same round (a few
 * seconds apart). This machine's speed swings by half from one minute to the next; a ratio of two medians taken from
 * different rounds would compare a fast minute with a slow one.
 */
function summarise(runs: Map<string, Map<number, Small[]>>): Map<string, Map<number, Small & { min: number; max: number; toBare: Paired; toUpstream: Paired; p99OverBare: number }>> {
  const bare = runs.get(BARE)!;
  const direct = runs.get('upstream directly')!;
  return new Map([...runs].map(([name, m]) => [name, new Map([...m].map(([c, xs]) => {
    const byRate = [...xs].sort((a, b) => a.rps - b.rps);
    return [c, {
      ...byRate[Math.floor(byRate.length / 2)]!, min: byRate[0]!.rps, max: byRate.at(-1)!.rps,
      toBare: paired(xs.map((x, r) => x.rps / bare.get(c)![r]!.rps)),
      toUpstream: paired(xs.map((x, r) => x.rps / direct.get(c)![r]!.rps)),
      p99OverBare: median(xs.map((x, r) => x.p99 - bare.get(c)![r]!.p99)),
    }];
  }))]));
}

/** Per-round ratios: their median, lowest and highest. */
interface Paired { median: number; min: number; max: number }
function paired(ratios: number[]): Paired {
  return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}

const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const met = (ok: boolean) => (ok ? 'met' : '**not met**');

function render(r: {
  small: ReturnType<typeof summarise>; runs: Map<string, Map<number, Small[]>>; bodies: (BodyResult & { growth: number; toBare: number })[]; launches: { c: number; r: LoadResult }[];
  callbacks: CallbackResult[]; steps: Map<string, number>; startups: { name: string; runs: number[] }[]; logLine: { name: string; us: number }[]; layers: LayerRow[]; split: SplitRow[]; redis: boolean;
}): string {
  const bareR = r.small.get(BARE)!;
  const smallRows = [...r.small.entries()].flatMap(([name, m]) => CONNECTIONS.map((c) => {
    const x = m.get(c)!;
    const spread = ROUNDS > 1 ? `${round(x.min)}–${round(x.max)}` : 'n/a';
    const toBare = ROUNDS > 1 && name !== BARE ? ` (${x.toBare.min.toFixed(2)}–${x.toBare.max.toFixed(2)})` : '';
    return `| ${name} | ${c} | ${round(x.rps)} | ${spread} | ${ms(x.p50)} | ${ms(x.p99)} | ${x.toBare.median.toFixed(2)}${toBare} | ${x.toUpstream.median.toFixed(2)} | ${x.cpuUs === undefined ? 'n/a' : round(x.cpuUs)} |`;
  }));
  const bodyOf = (target: string, body: string) => r.bodies.find((b) => b.body === body && b.target === target)!;
  const bodyRows = r.bodies.map((b) => `| ${b.target} | ${b.body} | ${round(b.mbPerSecond)} | ${b.toBare.toFixed(2)} | ${round(b.seconds, 1)} | ${b.rssBefore === undefined ? 'n/a' : round(b.rssBefore)} | ${b.peakRss === undefined ? 'n/a' : round(b.peakRss)} | ${Number.isFinite(b.growth) ? `+${round(b.growth)}` : 'n/a'} |`);

  const goals: string[] = [];
  for (const [name, min] of [[OURS, 0.85], ...(r.redis ? [[OURS_REDIS, 0.7]] : [])] as [string, number][]) {
    for (const c of [16, 64]) {
      const x = r.small.get(name)!.get(c)!;
      const extra = x.p99OverBare;
      const p99Goal = name === OURS;
      const spread = ROUNDS > 1 ? ` (rounds ${x.toBare.min.toFixed(2)}–${x.toBare.max.toFixed(2)})` : '';
      goals.push(`| small read, ${name.replace('smart-bff, ', '')}, ${c} connections | ≥ ${min}× the bare proxy's req/s${p99Goal ? '; p99 ≤ bare + 2 ms' : ''} | ${x.toBare.median.toFixed(2)}×${spread}; p99 ${extra >= 0 ? `+${ms(extra)} ms over` : `${ms(-extra)} ms under`} the bare proxy's | ${met(x.toBare.median >= min && (!p99Goal || extra <= 2))} |`);
    }
  }
  for (const body of BODIES) {
    const x = bodyOf('smart-bff, links rewritten', body.name);
    goals.push(`| ${body.name}, links rewritten | ≥ 0.8× the bare proxy's MB/s; peak RSS growth < 64 MB | ${x.toBare.toFixed(2)}×; +${round(x.growth)} MiB | ${met(x.toBare >= 0.8 && x.growth < 64)} |`);
  }
  const [prod, dev] = r.startups.map((s) => median(s.runs));
  goals.push(`| production start-up | ≤ 400 ms median | ${round(prod!)} ms | ${met(prod! <= 400)} |`);
  goals.push(`| development start-up (sandbox) | ≤ 1.5 s median | ${round(dev!)} ms | ${met(dev! <= 1500)} |`);
  goals.push(`| callbacks against the sandbox | reported | ${r.callbacks.map((c) => `${round(c.perSecond, 1)}/s at concurrency ${c.concurrency}`).join(', ')} | — |`);

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const ourCpu = r.small.get(OURS)!.get(16)!.cpuUs;
  const bareCpu = bareR.get(16)!.cpuUs;
  const stepNames: Record<string, string> = {
    pending: 'the pending launch taken (single use)',
    discovery: 'discovery (cached)',
    token_request: 'the token request, to the response headers (the sandbox\'s work and the network)',
    token_response: 'the token response read, its id_token\'s claims checked (openid-client)',
    id_token_signature: 'the id_token\'s signature checked (the JWKS fetched at first use, then cached)',
    token_store: 'the token set stored',
    session: 'the session created (new id) and saved',
    total: 'the whole callback, as the server saw it',
  };
  return `# Benchmarks

Reproduce with \`npm run bench\` (about ${QUICK ? 4 : 15} minutes; it needs \`wrk\`, and includes nginx and Redis when \`nginx\`
and \`redis-server\` are installed: \`apt-get install wrk nginx-light redis-server\`). \`BENCH_SECONDS\` sets each load
measurement, \`BENCH_ROUNDS\` the rounds of small reads, \`BENCH_QUICK=1\` makes a small smoke run, \`BENCH_PIN=0\` turns
CPU pinning off, \`BENCH_NODE=24\` runs it all on Node 24 (a major, fetched with \`npx -y node@24\`, or the path of a
binary). Everything below comes from one run, on one machine, side by side; this page is written by it.

Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version},
with \`${process.env.BENCH_COMMAND ?? 'npm run bench'}\`. Load from wrk (one thread), ${DURATION} s per measurement after a warm-up at each
connection count, ${ROUNDS} interleaved round${ROUNDS === 1 ? '' : 's'} per row. ${pinning[0]!.toUpperCase()}${pinning.slice(1)}.

## Goals (issue 13)

| goal | target | measured | |
|---|---|---|---|
${goals.join('\n')}

## Proxied small reads: \`GET /fhir/Patient/<id>\`

A fast local upstream serves one Patient of about 1 KB with keep-alive, so the proxy is the bottleneck. The bare Node
proxy (\`bench/bare-proxy.mjs\`, the issue's baseline) forwards with a bearer token over keep-alive with Node's own
client (\`http.request\` and a keep-alive \`http.Agent\`) and does nothing else. "Bare proxy on undici" is the same
proxy on the client ours uses, undici's Agent driven through \`dispatch\` (\`bench/bare-undici-proxy.mjs\`): a
reference that shows what the client alone is worth; the ratios and goals are to the bare Node proxy.
"smart-bff" is the real app after a real launch against the sandbox EHR (session cookie, launch context, access
token, the anti-forgery header, header allow-lists both ways, link rewriting, metrics, and the \`proxy.request\` log
line at \`info\`, written to /dev/null through the server's own log destination, as in production) with the token bound to that upstream,
run with the Node options production starts it with (\`${START_NODE_ARGS.join(' ')}\`, from \`npm start\`) and, as
production's server.ts does, the idle heap warmer (\`src/idle-heap-warmer.ts\`, \`HEAP_KEEP_WARM\`); the bare proxies run with
Node's defaults.
Every target gets the same request, as the app's page sends it: the session cookie, \`X-CSRF\` and
\`X-SMART-Context\` (the upstream, the bare proxy and nginx ignore them; a proxy still reads them).
Each row is the round with the median req/s; "range" is the lowest and highest of the rounds. The ratios are the
median, over the rounds, of the row's req/s to the other target's in the same round (in brackets: the lowest and
highest of those), since this machine's speed drifts from minute to minute; the goals use the same ratios, and the
median of the rounds' p99 differences. Latencies in
milliseconds as wrk measures them. "CPU µs/req" is the server process's own CPU time (user + system) divided by the
requests it answered.

| target | connections | req/s | range | p50 | p99 | ratio to bare proxy | ratio to upstream | CPU µs/req |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
${smallRows.join('\n')}

## Large bodies

Each body is downloaded whole by one client; MB/s of the body as received (1 MB = 2^20 bytes), the median of
${BODY_ROUNDS} download${BODY_ROUNDS === 1 ? '' : 's'}; the ratio is the median of each round's to the bare proxy's in the same round. The Bundle has a \`fullUrl\` and a reference in every entry pointing at the
upstream's base, so rewriting has work on every entry; the NDJSON likewise in every line. RSS in MiB: the serving
process before the transfer and its peak during it (the kernel's high-water mark, reset just before); "growth" is
the largest peak-minus-before of the downloads.

| target | body | MB/s | ratio to bare proxy | seconds | RSS before | peak RSS | growth |
|---|---|---:|---:|---:|---:|---:|---:|
${bodyRows.join('\n')}

## Launches and callbacks

The sandbox EHR (oidc-provider and its FHIR server) runs in a process of its own${pinning.startsWith('no') ? '' : ', on the load CPUs'}.

| step | concurrency | per second | p50 ms | p99 ms |
|---|---:|---:|---:|---:|
${r.launches.map(({ c, r: x }) => `| \`/launch\` → redirect to authorize (discovery cached) | ${c} | ${round(x.rps)} | ${ms(x.p50)} | ${ms(x.p99)} |`).join('\n')}
${r.callbacks.map((x) => `| \`/callback\`: code exchange, id_token check, token set and session stored (${x.callbacks} codes) | ${x.concurrency} | ${round(x.perSecond, 1)} | ${ms(x.p50)} | ${ms(x.p99)} |`).join('\n')}

Where a callback's time goes, one at a time (the median of each step over the concurrency-1 run, from the
\`timing_ms\` of the server's \`launch.complete\` log lines):

| step | median ms |
|---|---:|
${r.steps.size ? [...r.steps].map(([step, v]) => `| ${stepNames[step] ?? step} | ${v.toFixed(2)} |`).join('\n') : '| (this server logs no timing_ms) | n/a |'}

## Start-up

From spawning \`node ${START_NODE_ARGS.join(' ')} dist/server.js\` (what \`npm start\`, the Procfile and App Engine's
entrypoint run) to the first \`200\` from \`/healthz\`, polled every 5 ms; ${STARTS} runs each, not pinned.

| configuration | median ms | fastest ms | slowest ms |
|---|---:|---:|---:|
${r.startups.map((s) => `| ${s.name} | ${round(median(s.runs))} | ${round(Math.min(...s.runs))} | ${round(Math.max(...s.runs))} |`).join('\n')}

## The log line

The proxy writes one \`proxy.request\` line per call, at \`info\`. Its cost by how it is built and where it goes, from
\`bench/log-line.ts\` (on the servers' CPU, alone): the server's own logger writing that line 100,000 times, with a turn
of the event loop every five lines, as a busy server at 16 connections has; CPU time of the whole process (every
thread) per line, the median of five rounds. The first row is the loop and its turns alone. The proxy puts its line
together by hand (\`flatInfoLine\`, the fourth row); the other rows build it with pino (\`logger.info\`), as every
other line of the server is.

| how the line is built, and where it goes | CPU µs per line |
|---|---:|
${r.logLine.map((l) => `| ${l.name} | ${l.us.toFixed(1)} |`).join('\n')}

## Where the time goes

A CPU profile of ours under the 16-connection read (a run of its own with the profiler on, sampling every 200 µs;
\`BENCH_CPU_PROFILE=file\` makes \`bench/bff-server.ts\` write one; open it in Chrome DevTools), each sample's self time
given to the layer of the code it was in. µs/req is that share of the profiled run's own CPU time per request
(measured as in the table above), so the profiler's cost is in every layer a little.${ourCpu !== undefined && bareCpu !== undefined ? ` Without the profiler, in the table above: ${round(ourCpu)} µs per proxied read against ${round(bareCpu)} µs for the bare proxy.` : ''}

| layer | share | µs/req |
|---|---:|---:|
${r.layers.map((l) => `| ${l.layer} | ${(l.share * 100).toFixed(1)} % | ${l.usPerRequest.toFixed(1)} |`).join('\n')}

## Where a read's time goes at ${SPLIT_CONNECTIONS} connections

The two bare proxies and ours (memory store) again, each a new instance with the same timing wrapper preloaded
(\`bench/server-timing.mjs\`), in ${SPLIT_ROUNDS} interleaved round${SPLIT_ROUNDS === 1 ? '' : 's'} of ${DURATION} s at ${SPLIT_CONNECTIONS} connections; each figure is the median over
the rounds (\`bench/time-split.ts\`). What each server sees of a request's time (milliseconds):

- *in the server*: from Node's \`request\` event to the response's last byte handed to the kernel. For a proxy, mostly the
  wait for the upstream's answer, which is read in a later turn of the event loop;
- *between requests*: from a response's last byte to the next request on the same connection. wrk answers at once, so
  this is mostly the time the next request waits in the socket until the server's loop reads it;
- *loop delay*: how late a 1 ms timer fires, about the length of one busy turn of the loop;
- *p99 in turns*: wrk's p99 divided by the loop delay's p50: how many turns the slowest requests take;
- *CPU*: user time (JavaScript, the HTTP parsers, the engine and its garbage collector) and system time (the kernel:
  sockets, epoll) per request.

| target | req/s | p50 | p99 | in the server p50 / p99 | between requests p50 / p99 | loop delay p50 / p99 | p99 in turns | CPU user µs/req | CPU system µs/req |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${r.split.map((x) => `| ${x.name} | ${round(x.rps)} | ${ms(x.latency.p50)} | ${ms(x.latency.p99)} | ${ms(x.inServer.p50)} / ${ms(x.inServer.p99)} | ${ms(x.between.p50)} / ${ms(x.between.p99)} | ${ms(x.loopDelay.p50)} / ${ms(x.loopDelay.p99)} | ${(x.latency.p99 / x.loopDelay.p50).toFixed(1)} | ${round(x.userUs)} | ${round(x.sysUs)} |`).join('\n')}
${splitSummary(r.split)}
${ANALYSIS}`;
}

/** What the time split says of ours against the bare proxy on the same HTTP client, in this run's numbers. */
function splitSummary(split: SplitRow[]): string {
  const ours = split.find((x) => x.name === OURS);
  const ref = split.find((x) => x.name === BARE_UNDICI);
  if (!ours || !ref) return '';
  const turns = (x: SplitRow) => x.inServer.p50 / x.loopDelay.p50;
  return `
In this run, ours used ${round(ours.userUs)} µs of user CPU per read against ${round(ref.userUs)} µs for the bare proxy on undici
(${(ours.userUs / ref.userUs).toFixed(2)}×), and ${round(ours.sysUs)} against ${round(ref.sysUs)} µs of system time. Its time in the server was
${turns(ours).toFixed(1)} loop delays at the median, against ${turns(ref).toFixed(1)} for the bare proxy on undici, and its p99 ${(ours.latency.p99 / ours.loopDelay.p50).toFixed(1)} turns
against ${(ref.latency.p99 / ref.loopDelay.p50).toFixed(1)}.`;
}

/** What the profiles showed and what was done about it (kept by hand; the numbers above are the run's). */
const ANALYSIS = `
## What was done, and what is in the way

Kept by hand; the numbers above are this run's.

- **Start-up.** Parsing JavaScript was most of it. The bundle (\`scripts/bundle-server.mjs\`) is minified (white space
  and syntax; names kept) and leaves out zod's messages in other languages and iconv-lite's charset tables
  (\`scripts/bundle-stubs/\`): 2.9 MB to parse at every start became 1.4 MB. The large caches (the memory token
  store's slots for every session's contexts, pending launches, the signed-cookie cache, discovery, the replay
  guard, the session index) are made at their first use (\`src/lazy-lru.ts\`): lru-cache allocates a cache's whole
  capacity when it is made.
- **The proxy's own steps.** One \`writeHead\` carries every header of a \`/fhir\` answer (no \`setHeader\` calls
  before it); the \`proxy.request\` line is written without a child logger per call; a session served from the read
  cache is not touched again (the call that read it from the store did, through the same throttle); the target URL
  is built without the URL parser when the path holds only characters the parser copies as they are (a property
  test holds both to the same result); link rewriting works on the body's bytes, with one copy instead of three. A
  call whose session and token set are in memory waits for no promise before its upstream request: the session is
  taken from the read cache, the token set from memory and the HTTP client as made, each without a promise
  (\`ProxySessions.atHand\`, \`TokenRefresher.freshAtHand\`, \`UpstreamClient.made\`), and any other call goes the way it
  went. Measured as described under "Noise" below, that took 4–5 % off the CPU a read costs. Such a call now runs
  with no async step of its own either: the \`/fhir\` route hands a session at hand straight to the proxy, and the
  proxy sends a bodiless call whose token set and HTTP client are at hand at once and answers it from the response's
  callback; any other call takes the same steps with their waits, and a 401 is retried the same way on both
  (\`src/proxy/fhir-route.ts\`, \`src/proxy/fhir-proxy.ts\`). An async function and its await cost more in the server
  than they look: the route's alone was about 3 % of ours' CPU per read (medians 0.966 and 0.980, six pairs each
  way), the proxy's about 2 % (0.986 and 0.973). The call's two metrics
  updates (prom-client's \`inc\` and \`observe\`, which hash and check their labels each time) are now written into a
  fixed-size batch that is applied to prom-client when it is full and before every read of the metrics
  (\`src/observability/proxy-call-batch.ts\`), so a scrape sees exactly what it did. Leaving the updates out saved
  about 3 % of ours' CPU per read, and the batch saves about as much (three comparisons, each both ways). In a
  loop the same two calls cost about 0.6 µs; made once per call among the call's other work, about 3 µs.
- **The proxy's HTTP client.** Requests to the EHR go through undici's Agent, driven through \`dispatch\`
  (\`src/proxy/upstream-client.ts\`), instead of Node's \`http.request\` and a keep-alive \`http.Agent\`: no
  ClientRequest and no IncomingMessage stream per call. The row "bare proxy on undici" shows what that client alone
  is worth to a proxy that does nothing else; its CPU time per read is the one to compare with ours.
- **The log line.** The server's log went through pino's asynchronous destination, which hands each write to
  libuv's thread pool: on a busy server, a thread switch per proxied call (\`perf stat\` counted 0.87 context
  switches per read for ours, 0.18 for the bare proxy). It now gathers the lines of one event-loop turn and writes
  them with one synchronous write when the turn ends (\`src/log-destination.ts\`): 0.07 context switches per read,
  and one write for about five lines. "The log line" above shows each way's cost. An earlier round tried this and
  dropped it on a req/s comparison that the machine's noise swamped; counting context switches and system calls
  showed what it saves. The proxy's \`proxy.request\` line (one per call, with the same eight flat fields each time)
  is put together by \`flatInfoLine\` (\`src/log.ts\`) instead of by pino: the bytes pino writes for the same fields,
  redacted the same way (a property test holds the two to the same output on random fields), into the same
  destination. In scratch copies side by side, the line as pino built it cost about 10 % of ours' CPU per read
  (ours against ours without the line, four pairs each way), and the same line put together by hand about 7 %.
  A round before, building pino's line when the turn ended, with the turn's other lines, had taken about 3 % off;
  putting it together by hand, built at once, takes about 4 % off that (medians 0.967 and 0.952, eight pairs each
  way), and the deferral is gone.
- **Link rewriting.** The rewriter searched each chunk as bytes: a Buffer search and two views per match, and a
  Bundle or an NDJSON file has a match or two in every entry, so the views cost more than the search. It now reads
  each chunk as latin1 text, where a byte is one character, and works with string search and slices; the output,
  turned back into bytes as latin1, is byte for byte the same (a property test holds it to a plain
  regular-expression reference on random bodies and chunkings). On the bench's Bundle, alone on one CPU, it went
  from about 170 to about 1,000 MB/s of CPU time, and rewriting now costs about what streaming without it does (the
  two "smart-bff" rows). Before this change the large-body goals were met only when the bare proxy was slow, as it is
  on the Bundle in most runs: in a run before this change where it was not (395 MB/s), ours with rewriting reached 0.48×.
  A later round took the Transform stream out: the proxy calls the rewriter from the upstream body's callbacks
  (\`StreamingRewrite\` through \`pipeTo\`, \`src/proxy/upstream-client.ts\`), so the stream's own buffering and
  back-pressure no longer run for every chunk. That matters because a chunked NDJSON body reaches the proxy in about
  8,200 pieces of every size for 256 MB (a tenth of them under 120 bytes), so the cost per chunk counts as much as the
  cost per byte. Each chunk is now searched only for the needles it holds, and for the JSON-escaped form only when it
  has a backslash: looking for that form was a scan of every chunk that almost never found anything. The tail that
  may start a needle is found without making a string per position. Alone on one CPU the rewriter went from about
  1,400 to about 2,000 MB/s on the bench's NDJSON. In the proxy, side by side with curl as the client, NDJSON with
  rewriting went from about 430 to about 495 MB/s, and the server's user CPU for 256 MB from 0.35–0.42 s to
  0.27–0.32 s. One read of the upstream's socket often holds several pieces of a chunked body, and undici hands each
  to the proxy as it parses them, in the same turn of the event loop; each became a search, a buffer, a write and a
  chunk of its own for the browser (about 11,000 for the bench's 256 MB of NDJSON). Now the pieces of one turn go
  through the rewriter together when the turn's callbacks are done, and out as one write (\`pipeTo\`): about 4,800
  chunks for the same body, and the carried tail is kept as text instead of a buffer copied in front of the next
  chunk. Side by side (two downloads at once, one from each build, the server CPU each used, six or eight pairs each
  way), ours with rewriting used about 3 % and 14 % less CPU for 256 MB of NDJSON (the two orders: medians 0.966 and
  1/1.164), and about the same for the Bundle (1.024 and 1/1.102), whose pieces come one to a turn; a client like the
  bench's used about 20–25 % less CPU to read the NDJSON.
- **The small-read goals.** All four are met in this run, the first with the idle heap warmer ("Tried and kept: the idle
  heap warmer", below): ours reached 0.92× the bare Node proxy at 16 connections and 1.10× at 64, and with Redis 0.82×
  and 0.99×. Ours' p99 was 0.28 ms over the bare proxy's at 16 connections (the five rounds' differences: −0.67, −0.52,
  +0.53, +0.59 and +0.28 ms) and 1.83 ms under it at 64 (+3.9, −29.8, −24.5, +3.1 and −1.8 ms). In the run before,
  without the warmer, both p99 goals were missed, by 0.39 and 0.96 ms (2.39 ms over at 16 connections, 2.96 ms over at
  64). The 16-connection p99 is still near the line: measured apart, the warmer's gain there was within the noise
  ("Tried and kept: the idle heap warmer"), and the rounds after a pause decide it ("The p99 at 16 connections, after a
  pause and back to back", below), so a run can still miss it. On Node 22 and 24, which the platforms run, runs before
  the warmer had other goals fall either side of the line ("On Node 22 and 24", below). The ten runs of the same path
  before this one measured 0.87×, 0.88×, 0.87×, 0.98×, 0.77×, 0.82×, 0.76×, 0.90×, 0.91× and 0.88× at 16 connections,
  with the p99 goal there met in three of them, and at 64 connections p99s from 22 ms under the bare proxy's to 23.9 ms
  over it (medians of their rounds), so on this machine one run decides little. Closer to steady is the CPU a read costs
  ("CPU µs/req"): here 107 and 94 µs for ours at 16 and 64 connections (98 and 106 in the run before), 91 and 103 µs for
  the bare Node proxy (87 and 107 then), 63 and 58 µs for the bare proxy on undici. Side by side (as under "Noise"),
  ours cost 1.22× the bare proxy's CPU per read in a quick stretch of the machine and 1.4–1.6× in a slow one, in an
  earlier round: a slow stretch costs ours more than it costs the bare proxy. The difference is our own steps, which the
  issue requires to stay: the session and token lookups, the anti-forgery check, the header allow-lists both ways, link
  rewriting, the upstream timeout, the metrics, the extra response headers, and the log line.
- **Where ours' CPU goes beyond the bare proxy on undici.** Scratch copies of ours, side by side as under "Noise", each
  a step further from the bare proxy on undici, before the log line was put together by hand (medians of four or five
  pairs each way): ours' process answering \`/fhir\` the way the bare proxy on undici does, with none of our steps, cost
  about 1.1–1.2× the bare proxy on undici (the larger process: its modules, its heap); adding the route's steps (request
  id, anti-forgery header, session from the read cache) about 1.1× more; with the proxy's context and token lookups and
  target URL as well (not measured on their own), its header allow-lists both ways cost about 1.09× more; the rest of
  ours (the log line, the async steps, link rewriting, the upstream timeout and client-abort listener, the metrics)
  about 1.2× more. Taken out one at a time, the \`proxy.request\` line was about 10 % of ours' CPU per read, the route's
  and the proxy's async steps about 3 % and 2 %, the timeout with its listener about 2 %, link rewriting 1–3 %, the
  metrics batch nothing measurable. Putting the line together by hand and taking the async steps off the fast path
  (above) took about 9 % off in all. Each remaining step is a few microseconds. A library's code called once per request
  among the request's other work costs several times what it costs in a loop (the metrics: 0.6 µs in a loop, about 3 µs
  in the server; pino's line: about 1.4 µs and the redaction 0.5 µs in a loop, 7–10 µs in the server), so the gains came
  from running less code per call, not from faster code. The same holds on Node 24 (what Heroku and App Engine can run):
  side by side, ours and the bare proxy each cost the same CPU per read on Node 24 as on Node 20. Measured in scratch,
  neither the libraries nor the heap alone are that 1.1–1.2×: the bare proxy on undici with ours'
  libraries loaded and never used (Express, openid-client, jose, pino, prom-client, zod, lru-cache and undici's whole
  package) cost about 2 % more CPU per read (medians 0.966 against 0.982 for two identical copies, eight pairs each
  way), and with some 30 MB of objects kept alive, nothing measurable (0.993, five pairs each way).
- **What a read allocates.** A sampling heap profile that keeps collected objects (16 connections): ours allocates
  about 24 KB per read, the bare proxy on undici about 13 KB. Of the difference, the log line is about 2.4 KB (pino
  builds it by joining strings), the proxy's per-call closures and promises about 3.7 KB, the header allow-lists
  0.8 KB, the request id 0.6 KB (\`randomUUID\` joins its parts too), and Node's HTTP server most of the rest (the
  longer header block). Allocation is not what costs, though: 3 KB more short-lived garbage per read, added in a
  scratch copy, changed ours' CPU per read by nothing measurable (eight pairs each way), and a scavenge every 500 or
  so reads takes about 1 ms, as the bare proxy's do.
- **Tried and not kept.** One timer for all of the proxy's upstream timeouts instead of a Node timer per call (a
  queue of deadlines of one duration, in the order they were started): no gain side by side (ten pairs each way).
  With a JavaScript Set as its queue, the proxy's scavenges took about fifteen times as long (18 ms instead of 1 ms);
  with a linked list they did not, but the CPU per read did not change either. The header allow-lists walked with
  \`for…in\` instead of \`Object.entries\` (no array per header): side by side, medians 1.074 and 1.016 in one
  comparison and 0.983 and 0.994 in the next (six and eight pairs each way), nothing beyond the noise. Without link
  rewriting, a turn's pieces joined into one write (\`Buffer.concat\`) as with it: ours' CPU for 256 MB of NDJSON
  was two to three times as much, with some 27 full garbage collections in two downloads where there had been none
  (likely because each joined buffer is memory outside the heap, which V8 counts when it decides on a full
  collection); passed on as they come, as now, the pieces cause none.
- **The p99 follows the CPU a read costs.** A scratch copy of the bare Node proxy that burns 20 µs of CPU per call, so
  that a read costs it about what one costs ours, has ours' p99 at 16 connections: in eight interleaved rounds of 5 s,
  in a quick stretch of the machine, the medians were 3.13 ms for the bare proxy (84 µs of CPU per read), 3.67 ms for
  the burning copy (106 µs) and 3.56 ms for ours (96 µs), so ours was 0.43 ms over the bare proxy's. Ours has no tail of
  its own beyond what its CPU explains. In a slow round the p99s scatter (in one: 10.8 ms for the bare proxy, 9.7 for a
  copy burning 20 µs, 14.9 for ours), and a run's p99 goal is decided by how many of its rounds fall in such stretches.
  The same at 64 connections: in eight interleaved rounds after the run four before this one, the burning copy (about
  113 µs of CPU per read) had p99s from 10.7 to 27.9 ms, median 17.2, and ours (about 97 µs) from 9.5 to 42.4 ms, median
  11.6. In five interleaved rounds of 5 s at 64 connections in scratch, just before the run three before this one, the
  median p99s were 20.5 ms for the bare proxy, 15.3 ms for ours before that run's changes and 13.6 ms for ours after
  them, each with rounds from about 11 ms to 24–52 ms. Three runs before this one, ours' p99 at 64 connections was over
  the bare proxy's in every round, by 300 ms in its first; the run after it warmed every target up at each connection
  count first, and ours' p99 was over the bare proxy's in every round still, by 9.7 to 152 ms; in the run before this
  one, the first with the young generation capped, from 12.0 ms under it to 61.0 ms over, 2.96 ms at the median; in this
  run, with the idle heap warmer as well, from 29.8 ms under it to 3.9 ms over, 1.83 ms under at the median. Those
  scratch rounds left each target idle for a few seconds between its measurements; the bench's rounds leave it idle for
  about 25 s, and that is where ours' tail comes from (below).
- **The p99 at 64 connections, traced.** "Where a read's time goes" splits each request's time as the server sees it.
  Ours needs no more turns of the event loop per request than the bare proxy on undici: its time in the server (mostly
  the wait for the upstream's answer, read in a later turn) was 1.6 loop delays at the median in this run, against 1.7
  (1.9 against 3.9 in the run before). There is no extra turn or queue in ours to remove at the median: its turns are
  longer because each request in them costs more CPU, and every latency grows with them. With 64 requests in flight each
  one waits for the others' turns, so the CPU gap shows in p99 as well as in req/s: a p99 within 2 ms of the bare
  proxy's at 64 connections needs a read that costs about what the bare proxy's does. The bare Node proxy, on Node's own
  client, takes fewer and longer turns: its slowest requests took 5.9 turns in this run (5.9 in the run before), against
  6.7 for ours and 6.4 for the bare proxy on undici (12.8 and 17.4 before), in turns of 2.17 ms at the median against
  2.16 and 1.37: the two servers on undici have the longer tails. (In the split's own rounds, in which each server waits
  about 10 s between its measurements, the p99s were 14.5 ms for ours, 12.9 ms for the bare Node proxy and 8.74 ms for
  the bare proxy on undici, against 29.4, 16.3 and 17.5 ms in the run before: at 64 connections p99 swings between
  rounds by more than most differences between the servers; in this run's small-read rounds, ours' p99 was from 29.8 ms
  under the bare proxy's to 3.9 ms over it, in the run before from 12.0 ms under it to 61.0 ms over it.) In a scratch
  copy of the bare proxy on undici that timed each request, the wait for the upstream's response headers held nearly all
  of the tail (its p99 13.4 ms of the whole request's 13.5 ms). undici 7.30 writes a request on a reused keep-alive
  connection only once the loop's turn has read everything else (\`setImmediate\`, its fix for GHSA-35p6-xmwp-9g52, so
  that bytes the EHR sent unasked are seen before the next request goes out); a scratch copy of undici without that wait
  did not change the bare proxy on undici's p99 beyond the noise, and the wait is a protection this proxy keeps. Garbage
  collection is not the answer either: measured side by side at 64 connections, ours and the bare proxy collect about
  equally (a scavenge every 480 to 600 requests, 1.1–1.4 ms each), and a young generation of 1, 4, 32 or 64 MiB instead
  of V8's default changed ours' CPU per read or p99 by nothing beyond the noise, measured back to back. After a pause
  its size does matter (below).
- **The p99 at 64 connections comes from the seconds after a pause.** In the rounds above, each target waits while the
  others are measured: about 25 s before its 64-connection run. In scratch, ours' p99 at 64 connections just after such
  a pause was about twice what it was back to back, and the bare Node proxy's barely moved (four cycles, after the
  pause: ours 113, 210, 62 and 48 ms, the bare proxy 13.6, 16.9, 31.4 and 14.0 ms; back to back: ours 12.7, 20.1, 15.9
  and 12.4 ms, the bare proxy 15.5, 25.9, 8.6 and 9.6 ms). Counted every 250 ms, ours' CPU per read in the first one to
  two seconds after a pause was two to four times its steady figure in those cycles (about 400 µs falling to 100), the
  bare proxy's about 1.3 times; back to back, ours' was back to steady within half a second. In four later cycles the
  first 1.5 s cost ours 1.1–1.6 times its steady figure. A CPU profile of the first 1.5 s after a pause, against 1.5 s
  of steady load (three of each, sampling every 200 µs, per read), shows no step of ours that stands out: every layer
  cost more, and about alike. The kernel's socket writes (\`writev\`) cost 1.7 times as much, undici's \`dispatch\` 2.1
  times, our own functions about twice, and garbage collection five times. That points at memory and caches gone cold
  during the pause, which cost a process more the more memory it touches. Ours touched more: under load its young
  generation (where each request's short-lived objects are made) held 32 MB of memory, V8's cap here (two semi-spaces
  of 16 MB), and the bare proxy's 16 MB, though each allocates about the same per read (a sampling heap profile at 64
  connections: 22.4 KB for ours, 23.8 KB for the bare Node proxy). Capped at 2 × 8 MB (\`--max-semi-space-size=8\`),
  ours' p99 after a pause came down ("Tried and kept", below). A larger young generation does not help: with
  \`--min-semi-space-size=16\` the extra scavenges after a pause (about 120 in the run instead of 80) went away, and the
  slow seconds did not. \`--no-memory-reducer\`, alone or with \`--no-flush-bytecode\` and \`--no-flush-baseline-code\`,
  changed them by nothing beyond the noise (the first 1.5 s over the rest, medians of four cycles: 1.23 without the
  flags, 1.30 and 1.35 with them), and V8's trace showed a few deoptimizations after a pause, not a recompilation. The
  page faults the system counts do not tell the two servers apart either: this VM's kernel pages out memory left
  untouched (DAMON), and the first run after a pause took about 9,000–11,000 minor faults in both, against a few
  hundred back to back. Ours also holds more than the bare proxy besides (its modules, caches and compiled code: about
  21 MB of older objects against 6 MB, and 2.1 MB of code against 0.9). A deployed BFF often meets a burst after a
  quiet minute, so this tail is not only the bench's.
- **Tried and kept: the young generation capped.** Production starts the server with \`--max-semi-space-size=8\` (\`npm
  start\`, the \`Procfile\` and App Engine's entrypoint: one command, which a test keeps the same and this bench reads),
  and the bench runs ours with it; docs/deploy.md ("Memory") says why. Node's own cap grows with the machine's memory
  (2 × 16 MB here on Node 20 and 22, 2 × 32 MB on Node 24), and ours' traffic grows the young generation that far. In
  scratch, the three servers in turn at 64 connections for 5 s after each 25 s pause (so each waited 25–35 s), in
  batches of twelve cycles, the median p99s after a pause were: 22.3 ms capped against 35.8 ms uncapped (the bare Node
  proxy 20.5); in a batch of seven, 22.9 against 29.0 (bare 18.7); in a later batch of twelve, in a slower stretch of
  the machine, 40.5 against 91.1 (bare 28.7). A cap of 2 × 4 MB was no better than 2 × 8 MB (33.3 against 28.4 ms, bare
  18.0, twelve cycles). Under steady load the cap costs nothing measurable: side by side (as under "Noise", six pairs
  each way), uncapped against capped CPU per read was 1.016 at 64 connections and 1.004 at 16 (and 1.014 and 0.990
  against 2 × 4 MB). A capped young generation is collected twice as often, and that does not lengthen the tail at 16
  connections either: in ten interleaved rounds of 5 s (each server idle about 10 s between its runs), the median p99s
  were 5.07 ms capped, 6.71 ms uncapped and 3.97 ms for the bare Node proxy, at 93.2, 92.5 and 81.6 µs of CPU per read.
  In the run before this one, the first with the cap, ours' p99 at 64 connections was 2.96 ms over the bare proxy's at
  the median of the rounds, against 23.9 ms in the run before that and 23.2 ms in the one before that. The bare proxies
  run with Node's defaults; under this load the bare Node proxy's young generation held about 16 MB of memory.
- **The p99 at 16 connections, after a pause and back to back.** Measured in scratch before the idle heap warmer: ours
  (with the start command's options) and the bare Node proxy, each idle about 25 s and then loaded at 16 connections for
  5 s ("after a pause", as in this bench's rounds), then again at once for 5 s ("back to back"), in rotating order, 26
  cycles in five batches. Back to back, ours' p99 was 0.22 ms under the bare proxy's at the median of the cycles'
  differences (4 of the 26 over 2 ms); after a pause it was 1.15 ms over it (11 of the 26 over 2 ms). The medians of the
  p99s were 4.38 ms back to back and 7.28 ms after a pause for ours, 4.21 and 5.27 ms for the bare proxy. So the
  16-connection goal, too, is decided by the seconds after a pause: with nearly half of the rounds over 2 ms, the median
  of a run's five lands over it in about two runs of five, as in the run before this one and not in the three before it.
  What a pause costs, counted every 250 ms: at the first collection after it V8 shrinks the young generation (from 16 MB
  to 1–4 MB) and grows it back step by step over the next seconds (to 4, 8, then 16 MB), on fresh pages, with two to
  four times as many scavenges as back to back meanwhile. On this VM a fresh page costs 12–17 µs to fault in, idle or
  not (48 MB newly allocated and touched: some 12,300 faults in 150–215 ms). Ours took 3,000–4,000 page faults in the
  first second after a pause and the bare proxy 2,900–9,600 (back to back, ours about 270 in 4 s and the bare proxy,
  whose young generation is not capped, about 5,600), and in the first 250 ms ours' CPU per read was 180–760 µs and the
  bare proxy's 140–970 µs, against about 90 and 80 µs steady. Sixteen requests that wait for each other's turns wait
  longer the more each costs, so the same stall lengthens ours' tail more. Tried and not kept: a young generation of
  fixed size (\`--min-semi-space-size=8\` beside the cap), so that V8 cannot shrink it, with and without
  \`--no-memory-reducer\`. V8 still gave back its memory at the first collection after a pause (0.4–6.3 MB of the 14 MB
  it held), and ours then took 4,400–8,800 page faults in its first second (3,700–16,500 with \`--no-memory-reducer\`).
  Its p99 after a pause was no better: median 6.5 ms against 6.8 ms for ours with the cap alone, in eight cycles (with
  \`--no-memory-reducer\` as well, 5.2 ms against 9.5 ms in four cycles, too few to tell). With the cap and
  \`--no-memory-reducer\` alone, the faults after a pause were as they were (3,300–3,800) and so was the p99 (median
  9.7 ms against 8.9 ms, five cycles in a slow stretch). Tried and not kept, after the run before this one:
  \`--single-threaded-gc\`, so that the collector's helper threads do not share the server's one CPU. Ours used about
  3.5 % less CPU per read (side by side, medians 1.047 and 1.022, six pairs each way), but its p99 after a pause was no
  better (median 9.9 ms against 7.5 ms with the cap alone and 6.8 ms for the bare proxy, eight cycles). Nor was
  \`--semi-space-growth-factor=8\` beside the cap, so that the young generation grows back to the cap in one step
  instead of doubling: it was back at 16 MB a quarter to half a second into the load, but as many page faults or more
  came in that time (2,300–5,400 in the first half second, against 2,600–3,000 with the cap alone), and ours' p99 after
  a pause was no better (median 11.0 ms against 7.9 ms with the cap alone and 8.2 ms for the bare proxy, eight cycles).
- **On Node 22 and 24, the platforms' Nodes.** This page is measured on this machine's Node 20; App Engine runs Node 22
  (app.yaml) and Heroku runs Node 24 (the newest that \`engines.node\` allows). \`BENCH_NODE\` runs the bench on another
  major. Whether V8 shrinks the young generation after a pause depends on the major: a script that allocates for 3 s,
  waits 25 s and allocates again, with the start command's cap, found it at 1–2 MB on Node 20 and 22 (shrunk during the
  pause or at the first collection after it), back at 16 MB half a second into the load, and at 16 MB throughout on Node
  24. Ours and the bare Node proxy on Node 24 in scratch, as in the bullet above (eight cycles): in its first second
  after a pause ours took 0–140 page faults (3,000–4,000 on Node 20) and in the first 250 ms its CPU per read was
  100–170 µs (180–760 on Node 20). Its p99 was 1.00 ms over the bare proxy's after a pause at the median of the cycles'
  differences and 0.20 ms back to back (2 of the 8 over 2 ms in each), the medians of the p99s 4.94 and 3.41 ms for
  ours, 3.71 and 3.09 ms for the bare proxy. Full runs of the bench after the run before this one, without the idle heap
  warmer (\`BENCH_NODE=24\` and \`=22\`, in scratch; not this page), did not meet the same goals as that run. On Node
  24: at 16 connections both (0.96×, p99 +0.31 ms); at 64 the req/s (0.97×) but not the p99 (+15.1 ms; rounds +15.1,
  +15.3, −5.6, +22.9 and −1.7 ms); the bare Node proxy streamed large bodies far faster than on Node 20 (555–630 MB/s,
  ours with rewriting 414–450), so the Bundle goal was met at 0.81× and the NDJSON one missed at 0.73×; start-up 358 ms.
  On Node 22: at 16 connections the req/s missed (0.82×, one round at 0.45× in a slow stretch) and the p99 met
  (+1.61 ms); both 64-connection goals met (0.90×, +1.92 ms); the large bodies at 1.68× and 0.98×; start-up missed at
  421 ms, in a slow stretch: two batches of seven starts afterwards had medians of 354 and 367 ms on Node 22, 353 and
  368 ms on Node 24 and 318 and 354 ms on Node 20 (321 ms in that run). So no major meets every goal in every run here:
  what is in the way differs by major, and on each one run decides little. Tried then (Node 20, scratch), and kept since
  in another form ("Tried and kept: the idle heap warmer", below): keeping V8 from seeing a quiet process, with a timer
  that made about 1.3 MB of short-lived objects a second, and \`--no-memory-reducer\`. The young generation stayed at
  16 MB through the pause, ours took 86–144 page faults in its first second after it, and in four cycles its median p99
  after a pause was 4.6 ms, against 6.2 ms for ours without the timer and 7.7 ms for the bare proxy. At 64 connections
  on Node 24 (six cycles, as in the bullet above, measured after the rest of this bullet), the young generation did
  shrink after some pauses, in three of the six for ours (to 8–10 MB) and for the bare proxy (to 4–8 MB), with few page
  faults (in the first second ours took 0–125, the bare proxy 0–583): V8 there reuses the pages. In those cycles ours
  collected 14–17 times in its first 250 ms after the pause, for 14–28 ms, and the bare proxy 11–17 times in its first
  250 or 500 ms, for 9–17 ms. Ours' p99 was 9.4 ms over the bare proxy's after a pause at the median of the cycles'
  differences (−3.2 to 83.9 ms) and 1.2 ms back to back. So on Node 24 the 64-connection tail, too, comes from the
  seconds after a pause, with collections in place of page faults. Another cap does not bring it nearer: in eight
  interleaved rounds of 5 s at 64 connections on Node 24, ours' p99 over the bare proxy's at the median of the rounds'
  differences was 7.7 ms with the start command's cap (2 × 8 MB), 6.5 ms with 2 × 16 MB and 10.8 ms with none (Node 24's
  own is 2 × 32 MB), each with rounds far apart.
- **Tried and kept: the idle heap warmer.** At the end of a collection, V8 shrinks the young generation to its smallest
  when the process allocated less than 1,000 bytes a millisecond over the last few seconds
  (\`Heap::ReduceNewSpaceSize\`), on Node 20, 22 and 24 alike. A script with the start command's cap, after a
  young-generation collection, 7 s of quiet and another collection, went from 16 MB to 1 MB on each of the three; with
  2 MB a second of short-lived arrays made during the quiet, it stayed at 16 MB. A script whose young generation was
  partly full when it went quiet shrank after 20 s and not after 8. The server now makes those 2 MB a second all the
  time (\`src/idle-heap-warmer.ts\`: 205 arrays of 1 KB every 100 ms, kept from the optimizer by a reference to the last
  one), unless \`HEAP_KEEP_WARM=off\`; server.ts starts it, and this bench's ours with it. A test runs the real server
  with the start command's options and holds V8 to this on the Node it runs on
  (\`test/integration/idle-heap-warmer.test.ts\`; it fails if the warmer is not started, if it makes 0.5 MB a second
  instead of 2, if nothing keeps its arrays, or if \`off\` is ignored). Just over V8's line would not do: at 1.3 MB a
  second, Node 22's memory reducer (a full collection V8 runs when allocation is slow) still shrank the young generation
  after about 21 s of quiet; at 2 MB a second it did not in 70 s, on any of the three. What it costs, the real server
  idle for a minute after a few hundred requests: 150 ms of CPU (a quarter of a per cent of one CPU; without it, under
  10 ms), and 85 MiB of RSS against 73. Under load it makes about 1 % of what the reads make, and in the rounds below
  ours' CPU per read was 94 µs with it and 93 µs without it at 64 connections on Node 20, 81 and 90 µs on Node 24, and
  114 and 117 µs at 16 connections. What it gives, measured after this run in scratch with this run's build: ours with
  the warmer and without it, the two bare proxies and a second bare Node proxy, 5 s each in turn (so each idle about
  20 s between its measurements), ten rounds. At 64 connections on Node 20, the median p99s were 11.7 ms with the warmer
  and 24.2 ms without (lower with it in 9 of the 10 rounds), and 14.8 ms for the bare Node proxy; ours' p99 over the
  bare proxy's at the median of the rounds' differences was −3.9 ms with it and +8.8 ms without it. The same on Node 24:
  10.0 and 20.1 ms (lower with it in 8 of 10), the bare proxy 12.8 ms; −2.6 and +4.7 ms over the bare proxy's. At 16
  connections on Node 20, in a batch whose first rounds fell in a slow stretch, there was no difference beyond the
  noise: 5.90 ms with it and 5.72 ms without (lower with it in 6 of 10), the bare proxy 3.74 ms; +1.39 and +1.18 ms over
  the bare proxy's. Before it was made, a batch with the scratch timer at 1.3 MB a second had 5.71 ms with and 7.18 ms
  without at 16 connections (bare proxy 5.92), and 21.6 ms against 66.7 ms at 64 (bare proxy 22.5; lower with it in all
  ten rounds), in a slow stretch. So the warmer halves the tail after a quiet spell at 64 connections, on both majors,
  and at 16 connections its gain is within the noise: that goal is met in this run and may be missed in another.
- **What is in the way of the large-body goals.** Both are met in this run: ours with rewriting reached 3.33× the bare
  proxy on the Bundle, where the bare proxy was slow as in most runs (92, 106 and 119 MB/s, ours 276, 401 and 397), and
  1.42× on NDJSON (the bare proxy 311, 287 and 307 MB/s, ours 404, 442 and 437). In the run before, 2.30× and 0.97×; in
  the two before that the bare proxy was slow on both and both goals were met (3.39× and 1.46×, 2.81× and 1.23×); in the
  run four before it was fast and both were missed (0.78× and 0.76×). The bare proxy's own NDJSON speed swings between
  runs: 452, 222, 517, 315, 258, 427, 226, 394 and 307 MB/s in the last nine; ours with rewriting has been 341, 316,
  377, 340, 339, 291, 394 and 437 MB/s in the last eight. The swings come from the bench's client, not from the bare
  proxy's work: in six alternating 200 MB Bundle downloads with a Node client like the bench's (\`http.get\`), the bare
  proxy ran at 100–152 MB/s on 0.1–0.5 s of user and 0.13–0.36 s of system CPU per 1.3–2 s download, waiting rather than
  working, and ours at 124–311 MB/s; with curl in the same minute the bare proxy ran at 637–788 MB/s and ours at
  233–428 MB/s. In this run ours with rewriting was faster than without it on the Bundle (397 against 179 MB/s) and
  slower on NDJSON (437 against 539), as in the run before (330 against 174, 394 against 474); in the one before that it
  was faster on both (251 against 203, 291 against 227): with rewriting a turn's pieces go out as one write, without it
  each piece goes out as it comes. Against a bare proxy at full speed (curl as the client, four downloads of each body
  after the run four before this one, one target after the other), ours with rewriting ran at about 0.73× on the Bundle
  (421–467 against 577–656 MB/s) and 0.59× on NDJSON (430–448 against 607–787 MB/s), and without rewriting faster than
  the bare proxy (859–973 and 633–840 MB/s). Rewriting costs ours about 0.2 s of user CPU per 200 MB Bundle and 0.23 s
  per 256 MB of NDJSON, in transfers the bare proxy finishes in 0.3–0.4 s: 0.8× at full speed needs a rewriter about
  twice as fast in the server as this one. The round before this one (a turn's pieces rewritten together) took a few
  percent to a seventh off ours' CPU for NDJSON, not half. Measured alone on one CPU in scratch, on the bench's NDJSON
  in chunks of the sizes the proxy sees, the search by itself (the text made and searched, nothing built) ran at about
  3,000 MB/s, and the whole rewrite at 1,500–2,200; a regular-expression replace, \`replaceAll\`, a Buffer search with
  copies into one buffer, and the output written into preallocated memory instead of \`Buffer.from\` were none of them
  faster.
- **The RSS growth without rewriting.** Passed on as they come, a large body's pieces are Buffers whose memory lies
  outside the JavaScript heap, and that path allocates almost nothing on the heap, so no scavenge comes along to free
  them: V8 frees them when their memory outside the heap forces a collection, and then a full one. Measured in scratch,
  through ours without rewriting and with curl as the client: during a 1 GB Bundle the pieces' memory
  rose and fell between about 7 and 40 MB, 60 of the 84 collections were full ones, and the peak RSS was about what it
  was for 200 MB (182 MiB against 177, from 144 before). The growth is bounded, not proportional to the body. With
  rewriting, the text the rewriter makes keeps scavenges coming (360 in the same download, none full), and the pieces'
  memory stayed under 8 MB. The bare Node proxy's growth on the Bundle has the same source: its pieces' memory rose to
  about 32 MB before scavenges freed it (62 collections in 1 GB, none full), and its peak RSS for 1 GB was what it was
  for 200 MB (93 MiB, from 63).
- **Noise.** This machine's speed drifts by as much as half from one minute to the next (see the ranges), which
  is why every ratio is taken round by round; a run in a slow stretch moves start-up and the large bodies too.
  Measured one after the other, two builds of ours differ by ±10 % or more from round to round, more than most
  changes are worth. So the scratch comparisons above load two servers at once, each pinned to the servers' CPU
  and driven by its own wrk at 16 connections for 4 s, and compare the CPU time each used per read: whatever the
  machine does in that minute, it does to both. The order in which the two are named shifts the ratio by a few
  percent, so each comparison is made both ways, six or eight pairs each, and the two medians read together.
`;

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
