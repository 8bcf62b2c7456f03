import { performance } from 'node:perf_hooks';

/**
 * A timeout of fixed length that is restarted far more often than it is reached: the head deadline
 * of a keep-alive connection (restarted by every request), its idle timeout (restarted after every
 * response). A restart only records the time; the node timer under it is armed once and, when it
 * fires, looks at the countdown in force then: stopped (nothing to do), restarted since (armed again
 * for what is left), or run out (`expire` is called). As precise as re-arming a node timer at each
 * restart, without the timer-list work per request (clearing and re-arming node timers per request,
 * these and the sockets' own, cost the proxy ~7 % of its throughput, measured with them removed;
 * nginx defers timer updates for the same reason).
 */
export class LazyTimer<T> {
  private timer: NodeJS.Timeout | undefined;
  /** the node timer will fire */
  private armed = false;
  /** a countdown is running */
  private running = false;
  /** when it began (performance.now()) */
  private start = 0;

  constructor(
    private readonly ms: number,
    private readonly expire: (owner: T) => void,
    private readonly owner: T,
  ) {}

  /** Starts the countdown from now (a running one starts over). */
  restart(): void {
    this.start = performance.now();
    this.running = true;
    // an armed timer fires no later than this countdown ends (same length, armed earlier)
    if (this.armed) return;
    this.armed = true;
    // unref'd as node's socket timeouts are: a connection's deadline never keeps the process alive
    this.timer = setTimeout(fired, this.ms, this as LazyTimer<unknown>).unref();
  }

  /** Stops the countdown; the node timer, if armed, fires and finds nothing to do. */
  stop(): void {
    this.running = false;
  }

  /** Stops it for good (the connection is gone): the node timer is cleared too. */
  clear(): void {
    this.running = false;
    this.armed = false;
    clearTimeout(this.timer);
  }

  /** @internal the node timer fired */
  fired(): void {
    this.armed = false;
    if (!this.running) return;
    const left = this.ms - (performance.now() - this.start);
    if (left >= 1) {
      this.armed = true;
      this.timer = setTimeout(fired, left, this as LazyTimer<unknown>).unref();
      return;
    }
    this.running = false;
    this.expire(this.owner);
  }
}

function fired(timer: LazyTimer<unknown>): void {
  timer.fired();
}
