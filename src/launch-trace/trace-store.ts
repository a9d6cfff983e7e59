/**
 * Where the trace page keeps recent launches: the (projected) log records of each, by story key (launch-trace/
 * story.ts). Bounded either way, in two rings: real launches (a launchId) up to LAUNCH_TRACE_SIZE, and requests
 * refused before a launch existed (`r.<requestId>`: an iss not on the allow-list, an unknown state, a cookie that
 * did not come back, a rate limit) up to a quarter of that (refusedTraceSize). Anyone can send the second kind,
 * as many as the rate limit lets through, so they have a ring of their own: a flood of them only pushes out
 * other refusals, never a real launch.
 *
 * - in memory (one instance): two LRUs (the story written to least recently goes first), each story with at most
 *   RECORDS_PER_LAUNCH records. A bounded cache, and says so.
 * - in Redis (every instance sees every launch, whichever instance served its /launch and its /callback): two
 *   capped indexes (sorted sets by start time, trimmed to their bound; the stories trimmed off are deleted with
 *   them) and one list per story (at most RECORDS_PER_LAUNCH records), every key expiring TRACE_TTL_SECONDS
 *   after its last write.
 *
 * Writes come from the log tap and never fail a request: a Redis that is down loses trace records, nothing else.
 */
import { LRUCache } from 'lru-cache';
import type { RedisClient } from '../session/redis-client.js';
import { isRequestKey, recordTime, type LogRecord } from './story.js';

export const RECORDS_PER_LAUNCH = 40;
export const TRACE_TTL_SECONDS = 24 * 3600;
const PREFIX = 'smart-bff:trace:';
const KEY = /^[A-Za-z0-9._-]{1,80}$/;

export interface TracedLaunch {
  key: string;
  records: LogRecord[];
}

export interface TraceStore {
  append(key: string, records: readonly LogRecord[]): Promise<void>;
  /** Every story kept (newest first in each ring): at most the bound of launches, and of refusals. */
  recent(): Promise<TracedLaunch[]>;
  get(key: string): Promise<TracedLaunch | undefined>;
}

/** How many requests refused before a launch existed are kept, apart from the LAUNCH_TRACE_SIZE launches. */
export function refusedTraceSize(launchTraceSize: number): number {
  return Math.max(1, Math.ceil(launchTraceSize / 4));
}

/** A story key as the page and the stores accept it (a launchId, or r.<requestId>). */
export function isTraceKey(key: string): boolean {
  return KEY.test(key);
}

export class MemoryTraceStore implements TraceStore {
  private readonly launches: LRUCache<string, { started: number; records: LogRecord[] }>;
  private readonly refused: LRUCache<string, { started: number; records: LogRecord[] }>;

  constructor(max: number) {
    this.launches = new LRUCache({ max });
    this.refused = new LRUCache({ max: refusedTraceSize(max) });
  }

  async append(key: string, records: readonly LogRecord[]): Promise<void> {
    const ring = this.ring(key);
    const entry = ring.get(key) ?? { started: earliest(records), records: [] };
    for (const r of records) if (entry.records.length < RECORDS_PER_LAUNCH) entry.records.push(r);
    ring.set(key, entry);
  }

  async recent(): Promise<TracedLaunch[]> {
    return [this.launches, this.refused].flatMap((ring) => [...ring.entries()]
      .sort(([, a], [, b]) => b.started - a.started)
      .map(([key, e]) => ({ key, records: [...e.records] })));
  }

  async get(key: string): Promise<TracedLaunch | undefined> {
    const e = this.ring(key).get(key);
    return e ? { key, records: [...e.records] } : undefined;
  }

  private ring(key: string) {
    return isRequestKey(key) ? this.refused : this.launches;
  }
}

export class RedisTraceStore implements TraceStore {
  private readonly rings: { index: string; max: number }[];

  constructor(private readonly client: RedisClient, max: number) {
    this.rings = [{ index: `${PREFIX}index`, max }, { index: `${PREFIX}refused-index`, max: refusedTraceSize(max) }];
  }

  async append(key: string, records: readonly LogRecord[]): Promise<void> {
    if (!isTraceKey(key) || records.length === 0) return;
    const list = `${PREFIX}launch:${key}`;
    const { index, max } = this.rings[isRequestKey(key) ? 1 : 0]!;
    const replies = await this.client.multi()
      .zAdd(index, { score: earliest(records), value: key }, { condition: 'NX' })
      .rPush(list, records.map((r) => JSON.stringify(r)))
      .lTrim(list, 0, RECORDS_PER_LAUNCH - 1)
      .expire(list, TRACE_TTL_SECONDS)
      .expire(index, TRACE_TTL_SECONDS)
      .zCard(index)
      .exec();
    const length = Number(replies[5]);
    if (length > max) {
      // Oldest first out, their records with them. By name, not by count: another instance (or this one, for the
      // next request) may trim at the same time, and each removes the same members, where popping a count each
      // would remove too many (and empty the ring under a flood).
      const dropped = await this.client.zRange(index, 0, -(max + 1));
      if (dropped.length) await this.client.multi().zRem(index, dropped).del(dropped.map((d) => `${PREFIX}launch:${d}`)).exec();
    }
  }

  async recent(): Promise<TracedLaunch[]> {
    const keys: string[] = [];
    for (const { index, max } of this.rings) keys.push(...(await this.client.zRange(index, 0, max - 1, { REV: true })).filter(isTraceKey));
    if (keys.length === 0) return [];
    const multi = this.client.multi();
    for (const k of keys) multi.lRange(`${PREFIX}launch:${k}`, 0, -1);
    const lists = await multi.exec();
    return keys.map((key, i) => ({ key, records: parseAll(lists[i] as unknown as string[]) })).filter((l) => l.records.length > 0);
  }

  async get(key: string): Promise<TracedLaunch | undefined> {
    if (!isTraceKey(key)) return undefined;
    const records = parseAll(await this.client.lRange(`${PREFIX}launch:${key}`, 0, -1));
    return records.length ? { key, records } : undefined;
  }
}

function earliest(records: readonly LogRecord[]): number {
  const times = records.map(recordTime).filter((t) => !Number.isNaN(t));
  return times.length ? Math.min(...times) : Date.now();
}

function parseAll(items: readonly string[] | null | undefined): LogRecord[] {
  const out: LogRecord[] = [];
  for (const item of items ?? []) {
    try {
      const v = JSON.parse(item) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) out.push(v as LogRecord);
    } catch {
      // not ours: skipped
    }
  }
  return out;
}
