/**
 * Writes only the latest value: at most one write in flight, bursts coalesced. Used where each new
 * state supersedes the previous one (the snapshot file, the fleet registration): the newest value
 * always gets written, intermediate ones may be skipped.
 *
 * A write starts once no new value came for `quietMs`, or `maxDelayMs` after the oldest unwritten
 * value, whichever is first: a steady stream of changes still gets written, but a burst costs one
 * write, done after the burst rather than in the middle of it.
 */
export class LatestWriter<T> {
  private pending: { value: T } | undefined;
  private firstPendingAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  lastError: Error | undefined;

  constructor(
    private readonly write: (value: T) => Promise<void>,
    private readonly onError: (err: Error) => void,
    private readonly quietMs = 20,
    private readonly maxDelayMs = quietMs * 10,
  ) {}

  schedule(value: T): void {
    if (!this.pending) this.firstPendingAt = Date.now();
    this.pending = { value };
    if (!this.writing) this.arm();
  }

  /** Writes what is pending now and resolves when the newest value is written (or failed). */
  async flush(): Promise<void> {
    while (this.pending || this.writing) {
      if (!this.writing) {
        clearTimeout(this.timer);
        this.timer = undefined;
        this.writing = this.drain();
      }
      await this.writing;
    }
  }

  private arm(): void {
    clearTimeout(this.timer);
    const wait = Math.max(0, Math.min(this.quietMs, this.firstPendingAt + this.maxDelayMs - Date.now()));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writing = this.drain();
    }, wait);
  }

  private async drain(): Promise<void> {
    while (this.pending) {
      const { value } = this.pending;
      this.pending = undefined;
      try {
        await this.write(value);
        this.lastError = undefined;
      } catch (err) {
        this.lastError = err as Error;
        this.onError(err as Error);
      }
      // values that came during the write wait for their own quiet time
      if (this.pending) {
        this.writing = undefined;
        this.arm();
        return;
      }
    }
    this.writing = undefined;
  }
}
