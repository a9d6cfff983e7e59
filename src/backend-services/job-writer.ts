/**
 * The one writer of an export job's record (job.json): writes happen one at a time, in the order asked, each
 * storing the record as it was when asked. Once a final status is written (complete, failed, cancelled) the
 * record is closed: later progress writes are dropped and a second final status is refused, so the last write
 * is always the final one, whatever order the exporter's events and its completion arrive in.
 */
export class JobWriter<T extends object> {
  private chain: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private record: T, private readonly write: (record: T) => Promise<void>) {}

  get current(): T {
    return this.record;
  }

  get isFinal(): boolean {
    return this.closed;
  }

  /** A progress update; dropped once the record is final. */
  progress(patch: Partial<T>): Promise<void> {
    if (this.closed) return this.chain;
    this.record = { ...this.record, ...patch };
    return this.enqueue();
  }

  /** The final status; false (and nothing written) when the record is already final. */
  async finish(patch: Partial<T>): Promise<boolean> {
    if (this.closed) {
      await this.chain;
      return false;
    }
    this.closed = true;
    this.record = { ...this.record, ...patch };
    await this.enqueue();
    return true;
  }

  /** Closes the record without writing anything more (the job is now another instance's to write). */
  abandon(): void {
    this.closed = true;
  }

  /** Resolves when every write asked so far has landed. */
  settled(): Promise<void> {
    return this.chain;
  }

  private enqueue(): Promise<void> {
    const snapshot = this.record;
    this.chain = this.chain.catch(() => undefined).then(() => this.write(snapshot));
    return this.chain;
  }
}
