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
import { pino, type Level, type Logger, type LoggerOptions, type DestinationStream, type LevelWithSilent } from 'pino';

export type { Logger };

/** Field names that hold nothing but secrets, wherever they appear (top level or one/two levels down). */
const SECRET_KEYS = [
  'access_token', 'refresh_token', 'id_token', 'code_verifier', 'client_secret', 'client_assertion',
  'assertion', 'password', 'privateKey', 'private_key', 'secret', 'sessionSecret', 'authorization', 'cookie', 'tokens',
];
/** Objects that hold the parameters of an OAuth request, where `code` is an authorization code. */
const PARAMETER_OBJECTS = ['query', 'body', 'params', 'form'];
const REDACT_PATHS = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  ...SECRET_KEYS.map((k) => `*.*.${k}`),
  ...PARAMETER_OBJECTS.flatMap((o) => [`${o}.code`, `*.${o}.code`, `*.*.${o}.code`]),
  'req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]', '*["set-cookie"]',
];

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

/** Every URL-like string in a log object (to a few levels down) passed through redactUrl. */
function redactUrls(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return URL_WITH_QUERY.test(value) ? redactUrl(value) : value;
  if (depth === 0 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactUrls(v, depth - 1));
  if (Object.getPrototypeOf(value) !== Object.prototype) return value; // errors and class instances: their serializers decide
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const r = redactUrls(v, depth - 1);
    if (r !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = r;
  }
  return out ?? value;
}

export function createLogger(opts: { level?: LevelWithSilent; destination?: DestinationStream } = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { service: 'smart-bff' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      log: (object) => redactUrls(object, 4) as Record<string, unknown>,
    },
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
