/**
 * Structured logging with pino. Secrets never reach a log: callers log hashes or lengths (see `fingerprint`;
 * an authorization code is only ever logged as `code_fp`), and the redaction below is a second line of defence,
 * keyed on where each secret can appear:
 *
 * - fields that only ever hold secrets (tokens, verifiers, client secrets and assertions, keys, cookies, the
 *   Authorization header), under whatever object they appear (to two levels down);
 * - an OAuth authorization code, as `code`, only where one travels: among a request's parameters (an object named
 *   `query`, `body`, `params` or `form`) and in a URL's query string (every string that is a URL or a path with a
 *   query has its secret parameters replaced, see `redactUrl`). Everywhere else `code` is one of our own error
 *   codes (`"code":"iss_not_allowed"`) and is logged as it is.
 */
import { createHash } from 'node:crypto';
import { TurnBatchedDestination } from './log-destination.js';
import { pino, type Level, type Logger, type LoggerOptions, type DestinationStream, type LevelWithSilent } from 'pino';

export type { Logger };

/** Field names that hold nothing but secrets, wherever they appear (top level or one/two levels down). */
const SECRET_KEYS = new Set([
  'access_token', 'refresh_token', 'id_token', 'code_verifier', 'client_secret', 'client_assertion',
  'assertion', 'password', 'privateKey', 'private_key', 'secret', 'sessionSecret', 'authorization', 'cookie', 'tokens',
  'set-cookie',
]);
/** Objects that hold the parameters of an OAuth request, where `code` is an authorization code. */
const PARAMETER_OBJECTS = new Set(['query', 'body', 'params', 'form']);
const CENSOR = '[redacted]';

/** Query parameters that carry secrets or one-time values: the callback's code and state, the launch code, tokens. */
const SECRET_PARAMS = new Set(['code', 'state', 'launch', 'session_state', 'code_verifier', 'access_token', 'id_token', 'refresh_token', 'client_secret', 'client_assertion', 'assertion']);

/** A URL (absolute, or a path) with the values of its secret query parameters replaced; unchanged when it has none. */
export function redactUrl(url: string | undefined): string {
  if (!url) return '';
  const q = url.indexOf('?');
  if (q === -1) return url;
  const end = url.indexOf('#', q);
  const params = new URLSearchParams(url.slice(q + 1, end === -1 ? undefined : end));
  let changed = false;
  for (const key of new Set(params.keys())) {
    if (SECRET_PARAMS.has(key.toLowerCase())) {
      params.set(key, '[redacted]');
      changed = true;
    }
  }
  return changed ? `${url.slice(0, q)}?${params.toString()}` : url;
}

const URL_WITH_QUERY = /^(?:[a-z][a-z0-9+.-]*:\/\/|\/)[^\s]*\?/i;
/** Levels of keys looked at: secret fields to two levels down (`key`, `*.key`, `*.*.key`), URLs to three. */
const SECRET_LEVELS = 2;
const URL_LEVELS = 3;

/**
 * The redaction, in one pass over a log object's plain objects and arrays, copying only what changes (the
 * caller's object is never modified):
 * - fields that only hold secrets, to two levels down, whatever their value;
 * - `code` in a request's parameters (`query.code`, `x.body.code`, `x.y.form.code`, …);
 * - every URL-like string, to three levels down, through redactUrl.
 * Errors and other class instances are left to their serializers (the `err` serializer's output goes through the
 * same pass). pino's own `redact` option did the first two with wildcard paths, at some 60 µs a line: for every
 * top-level key it cloned and serialised the value; this costs about a microsecond on a flat line.
 */
export function redactLogObject<T>(value: T): T {
  return redactValue(value, 0, false) as T;
}

/** A string in a log object: a URL or a path with a query has its secret parameters redacted. */
function redactText(value: string): string {
  return URL_WITH_QUERY.test(value) ? redactUrl(value) : value;
}

function redactValue(value: unknown, level: number, inParameters: boolean): unknown {
  if (typeof value === 'string') return level <= URL_LEVELS ? redactText(value) : value;
  if (value === null || typeof value !== 'object' || level > URL_LEVELS) return value;
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const r = redactValue(value[i], level + 1, false);
      if (r !== value[i]) (out ??= [...value])[i] = r;
    }
    return out ?? value;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) return value;
  let out: Record<string, unknown> | undefined;
  const record = value as Record<string, unknown>;
  for (const k in record) {
    if (!Object.hasOwn(record, k)) continue;
    const v = record[k];
    let r: unknown;
    if (level <= SECRET_LEVELS && SECRET_KEYS.has(k)) r = CENSOR;
    else if (inParameters && k === 'code') r = CENSOR;
    else r = redactValue(v, level + 1, PARAMETER_OBJECTS.has(k));
    if (r !== v) (out ??= { ...record })[k] = r;
  }
  return out ?? value;
}

