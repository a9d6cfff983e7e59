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
 * Not pino's asynchronous mode (sonic-boom `sync: false`): it hands each write to libuv's thread pool, and on a busy
 * server that cost a thread switch per proxied call (docs/benchmarks.md). Nor sonic-boom's `minLength` alone: it
 * holds lines back until its buffer fills, which on a quiet server can be minutes. The price of writing
 * synchronously: a log reader that stops reading (a full pipe) holds the server up, as it holds up any synchronous
 * write to stdout, Node's own console included.
 */
import { pino, type DestinationStream } from 'pino';

/** Gathered text that is written at once, without waiting for the turn to end (well below a pipe's 64 KiB). */
const GATHER_CHARS = 8 * 1024;

export class TurnBatchedDestination implements DestinationStream {
  readonly #stream: DestinationStream;
  #lines: string[] = [];
  #chars = 0;
  #scheduled = false;

  constructor(dest: number | string) {
    this.#stream = pino.destination({ dest, sync: true });
    process.on('exit', () => this.flush());
  }

  write(line: string): void {
    this.#lines.push(line);
    this.#chars += line.length;
    if (this.#chars >= GATHER_CHARS) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#endOfTurn);
    }
  }

  /** Writes what has gathered, now (pino's `logger.flush()` calls this). */
  flush(cb?: (err?: Error) => void): void {
    if (this.#lines.length) {
      const text = this.#lines.join('');
      this.#lines = [];
      this.#chars = 0;
      this.#stream.write(text);
    }
    cb?.();
  }

  readonly #endOfTurn = (): void => {
    this.#scheduled = false;
    this.flush();
  };
}
