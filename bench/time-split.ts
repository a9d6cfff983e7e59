/**
 * Where a proxied read's time goes under load, as each server sees it: the servers under test run with
 * bench/server-timing.mjs preloaded (every one the same), and each round measures, per server, wrk's req/s and
 * latency, the server's own timings (time in the server, time between a response and the next request on the same
 * connection, event-loop delay) and its CPU time per request split into user (JavaScript, the parsers, V8) and
 * system (the kernel: sockets, epoll). Round by round, every server in turn; each figure is the median over the
 * rounds. Separate instances from the main table's, since the wrapper costs a little too.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { cpuSplitMs, median, wrk } from './lib.js';

export interface SplitTarget { name: string; url: string; headers: Record<string, string>; pid: number; timingFile: string }
interface Percentiles { p50: number; p99: number }
export interface SplitRow {
  name: string;
  rps: number;
  /** wrk's latency, ms */
  latency: Percentiles;
  /** 'request' event → the response's 'finish', ms */
  inServer: Percentiles;
  /** a response's 'finish' → the next request on that connection, ms */
  between: Percentiles;
  /** how late a 1 ms timer fires, ms: about a busy loop's turn */
  loopDelay: Percentiles;
  userUs: number;
  sysUs: number;
}

interface Timing { inServer: Percentiles; between: Percentiles; loopDelay: Percentiles }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Signals the server to write its timings since the last signal, and reads them once they are there. */
async function timings(t: SplitTarget): Promise<Timing> {
  rmSync(t.timingFile, { force: true });
  process.kill(t.pid, 'SIGUSR2');
  for (let i = 0; i < 100; i++) {
    if (existsSync(t.timingFile)) return JSON.parse(readFileSync(t.timingFile, 'utf8')) as Timing;
    await sleep(20);
  }
  throw new Error(`${t.name}: no timings in ${t.timingFile}`);
}

export async function timeSplit(targets: SplitTarget[], connections: number, rounds: number): Promise<SplitRow[]> {
  for (const t of targets) await wrk(t.url, connections, t.headers, { seconds: 3 }); // warm-up
  const measured = new Map<string, (Omit<SplitRow, 'name'>)[]>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const t of targets) {
      await timings(t); // starts the histograms afresh
      const cpu = cpuSplitMs(t.pid);
      const x = await wrk(t.url, connections, t.headers);
      const after = cpuSplitMs(t.pid);
      const s = await timings(t);
      measured.get(t.name)!.push({
        rps: x.rps, latency: { p50: x.p50, p99: x.p99 }, inServer: s.inServer, between: s.between, loopDelay: s.loopDelay,
        userUs: ((after.user - cpu.user) * 1000) / x.total, sysUs: ((after.sys - cpu.sys) * 1000) / x.total,
      });
    }
  }
  const pct = (ps: Percentiles[]): Percentiles => ({ p50: median(ps.map((p) => p.p50)), p99: median(ps.map((p) => p.p99)) });
  return targets.map((t) => {
    const xs = measured.get(t.name)!;
    return {
      name: t.name, rps: median(xs.map((x) => x.rps)), latency: pct(xs.map((x) => x.latency)), inServer: pct(xs.map((x) => x.inServer)),
      between: pct(xs.map((x) => x.between)), loopDelay: pct(xs.map((x) => x.loopDelay)),
      userUs: median(xs.map((x) => x.userUs)), sysUs: median(xs.map((x) => x.sysUs)),
    };
  });
}
