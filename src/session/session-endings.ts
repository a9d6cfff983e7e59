/**
 * When a browser session ends, its launch contexts end with it: their token sets leave the token store and their
 * tokens are revoked at the EHR (the revocation itself is smart/context-endings.ts, reached through the
 * `endContexts` callback given here). This module is how the server *notices* that a session ended, whatever
 * ended it, and how the token sets' lifetime follows the session's.
 *
 * Endings we cause are handled where they happen: logout (routes/logout.ts), a context evicted by
 * MAX_CONTEXTS_PER_SESSION (routes/callback.ts), the absolute timeout met by a request (session-middleware.ts), a
 * refresh token found invalid (smart/token-refresher.ts). The session store ends sessions silently (the memory
 * store drops an idle session; Redis expires its key), so beside each session we keep a small *session index*
 * entry: a hash of the session id → its context ids and when it began, with a deadline (when the session would
 * end: its idle expiry, capped by SESSION_MAX_HOURS) and an expiry of its own longer than the session's. It is
 * read in two ways:
 *
 * - a request that arrives with the cookie of a session the store no longer has (the store's `get` finds
 *   nothing): its index entry is taken and its contexts ended, in the background (the request answers at once);
 * - a sweep on each instance, every sweepIntervalMs (a tenth of the idle timeout, between 1 and 30 s), takes the
 *   entries whose deadline has passed (by SWEEP_MARGIN_MS) and ends their contexts.
 *
 * Taking an entry is atomic (a Redis script; in memory, one synchronous step), so of the request, the sweep and
 * several instances, one ends each session's contexts, once. In Redis (RedisSessionIndex) deadlines are computed
 * with the Redis server's clock, the clock that expires the session keys, so instances' clocks do not matter.
 *
 * The store's methods are wrapped (track): every session path, express-session's or a faster one of the /fhir
 * route, must go through them, and costs at most O(1) extra work there:
 *   get     a miss (no session for this id) → take the index entry (once per id per minute) and end its contexts
 *   set     (a save; rare) → record the contexts, push the deadline, extend the token sets' expiry
 *   touch   → push the deadline and extend the token sets' expiry: called only when the throttled touch
 *           (throttleTouches) reaches the store, at most once per session per touch interval, never per request;
 *           with Redis the commands are sent in the same tick as the session's own EXPIRE, so they go in one write
 *   destroy → forget the entry (logout and regenerate end or carry over the contexts themselves)
 *
 * Token sets are stored for the session's remaining life plus a grace period (tokenTtlSeconds): long enough for the
 * sweep to take them (and revoke their tokens) after the session ends, short enough that none outlives its
 * session by more than that grace: at most sweepIntervalMs + SWEEP_MARGIN_MS + one minute.
 */
import { createHash } from 'node:crypto';
import type { Store } from 'express-session';
import type { LRUCache } from 'lru-cache';
import { LazyLru } from '../lazy-lru.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { TokenStore } from './token-store.js';

/** `refresh_id_token_invalid`: a refresh's ID token failed a check (token-refresher.ts). `memory_full`: the in-memory token store was full and pushed this context's token set out (token-store.ts). */
export type ContextEndReason = 'logout' | 'evicted' | 'absolute_timeout' | 'idle_timeout' | 'refresh_invalid_grant' | 'ended_during_refresh' | 'refresh_id_token_invalid' | 'memory_full';

export interface ContextEnding {
  reason: ContextEndReason;
  /** How an idle or absolute ending was noticed: a request with the cookie of a gone session, or the sweep. */
  noticed?: 'request' | 'sweep';
  /** sha256Short of the session id, to correlate with launch.complete's session_sha. */
  sessionSha?: string;
}

/** Ends these launch contexts (takes their token sets, revokes in the background). Never throws, never waits. */
export type EndContexts = (contextIds: readonly string[], ending: ContextEnding, log?: Logger) => void;

