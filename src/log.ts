/**
 * Structured logging with pino. Secrets never reach a log: callers log hashes or lengths (see `fingerprint`),
 * and the redact list below is a second line of defence for fields that should never be logged at all.
 */
import { createHash } from 'node:crypto';
import { pino, type Level, type Logger, type LoggerOptions, type DestinationStream, type LevelWithSilent } from 'pino';

export type { Logger };

/** Field names that must never be printed, wherever they appear (top level or one/two levels down). */
const SECRET_KEYS = [
  'access_token', 'refresh_token', 'id_token', 'code', 'code_verifier', 'client_secret', 'client_assertion',
  'assertion', 'password', 'privateKey', 'private_key', 'secret', 'sessionSecret', 'authorization', 'cookie', 'tokens',
];
const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  'req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]', '*["set-cookie"]',
];

export function createLogger(opts: { level?: LevelWithSilent; destination?: DestinationStream } = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { service: 'smart-bff' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  // pino's own default (stdout), made here so that a tapped logger can write to the very same stream.
  const destination = opts.destination ?? pino.destination(1);
  const logger = pino(options, destination);
  made.set(logger, { options, destination });
  return logger;
}

const made = new WeakMap<Logger, { options: LoggerOptions; destination: DestinationStream }>();

/**
 * A sibling of `logger` (made by createLogger) that writes exactly what `logger` would, to the same stream at the
 * same level, and also hands each record at `tapLevel` or above, as the JSON line written, to `tap`, whatever
 * `logger`'s level. The launch trace uses it on the launch routes only, so it sees their info-level steps even
 * under LOG_LEVEL=warn, and nothing else pays for it.
 */
export function tappedLogger(logger: Logger, tap: DestinationStream, tapLevel: Level = 'info'): Logger {
  const source = made.get(logger);
  if (!source) throw new Error('tappedLogger: the logger was not made by createLogger');
  const level = source.options.level as LevelWithSilent;
  const streams: { level: Level; stream: DestinationStream }[] = [{ level: tapLevel, stream: tap }];
  if (level !== 'silent') streams.push({ level: level as Level, stream: source.destination });
  const lowest = level !== 'silent' && pino.levels.values[level]! < pino.levels.values[tapLevel]! ? level : tapLevel;
  return pino({ ...source.options, level: lowest }, pino.multistream(streams));
}

/** A short, non-reversible fingerprint of a secret for correlating log lines: `len:12/sha:abcd1234`. */
export function fingerprint(value: string | undefined | null): string | undefined {
  if (value == null) return undefined;
  return `len:${value.length}/sha:${sha256Short(value)}`;
}

export function sha256Short(value: string, chars = 10): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, chars);
}

/** Trims untrusted text for a log line (pino's JSON encoding escapes CR/LF; this bounds length). */
export function clip(value: unknown, max = 300): string | undefined {
  if (value == null) return undefined;
  const s = String(value);
  return s.length > max ? `${s.slice(0, max)}…(${s.length} chars)` : s;
}
