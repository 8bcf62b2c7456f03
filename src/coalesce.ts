/**
 * Writes only the latest value: at most one write in flight, bursts coalesced. Used where each new
 * state supersedes the previous one (the snapshot file, the fleet registration): the newest value
 * always gets written, intermediate ones may be skipped.
 */
export class LatestWriter<T> {
  private pending: { value: T } | undefined;
  private writing: Promise<void> | undefined;
  lastError: Error | undefined;

  constructor(
    private readonly write: (value: T) => Promise<void>,
    private readonly onError: (err: Error) => void,
    /** quiet time before writing, so a burst in the same tick costs one write */
    private readonly delayMs = 20,
  ) {}

  schedule(value: T): void {
    this.pending = { value };
    this.writing ??= this.drain();
  }

  /** Resolves when the newest scheduled value was written (or failed). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }

  private async drain(): Promise<void> {
    await new Promise((r) => setTimeout(r, this.delayMs));
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
    }
    this.writing = undefined;
  }
}
