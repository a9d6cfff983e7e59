/**
 * `smart-bff explain [file]`: the server's log (stdin, or a file) as the story of each launch. Failed launches
 * first, each with its timeline, the diagnosis and the fix; then launches still waiting for their callback; then
 * the successful ones; then a summary line. The log may come straight from the server, from `heroku logs`, or from
 * Cloud Logging (log-lines.ts). The story is the one the trace page tells (launch-trace/story.ts).
 *
 * Only known fields are printed, and every printed value has its control characters replaced: a log line may
 * hold text from a remote server (error_description), which must not drive the terminal.
 */
import { readFile } from 'node:fs/promises';
import { parseLogText, type ParsedLog } from '../launch-trace/log-lines.js';
import { formatMs, storiesFromRecords, summarize, type LaunchStory, type StoryFilter } from '../launch-trace/story.js';

export interface ExplainOptions extends StoryFilter {
  json?: boolean;
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(s|m|min|h|d)$/i;

/** `--since`: an ISO time, or a duration back from now (90s, 30m, 2h, 1d). Epoch ms. */
export function parseSince(value: string, now = Date.now()): number {
  const v = value.trim();
  const d = DURATION.exec(v);
  if (d) return now - Number(d[1]) * { s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 }[d[2]!.toLowerCase() as 's']!;
  const t = /^\d{4}-\d{2}-\d{2}/.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(t)) throw new Error(`--since: ${JSON.stringify(value)} is neither an ISO time (2026-11-26T01:00:00Z) nor a duration (30m, 2h, 1d)`);
  return t;
}

export async function readInput(file: string | undefined, stdin: NodeJS.ReadableStream): Promise<string> {
  if (file && file !== '-') return readFile(file, 'utf8');
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function explainText(text: string, opts: ExplainOptions): string {
  const parsed = parseLogText(text);
  const filter: StoryFilter = {
    ...(opts.launch ? { launch: opts.launch } : {}), ...(opts.failed ? { failed: true } : {}), ...(opts.since !== undefined ? { since: opts.since } : {}),
  };
  const stories = storiesFromRecords(parsed.records, filter);
  if (opts.json) {
    return `${JSON.stringify({ summary: { ...summarize(stories), lines: parsed.lines, notJson: parsed.notJson, otherEntries: parsed.otherEntries }, launches: stories }, null, 2)}\n`;
  }
  return renderText(stories, parsed, filter);
}

export function renderText(stories: readonly LaunchStory[], parsed: Pick<ParsedLog, 'lines' | 'notJson' | 'otherEntries'>, filter: StoryFilter = {}): string {
  const out: string[] = [];
  for (const s of stories) out.push(renderStory(s), '');
  out.push(summaryLine(stories, parsed, filter));
  return `${out.join('\n')}\n`;
}

const MARK = { ok: '✓', warning: '!', failed: '✗' } as const;
const HEAD = { failed: '✗ FAILED', pending: '… NO CALLBACK YET', complete: '✓ COMPLETE' } as const;

function renderStory(s: LaunchStory): string {
  const lines: string[] = [];
  const name = s.launchId ? `launch ${s.launchId}` : `request ${s.requestIds[0] ?? s.id} (refused before a launch started)`;
  const facts = [s.mode === 'standalone' ? 'standalone launch' : s.mode === 'ehr' ? 'EHR launch' : undefined, s.registration && `registration ${s.registration}`, s.clientId && `client ${s.clientId}`].filter(Boolean);
  lines.push(safe(`${HEAD[s.outcome]} · ${name}${facts.length ? ` · ${facts.join(' · ')}` : ''}`));
  if (s.iss) lines.push(safe(`  iss ${s.iss}`));
  lines.push(safe(`  started ${s.startedAt}, ${s.steps.length} step${s.steps.length === 1 ? '' : 's'} over ${formatMs(s.durationMs)}`));
  const width = Math.max(...s.steps.map((st) => st.event.length), 4);
  lines.push(`     ${'time (UTC)'.padEnd(12)}  ${'+since'.padStart(8)}  ${'took'.padStart(8)}  ${'step'.padEnd(width)}  what happened`);
  for (const st of s.steps) {
    lines.push(safe(`  ${MARK[st.outcome]}  ${st.time.slice(11, 23).padEnd(12)}  ${(st.sincePreviousMs === null ? '' : `+${formatMs(st.sincePreviousMs)}`).padStart(8)}  ${(st.durationMs === null ? '' : formatMs(st.durationMs)).padStart(8)}  ${st.event.padEnd(width)}  ${st.summary}`));
  }
  const d = s.diagnosis;
  if (d) {
    lines.push('', safe(`  What failed (${d.step}): ${d.headline}`));
    if (d.error) lines.push(safe(`    error: ${d.error}${d.errorDescription ? ` — "${d.errorDescription}"` : ' (no error_description)'}${d.status ? ` (HTTP ${d.status})` : ''}`));
    else if (d.errorDescription) lines.push(safe(`    reason: ${d.errorDescription}`));
    if (d.vendorCode) lines.push(safe(`    vendor code: ${d.vendorCode}`));
    if (d.errorUri && !d.vendorCode) lines.push(safe(`    error_uri: ${d.errorUri}`));
    if (d.clockSkewSeconds !== null) lines.push(safe(`    clock: ours is ${Math.abs(d.clockSkewSeconds)} s ${d.clockSkewSeconds >= 0 ? 'ahead of' : 'behind'} the token endpoint's (its Date header)${Math.abs(d.clockSkewSeconds) > 60 ? ' — too far apart' : ''}`));
    if (d.userMessage) lines.push(safe(`    the person saw: "${d.userMessage}"${d.errorCode ? ` (${d.errorCode})` : ''}`));
    if (d.likelyCauses.length) {
      lines.push('  Likely causes:');
      for (const c of d.likelyCauses) lines.push(safe(`    - ${c}`));
    }
    lines.push(safe(`  Fix: ${d.fix}`));
  } else if (s.outcome === 'pending') {
    lines.push(safe('  No callback in this log: the person is still at the EHR, gave up, or the EHR could not redirect back (check the redirect URI registered there).'));
  }
  return lines.join('\n');
}

function summaryLine(stories: readonly LaunchStory[], parsed: Pick<ParsedLog, 'lines' | 'notJson' | 'otherEntries'>, filter: StoryFilter): string {
  const n = summarize(stories);
  const filters = [filter.launch && `--launch ${filter.launch}`, filter.failed && '--failed', filter.since !== undefined && `--since ${new Date(filter.since).toISOString()}`].filter(Boolean);
  const head = n.launches === 0
    ? `No launches found${filters.length ? ` matching ${filters.join(' ')}` : ''}.`
    : `${n.launches} launch${n.launches === 1 ? '' : 'es'}${filters.length ? ` matching ${filters.join(' ')}` : ''}: ${n.failed} failed, ${n.complete} complete, ${n.pending} without a callback yet.`;
  const skipped = [
    parsed.notJson ? `${parsed.notJson} ${parsed.notJson === 1 ? 'was' : 'were'} not JSON and skipped` : '',
    parsed.otherEntries ? `${parsed.otherEntries} log entr${parsed.otherEntries === 1 ? 'y was' : 'ies were'} not the app's lines` : '',
  ].filter(Boolean);
  return safe(`${head} Read ${parsed.lines} line${parsed.lines === 1 ? '' : 's'}${skipped.length ? `; ${skipped.join('; ')}` : ''}.`);
}

/** Control characters (ESC, CR, LF, …) from a log line never reach the terminal: one value, one line. */
function safe(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '�');
}
