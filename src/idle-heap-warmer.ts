/**
 * Keeps V8's young generation (where each request's short-lived objects are made) at its size through quiet spells.
 *
 * After each collection, V8 shrinks the young generation to its smallest when the process allocated less than about
 * 1 MB a second over the last few seconds (Heap::ReduceNewSpaceSize, on Node 20, 22 and 24). A quiet spell of 20 s
 * is enough (7 s if a collection came just before it). The first seconds of load after it then rebuild the young
 * generation a step at a time: on fresh pages, a page fault each, and with many more collections while it is small.
 * Every request waits longer, and the proxy's p99 after a pause was several milliseconds worse than back to back
 * (docs/benchmarks.md).
 *
 * So this makes a little short-lived garbage all the time, about 2 MB a second, twice V8's line. The young generation
 * keeps its size (2 × 8 MB with npm start's cap), and the garbage dies young: a collection every few seconds of
 * quiet, of almost nothing. The cost is about 0.25 % of one CPU while idle (nothing measurable under load, where the
 * requests make a hundred times as much), and the young generation's memory kept rather than given back while idle.
 * HEAP_KEEP_WARM=off turns it off. test/integration/idle-heap-warmer.test.ts holds V8 to this on every major it runs.
 */

/** Twice V8's line of 1,000 bytes a millisecond. */
const BYTES_PER_SECOND = 2 * 1024 * 1024;

const TICK_MS = 100;
/** An array of 126 slots is 1 KB on the heap (8-byte slots and a 16-byte header). */
const ARRAY_SLOTS = 126;
const ARRAY_BYTES = 1024;

export interface IdleHeapWarmer {
  stop(): void;
}

export function startIdleHeapWarmer(): IdleHeapWarmer {
  const arraysPerTick = Math.ceil((BYTES_PER_SECOND * TICK_MS) / 1000 / ARRAY_BYTES);
  // The last array made is kept reachable, so that the compiler cannot leave the allocations out.
  const sink: { last: unknown } = { last: undefined };
  const timer = setInterval(() => {
    for (let i = 0; i < arraysPerTick; i++) sink.last = new Array(ARRAY_SLOTS);
  }, TICK_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
