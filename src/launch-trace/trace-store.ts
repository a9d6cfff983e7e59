/**
 * Where the trace page keeps recent launches: the (projected) log records of each, by story key (launch-trace/
 * story.ts). Bounded either way:
 *
 * - in memory (one instance): a ring of the last LAUNCH_TRACE_SIZE launches (an LRU: the launch written to
 *   least recently goes first), each with at most RECORDS_PER_LAUNCH records. A bounded cache, and says so.
 * - in Redis (every instance sees every launch, whichever instance served its /launch and its /callback): a
 *   capped index (a sorted set by start time, trimmed to LAUNCH_TRACE_SIZE; the launches trimmed off are deleted
 *   with it) and one list per launch (at most RECORDS_PER_LAUNCH records), every key expiring TRACE_TTL_SECONDS
 *   after its last write.
 *
 * Writes come from the log tap and never fail a request: a Redis that is down loses trace records, nothing else.
 */
import { LRUCache } from 'lru-cache';
import type { RedisClient } from '../session/redis-client.js';
import { recordTime, type LogRecord } from './story.js';

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
  /** The most recent launches (newest first), at most `limit`. */
  recent(limit: number): Promise<TracedLaunch[]>;
  get(key: string): Promise<TracedLaunch | undefined>;
}

/** A story key as the page and the stores accept it (a launchId, or r.<requestId>). */
export function isTraceKey(key: string): boolean {
  return KEY.test(key);
}

export class MemoryTraceStore implements TraceStore {
  private readonly launches: LRUCache<string, { started: number; records: LogRecord[] }>;

  constructor(max: number) {
    this.launches = new LRUCache({ max });
  }

  async append(key: string, records: readonly LogRecord[]): Promise<void> {
    const entry = this.launches.get(key) ?? { started: earliest(records), records: [] };
    for (const r of records) if (entry.records.length < RECORDS_PER_LAUNCH) entry.records.push(r);
    this.launches.set(key, entry);
  }

  async recent(limit: number): Promise<TracedLaunch[]> {
    return [...this.launches.entries()]
      .sort(([, a], [, b]) => b.started - a.started)
      .slice(0, limit)
      .map(([key, e]) => ({ key, records: [...e.records] }));
  }

  async get(key: string): Promise<TracedLaunch | undefined> {
    const e = this.launches.get(key);
    return e ? { key, records: [...e.records] } : undefined;
  }
}

export class RedisTraceStore implements TraceStore {
  constructor(private readonly client: RedisClient, private readonly max: number) {}

  async append(key: string, records: readonly LogRecord[]): Promise<void> {
    if (!isTraceKey(key) || records.length === 0) return;
    const list = `${PREFIX}launch:${key}`;
    const index = `${PREFIX}index`;
    const replies = await this.client.multi()
      .zAdd(index, { score: earliest(records), value: key }, { condition: 'NX' })
      .rPush(list, records.map((r) => JSON.stringify(r)))
      .lTrim(list, 0, RECORDS_PER_LAUNCH - 1)
      .expire(list, TRACE_TTL_SECONDS)
      .expire(index, TRACE_TTL_SECONDS)
      .zCard(index)
      .exec();
    const length = Number(replies[5]);
    if (length > this.max) {
      // Oldest first out; their records go with them (another instance may trim at the same time: both are fine).
      const dropped = await this.client.zPopMinCount(index, length - this.max);
      if (dropped.length) await this.client.del(dropped.map((d) => `${PREFIX}launch:${d.value}`));
    }
  }

  async recent(limit: number): Promise<TracedLaunch[]> {
    const keys = (await this.client.zRange(`${PREFIX}index`, 0, Math.max(0, limit - 1), { REV: true })).filter(isTraceKey);
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
