/**
 * Announcements that a stored value changed, so that every instance's read caches (read-cache.ts) drop it: a
 * session saved or destroyed, a token set stored, refreshed, taken or deleted. The writer announces once its
 * write has completed; its own caches drop the value at once.
 *
 * - LocalBus: one instance (the memory stores): the announcement goes to this process's caches.
 * - RedisBus: several instances sharing Redis: announcements go through Redis pub/sub on one channel, published
 *   with the store's own connection and received on a connection of their own. Pub/sub delivers to whoever is
 *   subscribed at that moment and keeps nothing, so the caches are "live" (allowed to keep anything) only while
 *   the subscription is up; when it drops, they empty and read the store every time until it is back.
 *
 * Order of events across instances: A writes → A's write completes → A publishes → B receives and drops its
 * entry. A read on B that started before B received the announcement may return the old or the new value; it is
 * used for that one request and not kept (read-cache.ts), so B's cache never holds the old value after the
 * announcement arrived. An announcement lost in transit is bounded by the caches' short TTL.
 */
import type { Logger } from '../log.js';
import type { RedisClient } from './redis-client.js';

export type CacheKind = 'session' | 'tokens';

/** What a read cache offers the bus (ReadCache has both). */
export interface Invalidatable {
  invalidate(key: string): void;
  setLive(live: boolean): void;
}

export interface InvalidationBus {
  /** `key` of `kind` changed (the write has completed): every instance's caches drop it, this one's at once. */
  publish(kind: CacheKind, key: string): void;
  /** Registers a cache for one kind; it is told when announcements stop or start arriving. */
  register(kind: CacheKind, cache: Invalidatable): void;
  close(): Promise<void>;
}

export class LocalBus implements InvalidationBus {
  protected readonly caches = new Map<CacheKind, Invalidatable[]>();

  publish(kind: CacheKind, key: string): void {
    this.deliver(kind, key);
  }

  register(kind: CacheKind, cache: Invalidatable): void {
    this.caches.set(kind, [...(this.caches.get(kind) ?? []), cache]);
  }

  async close(): Promise<void> {}

  protected deliver(kind: CacheKind, key: string): void {
    for (const c of this.caches.get(kind) ?? []) c.invalidate(key);
  }
}

const CHANNEL = 'smart-bff:invalidate';
const PREFIX: Record<CacheKind, string> = { session: 's ', tokens: 't ' };

export class RedisBus extends LocalBus {
  private readonly subscriber: RedisClient;
  private live = false;
  /** Subscribed once (node-redis subscribes again by itself after a reconnection, before it is ready). */
  private subscribed = false;
  private closing = false;
  private lastProblem: string | undefined;

  constructor(private readonly client: RedisClient, private readonly logger: Logger) {
    super();
    this.subscriber = client.duplicate();
    this.subscriber.on('error', (err: unknown) => this.problem(err));
    this.subscriber.on('ready', () => this.setLive(this.subscribed));
    // node-redis subscribes again by itself on reconnecting; until then announcements are lost, so nothing is kept
    this.subscriber.on('end', () => this.setLive(false));
    this.subscriber.on('reconnecting', () => this.setLive(false));
  }

  /** Connects the subscriber in the background (like the store's own connection, it never blocks start-up). */
  start(): void {
    this.subscriber.connect()
      .then(() => this.subscriber.subscribe(CHANNEL, (message) => this.onMessage(message)))
      .then(() => {
        this.subscribed = true;
        this.setLive(this.subscriber.isReady);
      })
      .catch((err: unknown) => this.problem(err));
  }

  override publish(kind: CacheKind, key: string): void {
    this.deliver(kind, key);
    this.client.publish(CHANNEL, `${PREFIX[kind]}${key}`).catch((err: unknown) => this.problem(err));
  }

  override register(kind: CacheKind, cache: Invalidatable): void {
    super.register(kind, cache);
    cache.setLive(this.live);
  }

  override async close(): Promise<void> {
    this.closing = true;
    this.setLive(false);
    if (this.subscriber.isOpen) await this.subscriber.close().catch(() => this.subscriber.destroy());
  }

  /** Whether announcements are arriving (tests). */
  get isLive(): boolean {
    return this.live;
  }

  private onMessage(message: string): void {
    if (message.startsWith(PREFIX.session)) this.deliver('session', message.slice(PREFIX.session.length));
    else if (message.startsWith(PREFIX.tokens)) this.deliver('tokens', message.slice(PREFIX.tokens.length));
  }

  private setLive(live: boolean): void {
    if (live === this.live || (live && this.closing)) return;
    this.live = live;
    for (const list of this.caches.values()) for (const c of list) c.setLive(live);
    if (live) this.lastProblem = undefined;
  }

  private problem(err: unknown): void {
    this.setLive(false);
    const reason = (err as Error)?.message ?? String(err);
    if (this.closing || reason === this.lastProblem) return;
    this.lastProblem = reason;
    this.logger.warn({ event: 'cache.invalidation_unavailable', reason }, 'read caches: invalidations from other instances are not arriving; sessions and tokens are read from Redis at every call until they are');
  }
}
