import type { Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from '../config/gateway.ts';
import { updateOf } from '../config/replica.ts';
import { log } from '../observability/log.ts';
import { GatewayInstance } from './gateway.ts';
import { SnapshotHandoff } from './snapshot-handoff.ts';
import { ListingAhead } from './listing-ahead.ts';
import { ConfigPipeline } from './pipeline.ts';
import type { TrafficSnapshot } from '../observability/exchange.ts';
import { mergeTraffic, TrafficStats } from '../observability/traffic.ts';
import type { ToPrimary, ToWorker } from './worker.ts';
import { forkWorker, type EarlyWorker } from './worker-fork.ts';

/**
 * Restart delays of a worker that died: 250 ms after a first death, doubling with each further
 * death within RESTART_WINDOW_MS of the previous one, up to 30 s. A worker that dies on the same
 * input again and again is then retried a few times a minute, not four times a second (which would
 * burn the CPU the surviving workers need and flood the log); one death after a quiet minute is
 * replaced at once again.
 */
export const RESTART_BACKOFF = { initialMs: 250, maxMs: 30_000, windowMs: 60_000 } as const;

/** The delay before replacing a worker that died now, given the times of earlier deaths (pruned in place). */
export function restartDelay(deaths: number[], now: number): number {
  if (deaths.length > 0 && now - deaths[deaths.length - 1]! > RESTART_BACKOFF.windowMs) deaths.length = 0;
  deaths.push(now);
  if (deaths.length > 16) deaths.shift(); // the delay is at its cap long before
  return Math.min(RESTART_BACKOFF.maxMs, RESTART_BACKOFF.initialMs * 2 ** (deaths.length - 1));
}

interface WorkerState {
  worker: Worker;
  /**
   * sent its full snapshot: only then does it get the published changes (before, a change would
   * reach it first, and it would listen with that change alone as its table)
   */
  greeted: boolean;
  /** revision of the last snapshot update the worker applied */
  revision: number | undefined;
  listening: boolean;
  pluginFailures: Record<string, number>;
  tlsRefusals: { noCertificate: number; refused: number };
  /** the worker's last traffic answer (what it counted is kept when it dies) */
  traffic: TrafficSnapshot | undefined;
}

/** How long after every worker listens the primary collects its heap (the start's last messages first). */
const COLLECT_DELAY_MS = 250;

/** How long /metrics waits for a worker's traffic counts before answering without them. */
export const TRAFFIC_WAIT_MS = 1000;

/**
 * `proxy.workers` > 1: this process runs the config pipeline once (one etcd watch per instance)
 * and the status listener; N forked workers share the proxy listeners and each run a data plane,
 * fed with the store's published changes (already validated) over IPC. A worker that dies is
 * replaced and brought up to date with the full snapshot before it listens.
 */
export class ClusterGateway extends GatewayInstance {
  readonly pipeline: ConfigPipeline;
  private readonly workers = new Map<number, WorkerState>();
  /** a greeted worker's first snapshot, in a file (see SnapshotHandoff) */
  private readonly handoff = new SnapshotHandoff();
  /** the listing at start, for the workers to build their tables from while it goes on */
  private readonly ahead = new ListingAhead();
  /** set when draining starts: a worker exiting then is not replaced */
  private draining = false;
  private firstListening: ((a: AddressInfo[]) => void) | undefined;
  /** plugin failures of workers that have exited */
  private readonly retiredFailures = new Map<string, number>();
  private readonly retiredTls = { noCertificate: 0, refused: 0 };
  /** times of recent worker deaths, each within the backoff window of the one before */
  private readonly deaths: number[] = [];
  private listening: Promise<AddressInfo[]> | undefined;
  /** the pipeline has its config (synced, or from the snapshot file): workers may get it */
  private pipelineStarted = false;
  /** workers that said hello before that */
  private readonly waiting: Worker[] = [];
  /** traffic of workers that have exited, as they last reported it */
  private retiredTraffic: TrafficSnapshot | undefined;
  private trafficAsked = 0;
  /** the heap collection after the first listing, once every worker listens (see the pipeline's `collect`) */
  private collectWhenListening: (() => void) | undefined;
  /** per traffic question: called with each worker's answer */
  private readonly trafficAnswers = new Map<number, () => void>();

  constructor(
    config: GatewayConfig,
    private readonly count: number,
    /** workers forked already, at most `count` (the CLI forks the first as soon as it has read portico.yaml: worker-fork.ts) */
    private early: EarlyWorker[] = [],
  ) {
    super(config);
    this.pipeline = new ConfigPipeline(config, {
      // ready once every worker listens with a snapshot (not per revision: readiness must not
      // flap for the milliseconds each change takes to reach the workers)
      ready: () => this.allListening(),
      report: () => ({
        workers: [...this.workers.values()].map((w) => ({ pid: w.worker.process.pid ?? 0, revision: w.revision ?? null, listening: w.listening })),
        plugin_failures: this.pluginFailures(),
        tls_refusals: this.tlsRefusals(),
      }),
      listed: (objects) => {
        if (!this.pipelineStarted && this.ahead.add(objects)) this.tellFollowers();
      },
      // this process serves no traffic, and until every worker listens the start waits for it: the
      // collection comes once they do (~50 ms at 50,000 routes; server/heap.ts)
      collect: (run) => (this.collectWhenListening = run),
    });
    // (the first snapshot is published before any worker is greeted: no update of every object then)
    this.pipeline.store.subscribe((snapshot, diff) => {
      if (this.anyGreeted()) this.broadcast({ type: 'snapshot', update: updateOf(snapshot, diff) });
    });
    this.pipeline.health.subscribe((verdict) => this.broadcast({ type: 'health', verdict }));
    this.pipeline.discovery.subscribe((discovered) => this.broadcast({ type: 'nodes', discovered }));
  }

  /**
   * The workers are forked first (unless the CLI already did), so that each loads its code while the
   * pipeline lists the config; they get their first snapshot, and listen, only once the pipeline has
   * started.
   */
  protected override prepare(): void {
    this.listening = new Promise<AddressInfo[]>((resolve) => (this.firstListening = resolve));
    const early = this.early.splice(0);
    for (let i = 0; i < this.count; i++) {
      const forked = early[i];
      if (forked === undefined) this.fork(i);
      else this.adopt(i, forked.worker, forked);
    }
  }

  protected startProxy(): Promise<AddressInfo[]> {
    this.pipelineStarted = true;
    if (this.ahead.finish()) this.tellFollowers();
    for (const worker of this.waiting.splice(0)) this.greet(worker);
    return this.listening!;
  }

  /** Workers following the listing (server/listing-ahead.ts) and not yet greeted: the file grew. */
  private tellFollowers(): void {
    for (const { worker, greeted } of this.workers.values()) if (!greeted) this.tell(worker);
  }

  /** How far the listing file goes now, if `worker` follows it and it has lines. */
  private tell(worker: Worker): void {
    const at = this.ahead.position;
    if (at !== undefined && this.ahead.follows(worker.id)) this.send(worker, { type: 'listing', ...at });
  }

  /**
   * The whole snapshot first: the worker listens only once it can route. A worker that followed the
   * listing gets only what differs from it.
   */
  private greet(worker: Worker): void {
    const state = this.workers.get(worker.id);
    if (state === undefined) return; // exited meanwhile
    state.greeted = true;
    const snapshot = this.pipeline.store.snapshot;
    if (this.ahead.follows(worker.id)) {
      this.send(worker, { type: 'snapshot', update: this.ahead.settle(snapshot) });
    } else {
      const file = this.handoff.fileFor(snapshot, worker.id);
      this.send(worker, file !== undefined ? { type: 'snapshot-file', path: file } : { type: 'snapshot', update: updateOf(snapshot, undefined) });
    }
    // then the nodes DNS found, and those that are down now: a new worker must not send them traffic
    for (const discovered of this.pipeline.discovery.current()) this.send(worker, { type: 'nodes', discovered });
    for (const verdict of this.pipeline.health.verdicts()) this.send(worker, { type: 'health', verdict });
  }

  /** `index`: the worker's place (0..count-1), kept by its replacement (worker 0 serves the UDP listeners) */
  private fork(index: number): void {
    this.adopt(index, forkWorker(index));
  }

  /** Runs worker `index`: answers it, tracks it, replaces it when it dies. `early`: what it did before. */
  private adopt(index: number, worker: Worker, early?: EarlyWorker): void {
    const state: WorkerState = { worker, greeted: false, revision: undefined, listening: false, pluginFailures: {}, tlsRefusals: { noCertificate: 0, refused: 0 }, traffic: undefined };
    this.workers.set(worker.id, state);
    const onMessage = (m: ToPrimary) => {
      if (m.type === 'config?') {
        this.send(worker, { type: 'config', config: this.config });
      } else if (m.type === 'hello') {
        // (Sent on the worker's request, not on 'online': messages that arrive before the worker
        // has loaded its code and attached a listener are lost.) Before the pipeline has started,
        // the snapshot waits for it.
        if (this.pipelineStarted) this.greet(worker);
        else {
          this.waiting.push(worker);
          // it builds its tables from the listing meanwhile, from the file's first line
          this.ahead.follow(worker.id);
          log.debug({ worker: worker.id }, 'a worker follows the listing');
          this.tell(worker);
        }
      } else if (m.type === 'listing-failed') {
        // it said hello again, or will: it gets the whole snapshot
        this.ahead.done(worker.id);
      } else if (m.type === 'applied') {
        state.revision = m.revision;
        this.handoff.done(worker.id);
        this.ahead.done(worker.id);
        this.pipeline.register();
      } else if (m.type === 'health') {
        this.pipeline.health.passive(m.verdict);
      } else if (m.type === 'rejected') {
        this.pipeline.rejectCompileFailures(m.failures);
      } else if (m.type === 'plugin-failures') {
        state.pluginFailures = m.counts;
        state.tlsRefusals = m.tls;
      } else if (m.type === 'traffic') {
        state.traffic = m.snapshot;
        this.trafficAnswers.get(m.id)?.();
      } else if (m.type === 'listening') {
        state.listening = true;
        this.firstListening?.(m.addresses);
        this.firstListening = undefined;
        const collect = this.collectWhenListening;
        if (collect !== undefined && this.allListening()) {
          this.collectWhenListening = undefined;
          log.debug({ workers: this.count, inMs: COLLECT_DELAY_MS }, 'every worker listens: heap collection next');
          // not in the turn that makes the instance ready: its readiness is answered first
          setTimeout(collect, COLLECT_DELAY_MS).unref();
        }
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      this.workers.delete(worker.id);
      this.handoff.done(worker.id);
      this.ahead.done(worker.id);
      // a dead worker's failures still happened: the instance's totals keep them
      for (const [plugin, n] of Object.entries(state.pluginFailures)) this.retiredFailures.set(plugin, (this.retiredFailures.get(plugin) ?? 0) + n);
      this.retiredTls.noCertificate += state.tlsRefusals.noCertificate;
      this.retiredTls.refused += state.tlsRefusals.refused;
      if (state.traffic !== undefined) this.retiredTraffic = mergeTraffic(this.retiredTraffic === undefined ? [state.traffic] : [this.retiredTraffic, state.traffic]);
      if (this.draining) return;
      const delay = restartDelay(this.deaths, Date.now());
      log.error({ pid: worker.process.pid, code, signal, restartInMs: delay }, `worker died; starting another in ${delay} ms`);
      setTimeout(() => !this.draining && this.fork(index), delay).unref();
    };
    early?.release();
    worker.on('message', onMessage);
    worker.on('exit', onExit);
    for (const m of early?.messages ?? []) onMessage(m);
    if (early?.exited !== undefined) onExit(early.exited.code, early.exited.signal);
  }

  /** The revision every worker serves (the lowest; 0 while one has none). */
  protected override servedRevision(): number {
    let served = Infinity;
    for (const w of this.workers.values()) served = Math.min(served, w.revision ?? 0);
    return served === Infinity ? 0 : served;
  }

  /**
   * The instance's request traffic: each living worker is asked for its counts (exact at the time
   * of asking), plus what exited workers last reported. A worker that does not answer within
   * TRAFFIC_WAIT_MS counts with its previous answer.
   */
  async traffic(): Promise<TrafficSnapshot> {
    const id = ++this.trafficAsked;
    const asked = [...this.workers.values()].filter((w) => w.greeted && w.worker.isConnected());
    if (asked.length > 0) {
      await new Promise<void>((resolve) => {
        let pending = asked.length;
        const done = () => {
          clearTimeout(timer);
          this.trafficAnswers.delete(id);
          resolve();
        };
        const timer = setTimeout(done, TRAFFIC_WAIT_MS);
        this.trafficAnswers.set(id, () => --pending === 0 && done());
        for (const w of asked) this.send(w.worker, { type: 'traffic?', id });
      });
    }
    const parts: TrafficSnapshot[] = [];
    for (const w of this.workers.values()) if (w.traffic !== undefined) parts.push(w.traffic);
    if (this.retiredTraffic !== undefined) parts.push(this.retiredTraffic);
    return parts.length === 0 ? new TrafficStats().snapshot(0) : mergeTraffic(parts);
  }

  reopenLogs(): void {
    for (const { worker } of this.workers.values()) this.send(worker, { type: 'reopen-logs' });
  }

  /** The instance's refused TLS connections: every worker's, living or gone. */
  private tlsRefusals(): { no_certificate: number; refused: number } {
    const total = { ...this.retiredTls };
    for (const w of this.workers.values()) {
      total.noCertificate += w.tlsRefusals.noCertificate;
      total.refused += w.tlsRefusals.refused;
    }
    return { no_certificate: total.noCertificate, refused: total.refused };
  }

  /** The instance's plugin failures: every worker's, living or gone. */
  private pluginFailures(): Record<string, number> {
    const total = new Map(this.retiredFailures);
    for (const w of this.workers.values()) for (const [plugin, n] of Object.entries(w.pluginFailures)) total.set(plugin, (total.get(plugin) ?? 0) + n);
    return Object.fromEntries(total);
  }

  private send(worker: Worker, message: ToWorker): void {
    if (worker.isConnected()) worker.send(message, () => undefined);
  }

  private allListening(): boolean {
    return this.workers.size === this.count && [...this.workers.values()].every((w) => w.listening);
  }

  private anyGreeted(): boolean {
    for (const w of this.workers.values()) if (w.greeted) return true;
    return false;
  }

  /** Published changes, verdicts, nodes: to the workers that have their snapshot (see greeted). */
  private broadcast(message: ToWorker): void {
    for (const { worker, greeted } of this.workers.values()) if (greeted) this.send(worker, message);
  }

  /** Drains every worker: each finishes its in-flight requests and exits. */
  protected async stopProxy(): Promise<void> {
    this.draining = true;
    const exited = [...this.workers.values()].map(
      ({ worker }) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          worker.once('exit', () => resolve());
          // a worker that does not finish within the drain timeout is killed
          setTimeout(() => worker.process.kill('SIGKILL'), this.config.proxy.drain_timeout * 1000 + 5000).unref();
        }),
    );
    // every worker, greeted or not
    for (const { worker } of this.workers.values()) this.send(worker, { type: 'drain' });
    await Promise.all(exited);
    this.handoff.close();
    this.ahead.close();
  }
}