/** What pino's err serializer makes (the error's fields on a prototype of its own), as plain objects, so the redaction sees them. */
const SERIALIZED_ERROR = Object.getPrototypeOf(pino.stdSerializers.err(new Error('x'))) as object;
function plainError(value: unknown, level = 0): unknown {
  if (level > URL_LEVELS || value === null || typeof value !== 'object' || Object.getPrototypeOf(value) !== SERIALIZED_ERROR) return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const k of Object.keys(out)) out[k] = plainError(out[k], level + 1);
  return out;
}

/** Where the server's log goes: a file descriptor (1, stdout) or a file, one synchronous write per event-loop turn. */
export function logDestination(dest: number | string): DestinationStream {
  return new TurnBatchedDestination(dest);
}

/**
 * pino's isoTime (`,"time":"2026-11-26T15:01:09.123Z"`), made once per millisecond: a busy proxy writes several
 * lines in the same one. A cache of one entry, per logger.
 */
function isoTimeByMillisecond(): () => string {
  let ms = NaN;
  let text = '';
  return () => {
    const now = Date.now();
    if (now !== ms) {
      ms = now;
      text = `,"time":"${new Date(now).toISOString()}"`;
    }
    return text;
  };
}

export function createLogger(opts: { level?: LevelWithSilent; destination?: DestinationStream } = {}): Logger {
  const time = isoTimeByMillisecond();
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { service: 'smart-bff' },
    // A child logger's bindings (`logger.child({...})`) are not a log object: pino's own redaction covers their
    // top-level fields (without wildcards, which is what made it slow).
    redact: { paths: [...SECRET_KEYS].map((k) => JSON.stringify([k])), censor: CENSOR },
    timestamp: time,
    formatters: {
      level: (label) => ({ level: label }),
      log: redactLogObject,
    },
    serializers: { err: (err: Error) => redactLogObject(plainError(pino.stdSerializers.err(err))) },
  };
  // stdout (logDestination), made here so that a tapped logger can write to the very same stream.
  const destination = opts.destination ?? logDestination(1);
  const logger = pino(options, destination);
  made.set(logger, { options, destination, time });
  return logger;
}

const made = new WeakMap<Logger, { options: LoggerOptions; destination: DestinationStream; time: () => string }>();

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

/** The values of a flat line's fields. */
export type FlatField = string | number | boolean;

/**
 * `logger.info(fields, message)` for a line logged very often, with flat fields named in advance (the proxy's
 * `proxy.request`, one per call): put together here instead of by pino, byte for byte the line pino writes for the
 * same fields in the order of `keys` (level, time, the base fields, the fields, the message), redacted the same way
 * (a lone surrogate in a string, which pino writes as it is, is escaped instead: the line stays well-formed JSON),
 * at a fraction of pino's cost per line (docs/benchmarks.md). A test holds the two to the same output for random
 * fields. It goes to the logger's destination like pino's lines (on the server, gathered and written when the turn
 * ends). For a logger not made by createLogger (a child, a tapped logger) it is `logger.info`. Nothing is written
 * below the logger's level.
 */
export function flatInfoLine<K extends string>(logger: Logger, keys: readonly K[], message: string): (fields: Readonly<Record<K, FlatField>>) => void {
  const source = made.get(logger);
  if (!source) return (fields) => logger.info(fields as object, message);
  const { destination, time } = source;
  const base = Object.entries(source.options.base ?? {}).map(([k, v]) => `,${JSON.stringify(k)}:${JSON.stringify(v)}`).join('');
  // what pino writes for each field before its value; a field that only holds secrets is never written
  const names = keys.map((k) => `,${JSON.stringify(k)}:`);
  const secret = keys.map((k) => SECRET_KEYS.has(k));
  const end = `,"msg":${JSON.stringify(message)}}\n`;
  return (fields) => {
    if (!logger.isLevelEnabled('info')) return;
    let line = `{"level":"info"${time()}${base}`;
    for (let i = 0; i < keys.length; i++) {
      const value: FlatField | undefined = fields[keys[i]!];
      if (value === undefined) continue;
      line += names[i]! + (secret[i] ? `"${CENSOR}"` : typeof value === 'string' ? JSON.stringify(redactText(value)) : typeof value === 'number' && !Number.isFinite(value) ? 'null' : String(value));
    }
    destination.write(line + end);
  };
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