export interface SessionIndexEntry {
  /** The session id's hash (the index key). */
  key: string;
  contexts: string[];
  createdAt: number;
}

/**
 * The per-session index. `lifeMs`: from now to the session's deadline; `keepMs`: how much longer than that the
 * entry itself is kept (so that it outlives the session and its token sets).
 */
export interface SessionIndex {
  save(key: string, entry: { contexts: string[]; createdAt: number }, lifeMs: number, keepMs: number): Promise<void>;
  /** Pushes the deadline of an entry that exists; does nothing otherwise. */
  touch(key: string, lifeMs: number, keepMs: number): Promise<void>;
  forget(key: string): Promise<void>;
  /** Removes and returns the entry (of several callers, one gets it). */
  claim(key: string): Promise<SessionIndexEntry | undefined>;
  /** Removes and returns up to `max` entries whose deadline passed more than `marginMs` ago. */
  claimDue(marginMs: number, max: number): Promise<SessionIndexEntry[]>;
}

/** A store that brings its own index (createRedisSessionStore attaches a RedisSessionIndex). */
export const SESSION_INDEX = Symbol.for('smart-bff.sessionIndex');

/** How long past its deadline an entry is left before the sweep takes it (the store's own expiry comes first). */
export const SWEEP_MARGIN_MS = 2000;
/** Entries taken per sweep round; a round continues while full batches come back, up to SWEEP_MAX_BATCHES. */
const SWEEP_BATCH = 100;
const SWEEP_MAX_BATCHES = 20;

export type SessionTimeouts = Pick<Config, 'sessionIdleSeconds' | 'sessionAbsoluteSeconds'>;

/** How often each instance sweeps: a tenth of the idle timeout, between 1 and 30 seconds. */
export function sweepIntervalMs(c: Pick<Config, 'sessionIdleSeconds'>): number {
  return Math.min(30_000, Math.max(1000, Math.floor((c.sessionIdleSeconds * 1000) / 10)));
}

/** From `now` to the session's deadline: the idle timeout, capped by what is left of the absolute one (≥ 1 s). */
export function sessionLifeMs(c: SessionTimeouts, createdAt: number | undefined, now = Date.now()): number {
  const idle = c.sessionIdleSeconds * 1000;
  const left = (createdAt ?? now) + c.sessionAbsoluteSeconds * 1000 - now;
  return Math.max(1000, Math.min(idle, left));
}

/** What a token set is given beyond its session's deadline: time for the sweep to take it and revoke its tokens. */
export function tokenGraceMs(c: Pick<Config, 'sessionIdleSeconds'>): number {
  return sweepIntervalMs(c) + SWEEP_MARGIN_MS + 60_000;
}

/** The expiry of a session's token sets, in seconds from now. */
export function tokenTtlSeconds(c: SessionTimeouts, createdAt: number | undefined, now = Date.now()): number {
  return Math.ceil((sessionLifeMs(c, createdAt, now) + tokenGraceMs(c)) / 1000);
}

/** How long an index entry outlives its deadline: longer than the token sets, so it can still name them. */
function indexKeepMs(c: Pick<Config, 'sessionIdleSeconds'>): number {
  return tokenGraceMs(c) + 10 * 60_000;
}

export function sessionKey(sid: string): string {
  return createHash('sha256').update(sid).digest('base64url').slice(0, 32);
}

/** The index in memory, for the memory session store (one instance): a bounded cache, and it says so. */
export class MemorySessionIndex implements SessionIndex {
  /** Made at the first session saved (lazy-lru.ts). */
  private readonly lazy: LazyLru<string, { contexts: string[]; createdAt: number; deadline: number }>;

  constructor(opts: { max?: number; now?: () => number } = {}) {
    this.lazy = new LazyLru({ max: opts.max ?? 100_000, ttlAutopurge: true });
    if (opts.now) this.now = opts.now;
  }

