/** What the benchmarks share: child processes that are always killed and pinned to CPUs, wrk runs, CPU time and RSS. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DURATION = Number(process.env.BENCH_SECONDS ?? 5);

/** Whether a command runs here (`cmd args` exits 0 or 1: wrk -v exits 1). */
export function available(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined && (r.status === 0 || r.status === 1);
}

/**
 * CPU pinning (taskset, Linux): the server under test gets the last CPU to itself; the load generator, the
 * upstream, the sandbox EHR and Redis share the others. Every server under test (ours, the bare proxy, nginx)
 * runs on the same CPU, so each is measured by its own cost per request, not by how it competes with the load
 * generator for cores. BENCH_PIN=0 turns it off; it is off without taskset or with a single CPU.
 */
const CPUS = os.availableParallelism?.() ?? os.cpus().length;
export const PINNED = process.env.BENCH_PIN !== '0' && CPUS >= 2 && available('taskset', ['-V']);
export const SERVER_CPUS = String(CPUS - 1);
export const LOAD_CPUS = CPUS === 2 ? '0' : `0-${CPUS - 2}`;
export const pinning = PINNED ? `servers under test on CPU ${SERVER_CPUS}; wrk, the upstream, the sandbox EHR and Redis on CPU ${LOAD_CPUS} (taskset)` : 'no CPU pinning';

/** `cmd args` run on `cpus` when pinning is on. */
export function pinned(cpus: string, cmd: string, args: string[]): [string, string[]] {
  return PINNED ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}

const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Starts a process (on `cpus` when pinning) and resolves with its first line of output (a port, or a JSON object). */
export function startChild(cpus: string, cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; firstLine: string }> {
  return new Promise((resolve, reject) => {
    const [c, a] = pinned(cpus, cmd, args);
    // taskset execs the command: the child's pid is the command's.
    const child = track(spawn(c, a, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl !== -1) resolve({ child, firstLine: out.slice(0, nl) });
    });
    let err = '';
    child.stderr!.on('data', (d) => (err += d));
    child.on('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(-2000)}`)));
  });
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

export interface LoadResult { rps: number; p50: number; p99: number; total: number; seconds: number }

/**
 * wrk, one thread, on the load CPUs: `seconds` at `connections` keep-alive connections, with `headers`.
 * Latencies in milliseconds. Throws unless every response has a status below 400 and no socket failed (wrk counts
 * 4xx/5xx as status errors); `expect` is checked on one request first (a 302 where a 302 is meant).
 */
export async function wrk(url: string, connections: number, headers: Record<string, string>, opts: { seconds?: number; expect?: number } = {}): Promise<LoadResult> {
  const first = await fetch(url, { headers, redirect: 'manual' });
  await first.arrayBuffer();
  if (first.status !== (opts.expect ?? 200)) throw new Error(`${url}: expected ${opts.expect ?? 200}, got ${first.status}`);
  const args = ['-t', '1', '-c', String(connections), '-d', `${opts.seconds ?? DURATION}s`, '--timeout', '10s', '-s', join(ROOT, 'bench/wrk-report.lua'),
    ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), url];
  const [cmd, a] = pinned(LOAD_CPUS, 'wrk', args);
  const r = spawnSync(cmd, a, { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (!line) throw new Error(`wrk failed (${r.status}): ${r.stderr}${r.stdout}`);
  const j = JSON.parse(line.slice(9)) as { requests: number; duration_us: number; errors: Record<string, number>; latency_us: { p50: number; p99: number } };
  const failed = Object.entries(j.errors).filter(([, n]) => n > 0);
  if (failed.length) throw new Error(`${url}: ${failed.map(([k, n]) => `${n} ${k} errors`).join(', ')} in ${j.requests} requests`);
  const seconds = j.duration_us / 1e6;
  return { rps: j.requests / seconds, p50: j.latency_us.p50 / 1000, p99: j.latency_us.p99 / 1000, total: j.requests, seconds };
}

/** Peak resident memory of a process since start or since the last reset (Linux /proc), in MiB. */
export function peakRssMiB(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** CPU time (user + system) a process has used, in ms (Linux /proc; clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const { user, sys } = cpuSplitMs(pid);
  return user + sys;
}

/** CPU time a process has used in user mode and in the kernel, in ms (Linux /proc; clock ticks of 10 ms). */
export function cpuSplitMs(pid: number): { user: number; sys: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return { user: Number(fields[11]) * 10, sys: Number(fields[12]) * 10 };
}

/** Resets the kernel's peak-RSS mark so the next reading covers only what follows (needs the same user). */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

export const round = (n: number, digits = 0) => Number(n.toFixed(digits)).toLocaleString('en-US', { maximumFractionDigits: digits });
