/**
 * The story of a launch, told from the server's own structured log records: which records belong to which
 * launch, the timeline of its steps (time, time since the previous step, the step's own duration, outcome), and
 * for a failed launch the diagnosis (what failed, the server's error, the likely causes the log line carries)
 * and the fix. `smart-bff explain` (from log files) and the operators' trace page (/admin/launches, from the
 * records the server writes) both tell the story with this module, so they tell the same one.
 *
 * Only known fields of known events are read (`project`): a log line's other fields are never echoed. Log
 * records never carry a token, code, verifier or secret; hashes and fingerprints are left out too.
 *
 * Grouping: the records of one launch share `launchId`. Some records of the same request carry only
 * `requestId` (`callback.received` comes before the pending launch is found; `error.response` is written by the
 * one error handler): they join the launch whose records share that requestId. A request on a launch route that
 * fails before any launch exists (an iss not on the allow-list, a callback whose state matches nothing, a
 * cookie that did not come back, a rate limit) is a story of its own, named by its requestId.
 */
import { LRUCache } from 'lru-cache';

/** One log record as parsed from a JSON line (pino): only `project`ed fields are ever read. */
export type LogRecord = Record<string, unknown>;

export type StepOutcome = 'ok' | 'warning' | 'failed';
export type LaunchOutcome = 'failed' | 'pending' | 'complete';

export interface TraceStep {
  event: string;
  /** ISO time of the record. */
  time: string;
  sincePreviousMs: number | null;
  /** The step's own duration (a request to the EHR), when the record says. */
  durationMs: number | null;
  outcome: StepOutcome;
  summary: string;
  /** Known fields of the record, for a person: label and value. */
  details: { label: string; value: string }[];
}

export interface StoryDiagnosis {
  /** The event of the step that failed. */
  step: string;
  headline: string;
  error: string | null;
  errorDescription: string | null;
  errorUri: string | null;
  vendorCode: string | null;
  status: number | null;
  clockSkewSeconds: number | null;
  likelyCauses: string[];
  /** What the person was told (the error page's message). */
  userMessage: string | null;
  /** Our stable error code, when the log line shows it. */
  errorCode: string | null;
  fix: string;
}

export interface LaunchStory {
  /** The launchId, or for a request refused before a launch existed `r.<requestId>` (requestKey). */
  id: string;
  launchId: string | null;
  requestIds: string[];
  outcome: LaunchOutcome;
  mode: string | null;
  registration: string | null;
  iss: string | null;
  clientId: string | null;
  startedAt: string;
  endedAt: string;
  durationMs: number;
  steps: TraceStep[];
  diagnosis: StoryDiagnosis | null;
}

export interface StoryFilter {
  /** A launchId, or a requestId of one of its requests. */
  launch?: string;
  failed?: boolean;
  /** Epoch ms: launches with a step at or after it. */
  since?: number;
}

export interface StorySummary {
  launches: number;
  failed: number;
  pending: number;
  complete: number;
}

// --- Which records, which fields -------------------------------------------------------------------------

/** The events of a launch, and for each the fields read from it (besides the common ones). */
const KNOWN_FIELDS: Record<string, readonly string[]> = {
  'launch.start': ['mode', 'iss'],
  discovery: ['iss', 'url', 'durationMs', 'issuer', 'authorization_endpoint', 'token_endpoint', 'capabilities', 'code_challenge_methods', 'outcome', 'reason', 'warning', 'advertised', 'ours', 'fix'],
  'discovery.rate_limited': ['iss', 'limit_per_minute'],
  'launch.scope_dropped': ['scopes', 'reason'],
  'authorize.redirect': ['endpoint', 'client_id', 'redirect_uri', 'scope', 'pkce_method', 'client_auth'],
  'launch.frame_check': ['mode'],
  'launch.cookie_blocked': ['embedded_mode', 'launch_cookie'],
  'callback.received': ['has_code', 'error', 'launch_cookie'],
  'callback.replayed': [],
  'callback.duplicate': [],
  'callback.state': ['found', 'launch_cookie', 'reason', 'transaction_age_ms', 'mode'],
  'callback.iss': ['iss', 'outcome', 'expected', 'advertised'],
  'launch.failed': ['step', 'error', 'error_description'],
  'launch.rejected': ['reason', 'iss'],
  'token.request': ['endpoint', 'grant_type', 'redirect_uri', 'redirect_uri_matches_authorize', 'client_id', 'client_auth', 'pkce_verifier_matches_challenge', 'code_sent_before'],
  'token.response': [
    'status', 'outcome', 'error', 'error_description', 'error_uri', 'vendor_code', 'duration_ms', 'server_date', 'clock_skew_s', 'likely_causes',
    'reason', 'reason_code', 'token_type', 'expires_in', 'scope', 'patient', 'encounter', 'id_token_check',
  ],
  'token.id_token_ignored': ['reason'],
  'launch.complete': ['patient', 'scopes_not_granted', 'evicted_contexts', 'contexts'],
  'error.response': ['code', 'status', 'method', 'path'],
  'error.unhandled': ['err'],
};
const COMMON_FIELDS = ['level', 'time', 'event', 'requestId', 'launchId', 'registration', 'msg'] as const;

