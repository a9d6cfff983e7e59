/**
 * Preloaded into a server process (`--expose-gc --import`) by test/integration/idle-heap-warmer.test.ts.
 *
 * On the first SIGUSR2 it makes short-lived objects, some of which live a while, as a busy server does, until V8's
 * young generation has grown to its largest (it stops growing for half a second, or 3 s pass), and writes
 * `HEAP_PROBE grown <bytes>`. On every SIGUSR2 it then runs a young-generation collection and writes
 * `HEAP_PROBE young <bytes>`: the young generation's size, which V8 decides at the end of a collection. Growing it on
 * the first signal rather than at start-up keeps a slow start-up (a busy machine) from counting as a quiet spell.
 * Lines go to stderr; the server's log is on stdout.
 */
import v8 from 'node:v8';

const young = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size;
const say = (what) => process.stderr.write(`HEAP_PROBE ${what} ${young()}\n`);

function grow() {
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
  say('grown');
}

let signals = 0;
process.on('SIGUSR2', () => {
  if (signals++ === 0) grow();
  globalThis.gc({ type: 'minor' });
  say('young');
});
