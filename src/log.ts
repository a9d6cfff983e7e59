/**
 * Structured logging with pino. Secrets never reach a log: callers log hashes or lengths (see `fingerprint`),
 * and the redact list below is a second line of defence for fields that should never be logged at all.
 */
import { createHash } from 'node:crypto';
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';

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
  return pino(
    {
      level: opts.level ?? 'info',
      base: { service: 'smart-bff' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination,
  );
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
