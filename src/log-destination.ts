/**
 * Where the server's log goes: stdout (or a file), written synchronously, in one write per turn of the event loop.
 *
 * Every line logged during one turn (a busy server finishes several proxied calls in one) is gathered, and written
 * with one write when the turn ends (setImmediate), or at once when 8 KiB have gathered. The write goes through
 * sonic-boom (pino's own destination) in its synchronous mode, which deals with partial writes and a full pipe. So:
 * - a line is in the kernel before the next turn starts: an operator tailing the log sees a failing launch's line
 *   at once, however quiet the server;
 * - a line logged before `process.exit`, or before an uncaught exception ends the process, is written at exit;
 * - a busy server pays one write for several lines.
 *
 * A line can also be handed over unbuilt (`defer`: the logger, the fields and the message): it is built (pino, with
 * its redaction) when the turn ends, just before the write, or at exit, or when the log is flushed. The proxy logs
 * its one line per call this way: building the lines of a turn one after the other, in one loop, costs less than
 * building each among its call's other work (docs/benchmarks.md). Its `time` is when it is built, within the turn.
 *
 * Not pino's asynchronous mode (sonic-boom `sync: false`): it hands each write to libuv's thread pool, and on a busy
 * server that cost a thread switch per proxied call (docs/benchmarks.md). Nor sonic-boom's `minLength` alone: it
 * holds lines back until its buffer fills, which on a quiet server can be minutes. The price of writing
 * synchronously: a log reader that stops reading (a full pipe) holds the server up, as it holds up any synchronous
 * write to stdout, Node's own console included.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

/** Gathered text that is written at once, without waiting for the turn to end (well below a pipe's 64 KiB). */
const GATHER_CHARS = 8 * 1024;

export class TurnBatchedDestination implements DestinationStream {
  readonly #stream: DestinationStream;
  #lines: string[] = [];
  #chars = 0;
  #scheduled = false;
  /** Lines not built yet: a logger, its fields and its message, three entries each. */
  #unbuilt: unknown[] = [];

  constructor(dest: number | string) {
    this.#stream = pino.destination({ dest, sync: true });
    process.on('exit', () => this.flush());
  }

  write(line: string): void {
    this.#lines.push(line);
    this.#chars += line.length;
    if (this.#chars >= GATHER_CHARS) this.#writeGathered();
    else this.#endTurnLater();
  }

  /** `logger.info(fields, message)`, built when the turn ends (or at exit, or at a flush) rather than now. */
  defer(logger: Logger, fields: object, message: string): void {
    this.#unbuilt.push(logger, fields, message);
    this.#endTurnLater();
  }

  /** Builds the lines handed over unbuilt, and writes what has gathered, now (pino's `logger.flush()` calls this). */
  flush(cb?: (err?: Error) => void): void {
    this.#build();
    this.#writeGathered();
    cb?.();
  }

  #endTurnLater(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#endOfTurn);
  }

  #build(): void {
    if (this.#unbuilt.length === 0) return;
    const unbuilt = this.#unbuilt;
    this.#unbuilt = [];
    for (let i = 0; i < unbuilt.length; i += 3) (unbuilt[i] as Logger).info(unbuilt[i + 1] as object, unbuilt[i + 2] as string);
  }

  #writeGathered(): void {
    if (this.#lines.length === 0) return;
    const text = this.#lines.join('');
    this.#lines = [];
    this.#chars = 0;
    this.#stream.write(text);
  }

  readonly #endOfTurn = (): void => {
    this.#build(); // still scheduled: the lines it builds join this write instead of asking for another turn
    this.#scheduled = false;
    this.#writeGathered();
  };
}
