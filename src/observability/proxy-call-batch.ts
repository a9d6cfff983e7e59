/**
 * The proxy's per-call metrics, recorded cheaply: every proxied call counts in smart_bff_proxy_requests_total (by
 * method and status) and is observed in the latency histogram, and a small read is the hot path. prom-client hashes
 * and validates the labels on every `inc` and `observe`; done once per call, between the call's other work, that
 * costs about 3 % of a small read's CPU (docs/benchmarks.md), several times what the same calls cost in a loop.
 *
 * So a call writes its method, status and duration into a fixed-size batch (three array writes), and the batch is
 * applied to the prom-client metrics, in one loop, when it is full and whenever either metric is read: prom-client
 * runs a metric's `collect` before every read (each scrape of /metrics). A read therefore sees every call that
 * ended before it, with exactly the counts, buckets and sums that applying each call at once would give; a batch
 * is applied once (it is emptied before it is applied). Memory is fixed: the batch never grows.
 */
import type { Counter, Histogram } from 'prom-client';

/** Calls held before the batch is applied without waiting for a read. */
const DEFAULT_CAPACITY = 256;

export class ProxyCallBatch {
  readonly #methods: string[];
  readonly #statuses: Uint16Array;
  readonly #seconds: Float64Array;
  #length = 0;

  constructor(
    private readonly requests: Counter<'method' | 'status'>,
    private readonly latency: Histogram<'method'>,
    readonly capacity = DEFAULT_CAPACITY,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`ProxyCallBatch: capacity must be a positive integer, not ${capacity}`);
    this.#methods = new Array<string>(capacity);
    this.#statuses = new Uint16Array(capacity);
    this.#seconds = new Float64Array(capacity);
  }

  /** One proxied call that ended: its method, its status as sent to the browser, and its duration in seconds. */
  record(method: string, status: number, seconds: number): void {
    const i = this.#length;
    this.#methods[i] = method;
    this.#statuses[i] = status;
    this.#seconds[i] = seconds;
    if (++this.#length === this.capacity) this.flush();
  }

  /** Applies the held calls to the prom-client metrics (both metrics' `collect` call this). */
  flush(): void {
    const length = this.#length;
    this.#length = 0; // emptied first: a failure below never applies a call twice
    for (let i = 0; i < length; i++) {
      const method = this.#methods[i]!;
      this.requests.inc({ method, status: String(this.#statuses[i]) });
      this.latency.observe({ method }, this.#seconds[i]!);
    }
  }
}
