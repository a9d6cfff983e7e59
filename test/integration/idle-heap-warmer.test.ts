/**
 * The idle heap warmer (src/idle-heap-warmer.ts), in the real server process started as production starts it
 * (npm start's Node options): V8's young generation keeps its size through a quiet spell, and with HEAP_KEEP_WARM=off
 * V8 shrinks it, which shows that the quiet spell here is one V8 acts on. On whichever Node runs the tests, so a
 * Node whose V8 decides otherwise fails here.
 *
 * test/helpers/heap-probe.mjs, preloaded, grows the young generation to its largest on the first SIGUSR2, and reports
 * its size after a young-generation collection on each. The first collection marks the start of the quiet spell; V8
 * looks at how much was allocated since then at the next one, eight seconds later.
 *
 * An attempt can tell only if V8 shrank the young generation of the server without the warmer. Once, in a CI run on a
 * busy machine, it did not (the cause was not found; something in that process was not quiet). Such an attempt is made
 * again, both servers afresh, at most three times; the assertions hold the last attempt to all of the above.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { STRONG_SECRET } from '../helpers/config-problems.js';
import { freePort } from '../helpers/net.js';
import { startServerProcess, type ServerProcess } from '../helpers/server-process.js';
import { START_NODE_ARGS } from '../helpers/start-command.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PROBE = join(ROOT, 'test/helpers/heap-probe.mjs');
const QUIET_MS = 8000;
const PRODUCTION = { NODE_ENV: 'production', PUBLIC_URL: 'https://app.example.com', SESSION_SECRET: STRONG_SECRET, SMART_ISS: 'https://fhir.example.com/r4', SMART_CLIENT_ID: 'client-1', SINGLE_INSTANCE: '1' };

/** The sizes the probe has reported so far, in order. */
function reports(server: ServerProcess, what: 'grown' | 'young'): number[] {
  return [...server.output().matchAll(new RegExp(`HEAP_PROBE ${what} (\\d+)`, 'g'))].map((m) => Number(m[1]));
}

/** A young-generation collection now (after growing it, the first time); resolves with its size after the collection. */
async function collect(server: ServerProcess): Promise<number> {
  const before = reports(server, 'young').length;
  server.child.kill('SIGUSR2');
  for (let i = 0; i < 500 && reports(server, 'young').length === before; i++) await new Promise((r) => setTimeout(r, 20));
  const sizes = reports(server, 'young');
  if (sizes.length === before) throw new Error(`the heap probe did not answer:\n${server.output()}`);
  return sizes.at(-1)!;
}

/** Starts the server, lets it sit quiet for QUIET_MS between two collections, and stops it. */
async function quietSpell(env: Record<string, string>): Promise<{ grown: number; before: number; after: number }> {
  const port = await freePort();
  const server = await startServerProcess({ ...PRODUCTION, ...env, PORT: String(port) }, port, { nodeArgs: [...START_NODE_ARGS, '--expose-gc', '--import', PROBE] });
  try {
    const before = await collect(server);
    const [grown] = reports(server, 'grown');
    await new Promise((r) => setTimeout(r, QUIET_MS));
    const after = await collect(server);
    return { grown: grown!, before, after };
  } finally {
    await server.stop();
  }
}

describe('the idle heap warmer', () => {
  test('keeps the young generation at its size through a quiet spell, which V8 shrinks it after without the warmer', async () => {
    let [warm, off] = await Promise.all([quietSpell({}), quietSpell({ HEAP_KEEP_WARM: 'off' })]);
    for (let attempt = 2; attempt <= 3 && off.after > off.grown / 4; attempt++) {
      [warm, off] = await Promise.all([quietSpell({}), quietSpell({ HEAP_KEEP_WARM: 'off' })]);
    }
    for (const run of [warm, off]) {
      // the probe grew it, and the collection that starts the quiet spell did not shrink it
      expect(run.grown).toBeGreaterThanOrEqual(4 * 2 ** 20);
      expect(run.before).toBe(run.grown);
    }
    // on (the default): as large after the quiet spell as before it
    expect(warm.after).toBe(warm.grown);
    // off: V8 gave most of it back at the first collection after the quiet spell
    expect(off.after).toBeLessThanOrEqual(off.grown / 4);
  }, 120000);
});
