/**
 * Launches and callbacks per second against our server and the sandbox EHR (its own process, as a real EHR is
 * another machine). Launches: `GET /launch?iss=…&launch=…` answered with the redirect to the authorization
 * endpoint, discovery cached (wrk). Callbacks: real authorization codes, each earned by a standalone launch
 * through the sandbox's sign-in and consent pages, then all redeemed at `/callback` at a fixed concurrency: the
 * token request to the sandbox's token endpoint, the token response and id_token checks, the token set and the
 * session stored. The time of each step comes from the server's own `launch.complete` log lines (`timing_ms`).
 */
import { readFileSync } from 'node:fs';
import { Browser } from '../test/helpers/browser.js';
import { authorize } from '../test/helpers/authorize.js';
import { median, percentile, wrk, type LoadResult } from './lib.js';

export function launchesPerSecond(baseUrl: string, iss: string, connections: number): Promise<LoadResult> {
  const url = `${baseUrl}/launch?iss=${encodeURIComponent(iss)}&launch=bench-launch-code`;
  return wrk(url, connections, {}, { expect: 302 });
}

async function pool<T>(items: number, concurrency: number, work: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(items);
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < items) {
      const i = next++;
      out[i] = await work(i);
    }
  }));
  return out;
}

export interface CallbackResult { callbacks: number; concurrency: number; perSecond: number; p50: number; p99: number }

export async function callbacksPerSecond(baseUrl: string, iss: string, count: number, concurrency: number): Promise<CallbackResult> {
  // Codes are earned and redeemed in batches (only redemption is timed): the sandbox's codes live 60 s and its
  // in-memory store keeps the latest thousand or so entries (oidc-provider's development adapter).
  const batchSize = Math.max(concurrency * 4, 16);
  const latencies: number[] = [];
  let seconds = 0;
  for (let done = 0; done < count; done += batchSize) {
    const n = Math.min(batchSize, count - done);
    // Earn the codes (not timed): each its own browser, signed in at the authorization server.
    const pending = await pool(n, 8, async () => {
      const browser = new Browser();
      const start = await browser.get(`${baseUrl}/login?iss=${encodeURIComponent(iss)}`);
      const location = start.headers.get('location');
      if (start.status !== 302 || !location) throw new Error(`/login answered ${start.status}`);
      return { browser, callback: await authorize(location) };
    });
    const started = performance.now();
    await pool(n, concurrency, async (i) => {
      const t = performance.now();
      const res = await pending[i]!.browser.get(pending[i]!.callback, { accept: 'application/json' });
      const body = await res.text();
      latencies.push(performance.now() - t);
      if (res.status !== 302 || !res.headers.get('location')?.includes('context=')) throw new Error(`/callback answered ${res.status}: ${body.slice(0, 500)}`);
    });
    seconds += (performance.now() - started) / 1000;
  }
  return { callbacks: count, concurrency, perSecond: count / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** The `timing_ms` of each callback in a server's log (its `launch.complete` lines), oldest first. */
export function callbackTimings(logFile: string): Record<string, number>[] {
  return readFileSync(logFile, 'utf8').split('\n').filter((line) => line.includes('"launch.complete"'))
    .map((line) => (JSON.parse(line) as { timing_ms?: Record<string, number> }).timing_ms)
    .filter((t): t is Record<string, number> => t !== undefined);
}

/** The median of each step over callbacks, in ms, in the order the steps first appear. */
export function medianSteps(timings: Record<string, number>[]): Map<string, number> {
  const byStep = new Map<string, number[]>();
  for (const t of timings) for (const [step, ms] of Object.entries(t)) byStep.set(step, [...(byStep.get(step) ?? []), ms]);
  return new Map([...byStep].map(([step, values]) => [step, median(values)]));
}