  private get entries(): LRUCache<string, { contexts: string[]; createdAt: number; deadline: number }> {
    return this.lazy.cache;
  }

  private get lru(): LRUCache<string, { contexts: string[]; createdAt: number; deadline: number }> | undefined {
    return this.lazy.made;
  }

  private now = (): number => Date.now();

  async save(key: string, entry: { contexts: string[]; createdAt: number }, lifeMs: number, keepMs: number): Promise<void> {
    this.entries.set(key, { contexts: [...entry.contexts], createdAt: entry.createdAt, deadline: this.now() + lifeMs }, { ttl: lifeMs + keepMs });
  }

  async touch(key: string, lifeMs: number, keepMs: number): Promise<void> {
    const e = this.lru?.get(key, { updateAgeOnGet: false });
    if (e) this.entries.set(key, { ...e, deadline: this.now() + lifeMs }, { ttl: lifeMs + keepMs });
  }

  async forget(key: string): Promise<void> {
    this.lru?.delete(key);
  }

  async claim(key: string): Promise<SessionIndexEntry | undefined> {
    const e = this.lru?.get(key, { updateAgeOnGet: false });
    if (!e) return undefined;
    this.entries.delete(key);
    return { key, contexts: e.contexts, createdAt: e.createdAt };
  }

  async claimDue(marginMs: number, max: number): Promise<SessionIndexEntry[]> {
    const before = this.now() - marginMs;
    const due: SessionIndexEntry[] = [];
    if (!this.lru) return due;
    for (const [key, e] of this.lru.entries()) {
      if (due.length >= max) break;
      if (e.deadline <= before) due.push({ key, contexts: e.contexts, createdAt: e.createdAt });
    }
    for (const d of due) this.entries.delete(d.key);
    return due;
  }

  /** Entries held (tests). */
  get size(): number {
    return this.lru?.size ?? 0;
  }
}

export interface SessionEndingsOptions {
  config: SessionTimeouts;
  tokenStore: TokenStore;
  endContexts: EndContexts;
  logger: Logger;
  /** The index when the store brings none (the memory store). */
  index?: SessionIndex;
  /** Tests: another sweep interval, or none (false) to see what a request alone notices. */
  sweepIntervalMs?: number | false;
}

const TRACKED = Symbol('smart-bff.sessionEndingsTracked');

type Callback = (err?: unknown, ...rest: unknown[]) => void;
type SessionLike = { contexts?: Record<string, unknown>; createdAt?: number } | null | undefined;

/** Notices session endings for one session store (see the module comment) and keeps token sets' expiry in step. */
export class SessionEndings {
  readonly index: SessionIndex;
  private readonly timer: NodeJS.Timeout | undefined;
  /** Session ids already looked up after a miss (a bounded cache: a stale cookie is sent with every request). */
  private readonly missed = new LazyLru<string, true>({ max: 10_000, ttl: 60_000 });
  private sweeping: Promise<number> | undefined;
  private lastProblem: string | undefined;

  constructor(private readonly opts: SessionEndingsOptions, store?: Store) {
    const own = store ? (store as Store & { [SESSION_INDEX]?: SessionIndex })[SESSION_INDEX] : undefined;
    this.index = own ?? opts.index ?? new MemorySessionIndex();
    const interval = opts.sweepIntervalMs ?? sweepIntervalMs(opts.config);
    if (interval !== false) {
      this.timer = setInterval(() => void this.sweep(), interval);
      this.timer.unref();
    }
  }

  /** Ends contexts now (the absolute timeout met by a request): the caller then regenerates or destroys the session. */
  endContexts(contextIds: readonly string[], ending: ContextEnding, log?: Logger): void {
    if (contextIds.length) this.opts.endContexts(contextIds, ending, log);
  }

