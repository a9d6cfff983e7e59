/** What the benchmarks share: child processes that are always killed, autocannon runs, CPU time and RSS. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DURATION = Number(process.env.BENCH_SECONDS ?? 5);

const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Starts a process and resolves with its first line of output (a port, or a JSON object). */
export function startChild(cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; firstLine: string }> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
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

export interface LoadResult { rps: number; p50: number; p99: number; total: number; statuses: Record<string, number> }

/** autocannon in its own process; throws unless every response has the expected status class. */
export function autocannon(url: string, connections: number, headers: Record<string, string>, opts: { seconds?: number; expect?: '2xx' | '3xx' } = {}): LoadResult {
  const args = ['-c', String(connections), '-d', String(opts.seconds ?? DURATION), '-j', ...Object.entries(headers).flatMap(([k, v]) => ['-H', `${k}=${v}`]), url];
  const r = spawnSync(join(ROOT, 'node_modules/.bin/autocannon'), args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const json = JSON.parse(r.stdout) as {
    requests: { average: number; total: number }; latency: { p50: number; p99: number }; errors: number;
    '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number;
  };
  const statuses = { '2xx': json['2xx'], '3xx': json['3xx'], '4xx': json['4xx'], '5xx': json['5xx'] };
  const expected = json[opts.expect ?? '2xx'];
  const completed = json['1xx'] + json['2xx'] + json['3xx'] + json['4xx'] + json['5xx'];
  if (expected !== completed || json.errors > json.requests.total / 1000) {
    throw new Error(`${url}: expected only ${opts.expect ?? '2xx'}, got ${JSON.stringify(statuses)} and ${json.errors} errors`);
  }
  return { rps: json.requests.average, p50: json.latency.p50, p99: json.latency.p99, total: json.requests.total, statuses };
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
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
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
