/**
 * Reads the server's log as the platforms hand it out, into log records:
 *
 * - the server's own JSON lines (pino, one object per line);
 * - a prefix before the JSON on a line: `heroku logs` (`2026-11-26T01:02:03.123456+00:00 app[web.1]: {…}`),
 *   `gcloud app logs tail`, `kubectl logs --timestamps`, …;
 * - Cloud Logging LogEntries, one per line (a sink's export) or a JSON array (`gcloud logging read
 *   --format=json`, newest first): `jsonPayload` is the app's object (App Engine parses JSON written to stdout;
 *   it moves `time` to the entry's `timestamp`), `textPayload` the line as text.
 *
 * Lines that hold no JSON object are counted and skipped (the Heroku router's lines, stack traces, …).
 */
import type { LogRecord } from './story.js';

export interface ParsedLog {
  records: LogRecord[];
  /** Non-empty lines (or array entries) read. */
  lines: number;
  /** Lines with no JSON object on them: skipped. */
  notJson: number;
  /** LogEntries that are not the app's lines (request logs, plain text): skipped. */
  otherEntries: number;
}

export function parseLogText(text: string): ParsedLog {
  const out: ParsedLog = { records: [], lines: 0, notJson: 0, otherEntries: 0 };
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    let array: unknown;
    try {
      array = JSON.parse(trimmed);
    } catch {
      array = undefined; // not one JSON document: read it line by line
    }
    if (Array.isArray(array)) {
      for (const entry of array) {
        out.lines++;
        take(entry, out);
      }
      return out;
    }
  }
  for (const line of text.split(/\r?\n/)) {
    if (!line.trim()) continue;
    out.lines++;
    const value = jsonOnLine(line);
    if (value === undefined) out.notJson++;
    else take(value, out);
  }
  return out;
}

/** The JSON object on a line, after whatever prefix the platform put before it. */
function jsonOnLine(line: string): Record<string, unknown> | undefined {
  let from = line.indexOf('{');
  for (let tries = 0; from !== -1 && tries < 4; tries++, from = line.indexOf('{', from + 1)) {
    try {
      const v = JSON.parse(line.slice(from)) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // a brace in the prefix: try the next one
    }
  }
  return undefined;
}

function take(value: unknown, out: ParsedLog): void {
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    out.notJson++;
    return;
  }
  const entry = value as Record<string, unknown>;
  const timestamp = typeof entry.timestamp === 'string' ? entry.timestamp : typeof entry.receiveTimestamp === 'string' ? entry.receiveTimestamp : undefined;
  if (entry.jsonPayload && typeof entry.jsonPayload === 'object' && !Array.isArray(entry.jsonPayload)) {
    out.records.push(withTime({ ...(entry.jsonPayload as Record<string, unknown>) }, timestamp));
    return;
  }
  if (typeof entry.textPayload === 'string') {
    const inner = jsonOnLine(entry.textPayload);
    if (inner) out.records.push(withTime(inner, timestamp));
    else out.otherEntries++;
    return;
  }
  if ('protoPayload' in entry || ('logName' in entry && 'resource' in entry)) {
    out.otherEntries++;
    return;
  }
  out.records.push(entry);
}

/** Cloud Logging takes `time` out of the payload and keeps it as the entry's timestamp. */
function withTime(record: Record<string, unknown>, timestamp: string | undefined): LogRecord {
  if (record.time === undefined && timestamp) record.time = timestamp;
  return record;
}
