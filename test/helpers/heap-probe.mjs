/**
 * Preloaded into a server process (`--expose-gc --import`) by test/integration/idle-heap-warmer.test.ts.
 *
 * At load it makes short-lived objects, some of which live a while, as a busy server does, until V8's young
 * generation has grown to its largest (it stops growing for half a second, or 3 s pass), and writes
 * `HEAP_PROBE grown <bytes>`. On each SIGUSR2 it runs a young-generation collection and then writes
 * `HEAP_PROBE young <bytes>`: the young generation's size, which V8 decides at the end of a collection.
 * Lines go to stderr; the server's log is on stdout.
 */
import v8 from 'node:v8';

const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
const say = (what) => process.stderr.write(`HEAP_PROBE ${what} ${young()}\n`);

let kept = [];
const started = Date.now();
let size = young();
let steadySince = Date.now();
for (let i = 0; Date.now() - started < 3000 && Date.now() - steadySince < 500; i++) {
  const a = new Array(30).fill(i);
  if (i % 64 === 0) kept.push(a);
  if (kept.length > 2000) kept = [];
  if (i % 1024 === 0 && young() !== size) { size = young(); steadySince = Date.now(); }
}
kept = [];
say('grown');

process.on('SIGUSR2', () => {
  globalThis.gc({ type: 'minor' });
  say('young');
});
