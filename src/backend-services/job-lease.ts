/**
 * Who drives an export job. With several instances sharing BULK_DATA_DIR and Redis, a job must be polled and
 * downloaded by one instance at a time: the instance that drives it holds a lease in Redis
 * (`smart-bff:bulk:lease:<jobId>`, its own random owner id, expiring after `ttlMs`) and renews it while it works;
 * when it stops renewing (it crashed, or was cut off from Redis) the lease lapses and another instance takes the job
 * over (export-jobs.ts, the sweep). A cancel asked on an instance that does not hold the lease is handed to the
 * one that does (`smart-bff:bulk:cancel:<jobId>`), which sees it at its next renewal: only the lease holder ever
 * writes the job's record, so a cancel never races a progress write from elsewhere.
 *
 * Without Redis there is one instance: LocalJobLeases only says which jobs this process already drives.
 */
import { randomBytes } from 'node:crypto';
import type { RedisClient } from '../session/redis-client.js';

export type RenewResult = 'held' | 'lost' | 'cancel';

export interface JobLeases {
  /** Lease duration; the holder renews every `renewMs`. */
  readonly ttlMs: number;
  readonly renewMs: number;
  /** Whether other instances may drive jobs (a shared lease store). */
  readonly shared: boolean;
  /** Takes the job's lease when nobody holds it: true when this instance now drives the job. */
  acquire(id: string): Promise<boolean>;
  /** Extends this instance's lease: `lost` when it lapsed and another took it, `cancel` when a cancel was asked elsewhere. */
  renew(id: string): Promise<RenewResult>;
  release(id: string): Promise<void>;
  /** Asks the lease holder to cancel the job. */
  requestCancel(id: string): Promise<void>;
  /** Whether a cancel was asked (the holder or the next taker cancels instead of resuming). */
  cancelRequested(id: string): Promise<boolean>;
}

export class LocalJobLeases implements JobLeases {
  readonly ttlMs = Infinity;
  readonly renewMs = Infinity;
  readonly shared = false;
  private readonly held = new Set<string>();

  async acquire(id: string): Promise<boolean> {
    if (this.held.has(id)) return false;
    this.held.add(id);
    return true;
  }

  async renew(id: string): Promise<RenewResult> {
    return this.held.has(id) ? 'held' : 'lost';
  }

  async release(id: string): Promise<void> {
    this.held.delete(id);
  }

  async requestCancel(): Promise<void> {}

  async cancelRequested(): Promise<boolean> {
    return false;
  }
}

const PREFIX = 'smart-bff:bulk:';
/** Renews when still ours; tells a cancel asked elsewhere. */
const RENEW = `if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('pexpire', KEYS[1], ARGV[2])
if redis.call('exists', KEYS[2]) == 1 then return 2 end
return 1`;
const RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

export class RedisJobLeases implements JobLeases {
  readonly shared = true;
  readonly renewMs: number;
  /** This instance's owner id (random per process): a lease is ours only if it holds this value. */
  private readonly owner = randomBytes(12).toString('base64url');

  constructor(private readonly client: RedisClient, readonly ttlMs = 15_000) {
    this.renewMs = Math.max(200, Math.floor(ttlMs / 5));
  }

  async acquire(id: string): Promise<boolean> {
    return (await this.client.set(`${PREFIX}lease:${id}`, this.owner, { NX: true, PX: this.ttlMs })) === 'OK';
  }

  async renew(id: string): Promise<RenewResult> {
    const r = Number(await this.client.eval(RENEW, { keys: [`${PREFIX}lease:${id}`, `${PREFIX}cancel:${id}`], arguments: [this.owner, String(this.ttlMs)] }));
    return r === 0 ? 'lost' : r === 2 ? 'cancel' : 'held';
  }

  async release(id: string): Promise<void> {
    await this.client.eval(RELEASE, { keys: [`${PREFIX}lease:${id}`], arguments: [this.owner] });
  }

  async requestCancel(id: string): Promise<void> {
    await this.client.set(`${PREFIX}cancel:${id}`, '1', { EX: 7 * 86400 });
  }

  async cancelRequested(id: string): Promise<boolean> {
    return (await this.client.exists(`${PREFIX}cancel:${id}`)) === 1;
  }
}