  /** Takes the entries whose deadline passed and ends their contexts. Resolves to the number of sessions ended. */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Wraps the store's get, set, touch and destroy (once per store, however many apps share it). */
  track(store: Store): void {
    const marked = store as Store & { [TRACKED]?: true };
    if (marked[TRACKED]) return;
    marked[TRACKED] = true;
    const get = store.get.bind(store);
    const set = store.set.bind(store);
    const destroy = store.destroy.bind(store);
    const touch = store.touch?.bind(store);
    store.get = (sid, callback) => get(sid, ((err: unknown, sess: SessionLike) => {
      if (!err && !sess) this.onMiss(sid);
      (callback as Callback)(err, sess);
    }) as never);
    store.set = (sid, sess, callback) => {
      this.onSave(sid, sess as SessionLike);
      set(sid, sess, callback);
    };
    if (touch) {
      store.touch = (sid, sess, callback) => {
        this.onTouch(sid, sess as SessionLike);
        touch(sid, sess, callback);
      };
    }
    store.destroy = (sid, callback) => {
      this.quietly(this.index.forget(sessionKey(sid)));
      destroy(sid, callback);
    };
  }

  private onSave(sid: string, sess: SessionLike): void {
    const contexts = Object.keys(sess?.contexts ?? {});
    const key = sessionKey(sid);
    if (!contexts.length) return this.quietly(this.index.forget(key));
    const createdAt = sess?.createdAt ?? Date.now();
    const life = sessionLifeMs(this.opts.config, createdAt);
    this.quietly(this.index.save(key, { contexts, createdAt }, life, indexKeepMs(this.opts.config)));
    this.quietly(this.opts.tokenStore.extend(contexts, tokenTtlSeconds(this.opts.config, createdAt)));
  }

  private onTouch(sid: string, sess: SessionLike): void {
    const contexts = Object.keys(sess?.contexts ?? {});
    if (!contexts.length) return;
    const life = sessionLifeMs(this.opts.config, sess?.createdAt);
    this.quietly(this.index.touch(sessionKey(sid), life, indexKeepMs(this.opts.config)));
    this.quietly(this.opts.tokenStore.extend(contexts, tokenTtlSeconds(this.opts.config, sess?.createdAt)));
  }

  private onMiss(sid: string): void {
    if (this.missed.made?.has(sid)) return;
    this.missed.cache.set(sid, true);
    const key = sessionKey(sid);
    this.quietly(this.index.claim(key).then((entry) => {
      if (entry) this.end(entry, 'request');
    }));
  }

  private async sweepOnce(): Promise<number> {
    let ended = 0;
    try {
      for (let batch = 0; batch < SWEEP_MAX_BATCHES; batch++) {
        const due = await this.index.claimDue(SWEEP_MARGIN_MS, SWEEP_BATCH);
        for (const entry of due) this.end(entry, 'sweep');
        ended += due.length;
        if (due.length < SWEEP_BATCH) break;
      }
    } catch (err) {
      this.problem(err);
    }
    return ended;
  }

  private end(entry: SessionIndexEntry, noticed: 'request' | 'sweep'): void {
    const absoluteEnd = entry.createdAt + this.opts.config.sessionAbsoluteSeconds * 1000;
    const reason = absoluteEnd <= Date.now() + SWEEP_MARGIN_MS ? 'absolute_timeout' : 'idle_timeout';
    this.endContexts(entry.contexts, { reason, noticed, sessionSha: entry.key.slice(0, 10) });
  }

  /** Index and token-expiry updates never fail a request: a failure is logged (once per distinct problem). */
  private quietly(p: Promise<unknown>): void {
    p.then(() => (this.lastProblem = undefined), (err: unknown) => this.problem(err));
  }

  private problem(err: unknown): void {
    const reason = (err as Error)?.message ?? String(err);
    if (this.lastProblem === reason) return;
    this.lastProblem = reason;
    this.opts.logger.warn({ event: 'session.index_failed', reason }, 'session index: an update failed; sessions that end meanwhile may keep their tokens until they expire');
  }
}
