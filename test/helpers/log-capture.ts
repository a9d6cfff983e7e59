/** Captures pino output in memory (a real pino destination), to assert on log lines and search them for secrets. */
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

export interface CapturedLogs {
  logger: Logger;
  lines: string[];
  entries(): Record<string, unknown>[];
  find(event: string): Record<string, unknown>[];
  text(): string;
}

export function captureLogs(level: 'warn' | 'info' | 'debug' | 'trace' = 'debug'): CapturedLogs {
  const lines: string[] = [];
  let partial = '';
  const destination = new Writable({
    write(chunk, _enc, cb) {
      partial += chunk.toString();
      const parts = partial.split('\n');
      partial = parts.pop()!;
      lines.push(...parts.filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level, destination: destination as unknown as import('pino').DestinationStream });
  return {
    logger,
    lines,
    entries: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
    find: (event) => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.event === event),
    text: () => lines.join('\n'),
  };
}