/** A request ends without a launch when one of these is all it logged (refused before a launch existed). */
const LAUNCHLESS_FAILURES = new Set(['launch.rejected', 'launch.cookie_blocked', 'callback.state', 'error.response']);
const LAUNCH_PATH = /^\/(launch|login|callback)(\/|$)/;
const MAX_TEXT = 600;
const MAX_LIST = 20;

export function isLaunchEvent(event: unknown): boolean {
  return typeof event === 'string' && Object.hasOwn(KNOWN_FIELDS, event);
}

/**
 * The known fields of a launch record (strings clipped, lists bounded), or undefined when the record is not
 * one of a launch's events. Nothing else of the record survives.
 */
export function project(record: LogRecord): LogRecord | undefined {
  const event = record.event;
  if (!isLaunchEvent(event)) return undefined;
  const out: LogRecord = {};
  for (const k of [...COMMON_FIELDS, ...KNOWN_FIELDS[event as string]!]) {
    if (!Object.hasOwn(record, k)) continue;
    const v = k === 'err' ? errFields(record[k]) : clean(record[k]);
    if (v !== undefined) out[k] = v;
  }
  if (typeof out.time !== 'string' && typeof out.time !== 'number') return undefined;
  return out;
}

function clean(v: unknown): unknown {
  if (typeof v === 'string') return clip(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return v;
  if (Array.isArray(v)) return v.slice(0, MAX_LIST).filter((x) => typeof x === 'string' || typeof x === 'number').map((x) => (typeof x === 'string' ? clip(x) : x));
  return undefined; // objects are not read: only the fields named above, one level deep
}

function errFields(v: unknown): unknown {
  if (!v || typeof v !== 'object') return undefined;
  const e = v as Record<string, unknown>;
  return { name: typeof e.name === 'string' ? clip(e.name) : 'Error', message: typeof e.message === 'string' ? clip(e.message) : '' };
}

function clip(s: string): string {
  return s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s;
}

/** Epoch ms of a record's time (pino's ISO time, or epoch ms), or NaN. */
export function recordTime(r: LogRecord): number {
  const t = r.time;
  if (typeof t === 'number') return t;
  if (typeof t === 'string') return Date.parse(t);
  return Number.NaN;
}

// --- Grouping ---------------------------------------------------------------------------------------------

export interface GroupedRecord {
  /** The story the records belong to: a launchId, or a requestId for a request refused before a launch existed. */
  key: string;
  records: LogRecord[];
}

/**
 * Assigns records, in the order they were written, to launches. Streaming, so that the trace page can keep up
 * with a running server and `explain` with a log of any length; its memory is bounded (LRU maps).
 */
export class LaunchGrouper {
  /** requestId → the story its records belong to. */
  private readonly owner: LRUCache<string, string>;
  /** Records of a request whose launch is not known yet (callback.received), by requestId. */
  private readonly waiting: LRUCache<string, LogRecord[]>;

  constructor(opts: { maxRequests?: number } = {}) {
    const max = opts.maxRequests ?? 10_000;
    this.owner = new LRUCache({ max });
    this.waiting = new LRUCache({ max: Math.max(100, Math.floor(max / 10)) });
  }

  /** Takes one projected record; says which story gets which records now (none while a record waits). */
  accept(record: LogRecord): GroupedRecord[] {
    const launchId = typeof record.launchId === 'string' && record.launchId ? record.launchId : undefined;
    const requestId = typeof record.requestId === 'string' && record.requestId ? record.requestId : undefined;
    if (launchId) return this.assign(launchId, requestId, record);
    if (!requestId) return [];
    const known = this.owner.get(requestId);
    if (known) return [{ key: known, records: [record] }];
    if (endsWithoutLaunch(record)) return this.assign(requestKey(requestId), requestId, record);
    const waiting = this.waiting.get(requestId) ?? [];
    if (waiting.length < 20) waiting.push(record);
    this.waiting.set(requestId, waiting);
    return [];
  }

  private assign(key: string, requestId: string | undefined, record: LogRecord): GroupedRecord[] {
    if (!requestId) return [{ key, records: [record] }];
    this.owner.set(requestId, key);
    const earlier = this.waiting.get(requestId) ?? [];
    this.waiting.delete(requestId);
    return [{ key, records: [...earlier, record] }];
  }
}

function endsWithoutLaunch(r: LogRecord): boolean {
  const event = r.event as string;
  if (!LAUNCHLESS_FAILURES.has(event)) return false;
  if (event === 'callback.state') return r.found === false;
  if (event === 'error.response') return typeof r.path === 'string' && LAUNCH_PATH.test(r.path);
  return true;
}

/**
 * The story key of a request refused before a launch existed. The `.` never occurs in a launchId (base64url),
 * so a request id chosen by a client (X-Request-Id) can never name someone's launch.
 */
export function requestKey(requestId: string): string {
  return `r.${requestId}`;
}

/** Groups a whole log (any order: sorted by time first, a newest-first export reversed). */
export function groupRecords(records: readonly LogRecord[]): Map<string, LogRecord[]> {
  const timed = records.map((r, i) => ({ r, t: recordTime(r), i })).filter((x) => !Number.isNaN(x.t));
  if (timed.length > 1 && timed[0]!.t > timed[timed.length - 1]!.t) timed.reverse().forEach((x, i) => (x.i = i));
  timed.sort((a, b) => a.t - b.t || a.i - b.i);
  const grouper = new LaunchGrouper({ maxRequests: 100_000 });
  const out = new Map<string, LogRecord[]>();
  for (const { r } of timed) {
    for (const g of grouper.accept(r)) out.set(g.key, [...(out.get(g.key) ?? []), ...g.records]);
  }
  return out;
}

// --- The story ----------------------------------------------------------------------------------------------

/** The story of one launch from its records (any order). */
export function buildStory(key: string, records: readonly LogRecord[]): LaunchStory {
  const sorted = records.map((r, i) => ({ r, t: recordTime(r), i })).filter((x) => !Number.isNaN(x.t)).sort((a, b) => a.t - b.t || a.i - b.i);
  const steps: TraceStep[] = [];
  let previous: number | undefined;
  for (const { r, t } of sorted) {
    steps.push(step(r, t, previous));
    previous = t;
  }
  const first = sorted[0]?.t ?? 0;
  const last = sorted[sorted.length - 1]?.t ?? first;
  const find = (event: string) => sorted.find((x) => x.r.event === event)?.r;
  const launchId = sorted.find((x) => typeof x.r.launchId === 'string')?.r.launchId as string | undefined;
  const requestIds = [...new Set(sorted.map((x) => x.r.requestId).filter((v): v is string => typeof v === 'string'))];
  const failing = steps.findIndex((s) => s.outcome === 'failed');
  const complete = Boolean(find('launch.complete'));
  const outcome: LaunchOutcome = failing !== -1 ? 'failed' : complete ? 'complete' : 'pending';
  const start = find('launch.start');
  const authorize = find('authorize.redirect');
  return {
    id: key,
    launchId: launchId ?? null,
    requestIds,
    outcome,
    mode: str(start?.mode) ?? str(find('callback.state')?.mode) ?? null,
    registration: sorted.map((x) => str(x.r.registration)).find(Boolean) ?? null,
    iss: str(start?.iss) ?? str(find('launch.rejected')?.iss) ?? null,
    clientId: str(authorize?.client_id) ?? str(find('token.request')?.client_id) ?? null,
    startedAt: new Date(first).toISOString(),
    endedAt: new Date(last).toISOString(),
    durationMs: last - first,
    steps,
    diagnosis: failing === -1 ? null : diagnose(sorted.map((x) => x.r), sorted[failing]!.r),
  };
}

/** Stories of a whole log: failed first, then launches still waiting for their callback, then complete ones; newest first in each. */
export function storiesFromRecords(records: readonly LogRecord[], filter: StoryFilter = {}): LaunchStory[] {
  const projected = records.map(project).filter((r): r is LogRecord => r !== undefined);
  return sortStories([...groupRecords(projected)].map(([key, rs]) => buildStory(key, rs)).filter((s) => matches(s, filter)));
}

export function matches(s: LaunchStory, f: StoryFilter): boolean {
  if (f.launch && s.id !== f.launch && s.launchId !== f.launch && !s.requestIds.includes(f.launch)) return false;
  if (f.failed && s.outcome !== 'failed') return false;
  if (f.since !== undefined && Date.parse(s.endedAt) < f.since) return false;
  return true;
}

const ORDER: Record<LaunchOutcome, number> = { failed: 0, pending: 1, complete: 2 };

export function sortStories(stories: LaunchStory[]): LaunchStory[] {
  return stories.sort((a, b) => ORDER[a.outcome] - ORDER[b.outcome] || Date.parse(b.startedAt) - Date.parse(a.startedAt));
}

export function summarize(stories: readonly LaunchStory[]): StorySummary {
  return {
    launches: stories.length,
    failed: stories.filter((s) => s.outcome === 'failed').length,
    pending: stories.filter((s) => s.outcome === 'pending').length,
    complete: stories.filter((s) => s.outcome === 'complete').length,
  };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const yesNo = (v: unknown): string | undefined => (typeof v === 'boolean' ? (v ? 'yes' : 'no') : undefined);
const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
/** Our error code, when the line shows it (a redacting logger may hide it). */
const ourCode = (v: unknown): string | undefined => (typeof v === 'string' && /^[a-z][a-z_]{2,60}$/.test(v) ? v : undefined);

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

function step(r: LogRecord, t: number, previous: number | undefined): TraceStep {
  const event = r.event as string;
  const details: { label: string; value: string }[] = [];
  const add = (label: string, v: unknown) => {
    const value = typeof v === 'boolean' ? (v ? 'yes' : 'no') : Array.isArray(v) ? v.join(', ') : v === null || v === undefined || v === '' ? undefined : String(v);
    if (value !== undefined) details.push({ label, value });
  };
  for (const k of KNOWN_FIELDS[event] ?? []) {
    if (k === 'likely_causes' || k === 'err') continue; // the diagnosis lists the causes
    if (k === 'code' && !ourCode(r.code)) continue;
    add(k, r[k]);
  }
  if (event === 'error.unhandled') {
    const e = r.err as { name?: string; message?: string } | undefined;
    add('error', e ? `${e.name}: ${e.message}` : undefined);
  }
  const { outcome, summary } = describe(r);
  return {
    event,
    time: new Date(t).toISOString(),
    sincePreviousMs: previous === undefined ? null : t - previous,
    durationMs: num(r.duration_ms) ?? num(r.durationMs) ?? null,
    outcome,
    summary,
    details,
  };
}

/** One line per step, and whether it went well. */
function describe(r: LogRecord): { outcome: StepOutcome; summary: string } {
  const ok = (summary: string) => ({ outcome: 'ok' as const, summary });
  const warning = (summary: string) => ({ outcome: 'warning' as const, summary });
  const failed = (summary: string) => ({ outcome: 'failed' as const, summary });
  switch (r.event) {
    case 'launch.start':
      return ok(`${r.mode === 'standalone' ? 'Standalone' : 'EHR'} launch requested${str(r.iss) ? ` for ${r.iss}` : ''}`);
    case 'discovery':
      if (str(r.warning)) return warning(str(r.msg)?.replace(/^discovery: /, '') ?? `SMART configuration: ${r.warning}`);
      return str(r.outcome)
        ? failed(`SMART configuration not usable (${r.outcome}): ${str(r.reason) ?? 'no reason given'}`)
        : ok(`SMART configuration read from ${str(r.url) ?? str(r.iss) ?? 'the EHR'}`);
    case 'discovery.rate_limited':
      return failed(`Not contacted: too many new issuers in the last minute (limit ${num(r.limit_per_minute) ?? '?'})`);
    case 'launch.scope_dropped':
      return warning(`Scopes ${str(r.scopes) ?? ''} not requested (${str(r.reason) ?? 'no reason given'})`);
    case 'authorize.redirect':
      return ok(`Browser sent to ${str(r.endpoint) ?? 'the authorization endpoint'} as ${str(r.client_id) ?? '?'} (scope "${str(r.scope) ?? ''}", PKCE ${str(r.pkce_method) ?? '?'}, client auth ${str(r.client_auth) ?? '?'})`);
    case 'launch.frame_check':
      return ok('Inside the EHR\'s frame: checking that the launch cookie comes back');
    case 'launch.cookie_blocked':
      return failed('The launch cookie did not come back inside the EHR\'s frame (third-party cookies blocked)');
    case 'callback.received':
      return r.error ? warning(`Authorization response with error=${str(r.error)}`) : r.has_code ? ok('Authorization response with a code') : warning('Authorization response without a code or an error');
    case 'callback.replayed':
      return ok('Callback delivered again after it completed: the first result was shown');
    case 'callback.duplicate':
      return ok('Callback delivered again while the first was in flight: waited for it');
    case 'callback.state':
      if (r.found === true) return ok(`Matched the pending launch, started ${formatMs(num(r.transaction_age_ms) ?? 0)} before`);
      if (r.launch_cookie === false) return failed('No launch cookie came back with the callback, so no pending launch can be this browser\'s');
      return failed(r.reason === 'started_by_another_browser'
        ? 'The state belongs to a launch started in another browser'
        : 'No pending launch for this state (unknown, expired or already used)');
    case 'callback.iss':
      if (r.outcome === 'mismatch') return failed(`The authorization response names another issuer (iss ${str(r.iss) ?? '?'}) than ${str(r.expected) ?? 'the SMART configuration\'s'}: its code was not used (RFC 9207)`);
      if (r.outcome === 'missing') return failed('The authorization response has no iss although the server advertises it: its code was not used (RFC 9207)');
      if (r.outcome === 'repeated') return failed('The authorization response carries iss more than once: its code was not used (RFC 9207)');
      return warning('The iss response parameter could not be checked (the SMART configuration has no issuer)');
    case 'launch.failed':
      return failed(`The authorization server returned error=${str(r.error) ?? '?'}${str(r.error_description) ? `: "${r.error_description}"` : ''}`);
    case 'launch.rejected':
      return failed(`Refused before any request: ${str(r.reason) === 'iss_not_allowed' ? `iss ${str(r.iss) ?? ''} is not on the allow-list` : str(r.reason) ?? 'refused'}`);
    case 'token.request':
      return ok(`Code sent to ${str(r.endpoint) ?? 'the token endpoint'} (client auth ${str(r.client_auth) ?? '?'}; redirect_uri the same as at authorize: ${yesNo(r.redirect_uri_matches_authorize) ?? '?'}; PKCE verifier matches the challenge: ${yesNo(r.pkce_verifier_matches_challenge) ?? '?'}; code sent before: ${yesNo(r.code_sent_before) ?? '?'})`);
    case 'token.response': {
      if (str(r.error)) return failed(`${num(r.status) ?? ''} ${r.error}${str(r.error_description) ? `: "${r.error_description}"` : ' (no error_description)'}`.trim());
      if (r.outcome === 'id_token_invalid') return failed(`The ID token failed the ${str(r.id_token_check) ?? '?'} check: ${str(r.reason) ?? 'invalid'}`);
      if (str(r.outcome)) return failed(`Token endpoint ${r.outcome === 'timeout' ? 'did not answer in time' : r.outcome === 'network_error' ? `unreachable (${str(r.reason) ?? 'network error'})` : r.outcome === 'server_error' ? `failed (${num(r.status) ?? '5xx'})` : `answer unusable (${str(r.reason_code) ?? str(r.reason) ?? 'invalid'})`}`);
      return ok(`Tokens received (${num(r.status) ?? 200}; scope "${str(r.scope) ?? ''}"; expires in ${num(r.expires_in) ?? '?'} s; patient in context: ${yesNo(r.patient) ?? '?'})`);
    }
    case 'token.id_token_ignored':
      return warning('The server sent an ID token although openid was not requested: set aside unread');
    case 'launch.complete':
      return ok(`Launch complete; the server holds the tokens${str(r.scopes_not_granted) ? ` (not granted: ${r.scopes_not_granted})` : ''}`);
    case 'error.response': {
      const status = num(r.status);
      const text = `${status ?? ''} ${str(r.method) ?? ''} ${str(r.path) ?? ''}: ${str(r.msg) ?? ''}`.replace(/\s+/g, ' ').trim();
      return status !== undefined && status < 400 ? ok(text) : failed(`Answered ${text}`);
    }
    case 'error.unhandled':
      return failed('Unexpected error (500)');
    default:
      return ok(str(r.msg) ?? String(r.event));
  }
}

// --- Diagnosis ----------------------------------------------------------------------------------------------

/** What to do when the ID token fails each check (the log's id_token_check). */
const ID_TOKEN_FIXES: Record<string, string> = {
  nonce: 'The ID token\'s nonce is not this launch\'s: an ID token from another sign-in was returned (a replay, or a server caching tokens). Launch again; if it repeats, report it to the EHR.',
  iss: 'The ID token\'s iss must equal the issuer in the EHR\'s SMART configuration byte for byte (watch for a trailing slash): the EHR must fix one of them.',
  aud: 'The ID token\'s aud must be this app\'s client id: check that the client id configured here is the one the EHR issued for this environment.',
  azp: 'The ID token names several audiences and its azp is not this app\'s client id: report it to the EHR.',
  exp: 'The ID token had expired when it arrived: compare the EHR\'s clock (its Date header) with ours and sync the server clock (NTP).',
  nbf: 'The ID token is not valid yet: compare the EHR\'s clock with ours and sync the server clock (NTP).',
  signature: 'The ID token\'s signature does not verify with the keys at the EHR\'s jwks_uri: it was signed by another key or altered. If the EHR rotated its keys, launch again in a minute; otherwise report it to the EHR.',
  signing_key: 'The ID token is signed with a key that the EHR\'s jwks_uri does not publish: if the EHR is rotating keys, launch again in a minute; otherwise report it to the EHR.',
  alg: 'The ID token\'s algorithm is refused (none or a shared-secret HMAC never pass; otherwise the one the server advertises): report it to the EHR.',
  jwks: 'The keys at the EHR\'s jwks_uri could not be read: check that this server can reach it (egress, DNS, TLS) and launch again.',
  missing: 'openid was requested but the token response has no id_token: check that the client is registered for openid and fhirUser at the EHR, or leave them out of SMART_SCOPE.',
};

/** What failed, what the server said, the likely causes and the fix, from the failing record and its launch. */
function diagnose(records: readonly LogRecord[], failing: LogRecord): StoryDiagnosis {
  const find = (event: string) => records.find((r) => r.event === event);
  const tokenRequest = find('token.request');
  const authorize = find('authorize.redirect');
  const errorResponse = [...records].reverse().find((r) => r.event === 'error.response');
  const redirectUri = str(tokenRequest?.redirect_uri) ?? str(authorize?.redirect_uri);
  const clientId = str(tokenRequest?.client_id) ?? str(authorize?.client_id);
  const clientAuth = str(tokenRequest?.client_auth) ?? str(authorize?.client_auth);
  const tokenResponse = [...records].reverse().find((r) => r.event === 'token.response');
  const skew = num(tokenResponse?.clock_skew_s) ?? null;
  const base: StoryDiagnosis = {
    step: failing.event as string,
    headline: '',
    error: null, errorDescription: null, errorUri: null, vendorCode: null,
    status: num(failing.status) ?? num(errorResponse?.status) ?? null,
    clockSkewSeconds: skew,
    likelyCauses: [],
    userMessage: str(errorResponse?.msg) ?? null,
    errorCode: ourCode(errorResponse?.code) ?? null,
    fix: '',
  };
  const code = base.errorCode;
  const event = failing.event;

  if (event === 'token.response' && str(failing.error)) {
    const error = str(failing.error)!;
    const d: StoryDiagnosis = {
      ...base,
      headline: `The token endpoint refused the authorization code: ${error}`,
      error, errorDescription: str(failing.error_description) ?? null, errorUri: str(failing.error_uri) ?? null, vendorCode: str(failing.vendor_code) ?? null,
      likelyCauses: list(failing.likely_causes),
    };
    if (error === 'invalid_grant') {
      d.fix = `Check, in this order: the redirect URI registered at the EHR is exactly ${redirectUri ?? 'PUBLIC_URL + /callback'} (byte for byte: https, host, port, no trailing slash), and every instance runs with the same PUBLIC_URL; ` +
        'the code is redeemed once and within its lifetime (nothing in front of the app retries or replays the callback); the client id is the one for this environment; the server clock is right (NTP). Then launch again.';
    } else if (error === 'invalid_client') {
      d.fix = `The EHR did not accept the client's credentials. Check the client id${clientId ? ` (${clientId})` : ''} for this environment and the client type registered at the EHR: ${clientAuth === 'none' ? 'we authenticated as a public client; a confidential registration needs SMART_CLIENT_SECRET or SMART_PRIVATE_KEY' : clientAuth === 'private_key_jwt' ? 'for private_key_jwt, the key id (kid) must be in the JWKS registered at the EHR (or served at the registered JWKS URL) and the algorithm must match' : `we sent a client secret (${clientAuth ?? 'client_secret_basic'}): check SMART_CLIENT_SECRET and SMART_CLIENT_AUTH_METHOD${clientAuth === 'client_secret_post' ? '' : ', and, when the likely causes say the id or secret holds characters the two encodings send differently, SMART_CLIENT_AUTH_ENCODING (form or raw)'}`}.`;
    } else if (error === 'invalid_scope') {
      d.fix = 'Compare SMART_SCOPE with the scopes registered for this client at the EHR (SMART v1 .read vs v2 .rs syntax).';
    } else {
      d.fix = `The EHR refused the token request (${error}): see its description and the likely causes above, and the EHR's documentation of this error.`;
    }
    return d;
  }
  if (event === 'token.response') {
    const outcome = str(failing.outcome);
    const endpoint = str(tokenRequest?.endpoint) ?? 'the token endpoint';
    if (outcome === 'id_token_invalid') {
      const check = str(failing.id_token_check) ?? 'id_token';
      return {
        ...base, headline: `The ID token failed the ${check} check`, errorDescription: str(failing.reason) ?? null,
        fix: ID_TOKEN_FIXES[check] ?? 'The EHR answered with an ID token that failed validation: see the reason above.',
      };
    }
    if (outcome === 'invalid_response') {
      return {
        ...base, headline: `The token response could not be used (${str(failing.reason_code) ?? 'invalid'})`, errorDescription: str(failing.reason) ?? null,
        fix: 'The EHR answered, but its token response failed validation: check its id_token (issuer equal to the SMART configuration\'s issuer, audience the client id, signature through its jwks_uri, a fhirUser claim) and the server clock.',
      };
    }
    return {
      ...base,
      headline: outcome === 'timeout' ? 'The token endpoint did not answer in time' : outcome === 'network_error' ? `The token endpoint could not be reached (${str(failing.reason) ?? 'network error'})` : `The token endpoint failed (${num(failing.status) ?? '5xx'})`,
      fix: `Check that this server can reach ${endpoint} (egress, DNS, TLS), the EHR's status, and SMART_HTTP_TIMEOUT_MS. The user can launch again once it answers.`,
    };
  }
  if (event === 'callback.iss') {
    return {
      ...base, headline: 'The authorization response failed the RFC 9207 issuer check: its code was not sent to the token endpoint',
      fix: `Compare the EHR's SMART configuration issuer (${str(failing.expected) ?? '?'}) with the iss its authorization server puts in its responses (${str(failing.iss) ?? 'none'}): they must be equal byte for byte. If they are, the response did not come from the server this launch was sent to (a mix-up attack, or two EHRs sharing one redirect URI); launch again.`,
    };
  }
  if (event === 'launch.failed') {
    const error = str(failing.error) ?? 'error';
    return {
      ...base,
      headline: `The authorization server refused the authorization request: ${error}`,
      error, errorDescription: str(failing.error_description) ?? null,
      fix: error === 'access_denied'
        ? 'The user declined or cancelled at the EHR. Nothing to fix unless it keeps happening; then check that the scopes the app asks for are ones this user may grant.'
        : `Check the registration at the EHR: the client id${clientId ? ` (${clientId})` : ''}, the redirect URI ${redirectUri ?? '(PUBLIC_URL + /callback)'} and the scopes must all be registered. The error description says which.`,
    };
  }
  if (event === 'callback.state') {
    if (failing.launch_cookie === false) {
      return {
        ...base, headline: 'The browser did not send the launch cookie back with the callback',
        fix: 'Inside an EHR\'s frame the browser blocks the app\'s cookie: set COOKIE_MODE=embedded (needs an https PUBLIC_URL), or have the EHR open the app in a new window. Behind a TLS-terminating router, set TRUST_PROXY so that Secure cookies are sent.',
      };
    }
    return failing.reason === 'started_by_another_browser'
      ? { ...base, headline: 'The callback came to another browser than the one that started the launch', fix: 'A sign-in link was opened in another browser (or copied). Launch again from one browser.' }
      : {
        ...base, headline: 'No pending launch for this state',
        fix: 'The launch expired (LAUNCH_TTL_SECONDS), its callback was used already (a replayed or bookmarked callback URL), or another instance handled /launch without a shared store: with several instances, set REDIS_URL.',
      };
  }
  if (event === 'launch.rejected') {
    return {
      ...base, headline: `The iss ${str(failing.iss) ?? ''} is not on the allow-list`.replace('  ', ' '),
      fix: 'If this EHR should be allowed, add its FHIR base URL to SMART_ISS (or SMART_CONFIG_FILE); the iss must match exactly (a trailing /* matches one path segment).',
    };
  }
  if (event === 'launch.cookie_blocked') {
    return {
      ...base, headline: 'The launch cookie did not come back inside the EHR\'s frame',
      fix: 'The EHR shows the app in an iframe and the browser blocks third-party cookies: set COOKIE_MODE=embedded (with an https PUBLIC_URL and FRAME_ANCESTORS naming the EHR), or have the EHR open the app in a new window.',
    };
  }
  if (event === 'discovery') {
    return {
      ...base, headline: `The EHR's SMART configuration could not be used (${str(failing.outcome) ?? 'failed'})`, errorDescription: str(failing.reason) ?? null,
      fix: `Check that ${str(failing.url) ?? 'the iss + /.well-known/smart-configuration'} is reachable from this server and valid: https endpoints, code_challenge_methods_supported with S256, capabilities, and grant types. The iss must be the FHIR base URL.`,
    };
  }
  if (event === 'discovery.rate_limited') {
    return { ...base, headline: 'Too many issuers never seen before in the last minute', fix: 'List your tenants in SMART_ISS instead of a wildcard, or raise SMART_DISCOVERY_NEW_PER_MINUTE if real launches reach the limit.' };
  }
  // Only the error page says what went wrong.
  return { ...base, headline: base.userMessage ?? 'The request failed', fix: fixForResponse(code, base.status, records) };
}

function fixForResponse(code: string | null, status: number | null, records: readonly LogRecord[]): string {
  switch (code) {
    case 'launch_params_missing': return 'The EHR\'s launch URL must carry iss and launch: check the launch URI registered at the EHR (PUBLIC_URL + /launch); a standalone launch starts at /login.';
    case 'state_expired': return 'The user took longer than LAUNCH_TTL_SECONDS between the launch and the callback. Raise it if sign-ins at this EHR are slow.';
    case 'patient_context_missing': return 'Patient scopes were granted without a patient: launch from a patient\'s chart, or for standalone launches ask for launch/patient.';
    case 'authorization_response_invalid': return 'The authorization response was not usable (no code, or the RFC 9207 iss check failed): launch again; if it repeats, compare the EHR\'s issuer with the iss of its responses.';
    case 'id_token_invalid':
    case 'token_response_invalid': return 'The EHR\'s token response failed validation: check its id_token (issuer, audience, signature, fhirUser claim) and the server clock.';
    case 'session_store_unavailable': return 'The session store (Redis) did not answer: see /readyz for the reason; the launch can be tried again once it is back.';
    case 'rate_limited': return 'Too many launches from one address: raise LAUNCH_RATE_LIMIT if a whole site shares one address (a NAT).';
    default:
  }
  if (status === 429) return 'Too many launches from one address: raise LAUNCH_RATE_LIMIT if a whole site shares one address (a NAT).';
  if (status === 503) return 'A store or the EHR was unavailable: see /readyz; the launch can be tried again.';
  if (records.some((r) => r.event === 'error.unhandled')) return 'An unexpected error: the server log has its stack under the same requestId. Please report it.';
  return 'See the message above: it is what the person saw.';
}
