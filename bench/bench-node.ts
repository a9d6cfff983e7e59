/**
 * Which Node the benchmarks run on: the one running `npm run bench`, or the one `BENCH_NODE` names. Production runs
 * the major that app.yaml names on App Engine and the newest that package.json's `engines` allows on Heroku, and V8
 * changes from one major to the next in what the tail after a quiet spell comes from (docs/benchmarks.md), so a run
 * on each says what each platform gets.
 *
 * `BENCH_NODE=24` (a major) runs the whole bench again under that major, with the binary of the npm package
 * `node@24` (`npx -y node@24`, fetched once into npm's cache); `BENCH_NODE=/path/to/node` under that binary.
 */
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ROOT } from './lib.js';

export type NodeChoice = { use: 'this' } | { use: 'path'; path: string } | { use: 'fetch'; major: number };

/** What to run on, from `BENCH_NODE` and the version of the Node running the bench. */
export function chooseNode(benchNode: string | undefined, runningVersion: string): NodeChoice {
  const wanted = benchNode?.trim();
  if (!wanted || wanted === 'current') return { use: 'this' };
  if (!/^\d+$/.test(wanted)) return { use: 'path', path: wanted };
  const major = Number(wanted);
  return Number(runningVersion.split('.')[0]) === major ? { use: 'this' } : { use: 'fetch', major };
}

/** The path of the npm package `node@<major>`'s binary, fetched with npx. */
export function fetchNode(major: number): string {
  const r = spawnSync('npx', ['-y', `node@${major}`, '-p', 'process.execPath'], { encoding: 'utf8' });
  const path = r.status === 0 ? r.stdout.trim() : '';
  if (!path) {
    // npm's first lines say what went wrong (its last points at a log file)
    const why = (r.error?.message ?? r.stderr ?? '').split('\n').filter((l) => l.trim() && !l.includes('complete log')).slice(0, 2).join(' ');
    throw new Error(`could not fetch Node ${major} with npx -y node@${major} (${why || `exit ${r.status}`}); BENCH_NODE=/path/to/node names a binary instead`);
  }
  return path;
}

/**
 * Runs `script` (the bench) again under the Node that `BENCH_NODE` names, if that is another one, and exits with its
 * status; returns when this is the Node to measure on. A Node it cannot find or fetch ends the run with exit code 2.
 */
export function rerunOnChosenNode(script: URL): void {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const choice = chooseNode(process.env.BENCH_NODE, process.versions.node);
  if (choice.use === 'this') return;
  let node: string;
  try {
    node = realpathSync(choice.use === 'path' ? choice.path : fetchNode(choice.major));
  } catch (err) {
    say(`BENCH_NODE=${process.env.BENCH_NODE}: ${(err as Error).message}`);
    process.exit(2);
  }
  if (node === realpathSync(process.execPath)) return;
  say(`== BENCH_NODE=${process.env.BENCH_NODE}: running the benchmarks under ${node}`);
  const env = { ...process.env, BENCH_NODE: 'current', BENCH_COMMAND: process.env.BENCH_COMMAND ?? `BENCH_NODE=${process.env.BENCH_NODE} npm run bench` };
  const run = spawnSync(node, ['--import', 'tsx', fileURLToPath(script)], { cwd: ROOT, stdio: 'inherit', env });
  process.exit(run.status ?? 1);
}
