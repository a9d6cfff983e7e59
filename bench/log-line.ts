/**
 * The cost of the proxy's one log line, by how it is built and where it goes: the server's logger (createLogger, as
 * built in dist/) writing the `proxy.request` line, through pino (logger.info) or put together by hand as the proxy
 * does (flatInfoLine), in rounds of 100,000 lines with a turn of the event loop every five lines (a busy
 * server finishes about five proxied calls a turn at 16 connections). CPU time of the whole process (every
 * thread, so a write done on libuv's thread pool counts) per line, the turns' own cost included (the first row);
 * the median of five rounds. Prints one JSON line: [{ name, us }]. Run it alone, pinned: `taskset -c 1 npx tsx
 * bench/log-line.ts` (npm run bench runs it on the servers' CPU).
 */
import { pino, type DestinationStream } from 'pino';
import { median } from './lib.js';

// the server's modules as production runs them: tsc's output in dist/ (npm run bench builds it first)
const built = '../dist/log.js';
const { createLogger, flatInfoLine, logDestination } = (await import(built)) as typeof import('../src/log.js');

const LINES = 100_000;
const ROUNDS = 5;
const PER_TURN = 5;
const discard = { write() {} } as DestinationStream;

const FIELDS = { requestId: '0f8fad5b-d9cb-469f-a165-70867728950e', event: 'proxy.request', contextId: 'Jx3Jm0Ls9Bq2Wd7Kp1Vt4A', method: 'GET', path: '/r4/Patient/bench-1', status: 200, duration_ms: 1, aborted: false };
const MESSAGE = 'proxy: request forwarded';
type Line = (fields: typeof FIELDS) => void;
/** The line as pino builds it (logger.info). */
const pinoLine = (logger: ReturnType<typeof createLogger>): Line => (fields) => logger.info(fields, MESSAGE);

const variants: { name: string; make: () => Line }[] = [
  { name: 'no line (level `warn`): the turns alone', make: () => pinoLine(createLogger({ level: 'warn', destination: discard })) },
  { name: 'the line built by pino, not written', make: () => pinoLine(createLogger({ level: 'info', destination: discard })) },
  { name: "built by pino, the server's destination: one write per turn (log-destination.ts)", make: () => pinoLine(createLogger({ level: 'info', destination: logDestination('/dev/null') })) },
  { name: "put together by hand (flatInfoLine, as the proxy writes it), the server's destination", make: () => flatInfoLine(createLogger({ level: 'info', destination: logDestination('/dev/null') }), Object.keys(FIELDS) as (keyof typeof FIELDS)[], MESSAGE) },
  { name: 'built by pino, one synchronous write per line (sonic-boom `sync: true`)', make: () => pinoLine(createLogger({ level: 'info', destination: pino.destination({ dest: '/dev/null', sync: true }) })) },
  { name: "built by pino, pino's asynchronous destination (sonic-boom `sync: false`, the thread pool)", make: () => pinoLine(createLogger({ level: 'info', destination: pino.destination({ dest: '/dev/null' }) })) },
];

const out: { name: string; us: number }[] = [];
for (const v of variants) {
  const line = v.make();
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS + 1; r++) {
    const before = process.cpuUsage();
    for (let i = 0; i < LINES; i++) {
      line(FIELDS);
      if (i % PER_TURN === PER_TURN - 1) await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 20)); // the pool's last writes land in this round
    const used = process.cpuUsage(before);
    if (r > 0) rounds.push((used.user + used.system) / LINES); // the first round warms up
  }
  out.push({ name: v.name, us: median(rounds) });
}
process.stdout.write(`${JSON.stringify(out)}\n`);
