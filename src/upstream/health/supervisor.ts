import type { UpstreamConfig } from '../../config/schema/upstream.ts';
import { log } from '../../observability/log.ts';
import { normalizeNodes } from '../nodes.ts';
import type { UpstreamNode } from '../types.ts';
import type { HealthVerdict } from './book.ts';
import { compileChecks, NodeCounters, type HealthChecks } from './checks.ts';
import { probe, type ProbeResult } from './probe.ts';

/** One node of a checked upstream, as /status shows it. */
export interface NodeHealthReport {
  node: string;
  healthy: boolean;
  /** ISO time of the last change of `healthy` (or of the start of checking) */
  since: string;
  /** what decided the current state: "start" (nodes start healthy), "active", "passive", "readmit" */
  by: string;
  last_probe?: { at: string; result: string };
}

export interface UpstreamHealthReport {
  upstream: string;
  checks: Array<'active' | 'passive'>;
  nodes: NodeHealthReport[];
}

interface NodeState {
  node: UpstreamNode;
  healthy: boolean;
  since: string;
  by: string;
  /** the active checker's counters (passive counters live in each data plane) */
  counters: NodeCounters;
  lastProbe: { at: string; result: string } | undefined;
  /** next probe (active checks) or readmission (passive checks only) */
  timer: NodeJS.Timeout | undefined;
  /** the node was removed, or its upstream stopped being checked */
  stopped: boolean;
}

/** One checked upstream: its checks, its nodes' states, and the probes in flight. */
class CheckedUpstream {
  readonly nodes = new Map<string, NodeState>();
  private inFlight = 0;
  /** nodes whose probe is due but waits for a free slot (checks.active.concurrency) */
  private readonly queue: NodeState[] = [];

  constructor(
    readonly key: string,
    readonly checks: HealthChecks,
    public config: UpstreamConfig,
    private readonly publish: (v: HealthVerdict) => void,
  ) {}

  /** The upstream's nodes now: new ones start healthy (and probed at once), removed ones stop. */
  setNodes(nodes: readonly UpstreamNode[], config: UpstreamConfig): void {
    this.config = config;
    const keys = new Set(nodes.map((n) => n.key));
    for (const [key, state] of this.nodes) {
      if (keys.has(key)) continue;
      this.stopNode(state);
      this.nodes.delete(key);
    }
    for (const node of nodes) {
      const state = this.nodes.get(node.key);
      if (state !== undefined) {
        state.node = node;
        continue;
      }
      const fresh: NodeState = { node, healthy: true, since: new Date().toISOString(), by: 'start', counters: new NodeCounters(), lastProbe: undefined, timer: undefined, stopped: false };
      this.nodes.set(node.key, fresh);
      if (this.checks.active !== undefined) this.due(fresh);
    }
  }

  stop(): void {
    for (const state of this.nodes.values()) this.stopNode(state);
    this.queue.length = 0;
  }

  private stopNode(state: NodeState): void {
    state.stopped = true;
    clearTimeout(state.timer);
  }

  /** A verdict reached by a data plane's passive check. */
  passive(nodeKey: string, healthy: boolean): void {
    const state = this.nodes.get(nodeKey);
    if (state === undefined || state.healthy === healthy) return;
    this.change(state, healthy, 'passive');
    const passive = this.checks.passive;
    if (!healthy && this.checks.active === undefined && passive !== undefined) {
      // nothing probes the node: it gets traffic again after readmit_after (nginx's fail_timeout)
      clearTimeout(state.timer);
      state.timer = setTimeout(() => {
        state.timer = undefined;
        if (!state.stopped && !state.healthy) this.change(state, true, 'readmit');
      }, passive.readmitAfter);
      state.timer.unref();
    }
    // an active checker counts from here, at the interval of the node's new state
    if (this.checks.active !== undefined && state.timer !== undefined) {
      clearTimeout(state.timer);
      this.schedule(state);
    }
  }

  private change(state: NodeState, healthy: boolean, by: HealthVerdict['by']): void {
    state.healthy = healthy;
    state.since = new Date().toISOString();
    state.by = by;
    state.counters.set(healthy);
    log.warn({ upstream: this.key, node: state.node.key, by }, `upstream node ${healthy ? 'healthy again' : 'unhealthy'}`);
    this.publish({ upstream: this.key, checks: this.checks.id, node: state.node.key, healthy, by });
  }

  private schedule(state: NodeState): void {
    const active = this.checks.active!;
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.due(state);
    }, state.healthy ? active.healthyInterval : active.unhealthyInterval);
    state.timer.unref();
  }

  private due(state: NodeState): void {
    if (state.stopped) return;
    if (this.inFlight >= this.checks.active!.concurrency) {
      this.queue.push(state);
      return;
    }
    this.inFlight++;
    void probe(state.node, this.checks.active!, this.hostHeader(state.node)).then((result) => this.probed(state, result));
  }

  private probed(state: NodeState, result: ProbeResult): void {
    this.inFlight--;
    const next = this.queue.shift();
    if (next !== undefined) this.due(next);
    if (state.stopped) return;
    state.lastProbe = { at: new Date().toISOString(), result: result.detail };
    if (result.outcome !== undefined) {
      const flipped = state.counters.report(result.outcome, this.checks.active!);
      if (flipped !== undefined) this.change(state, flipped, 'active');
    }
    this.schedule(state);
  }

  private hostHeader(node: UpstreamNode): string {
    const active = this.checks.active!;
    if (active.host !== undefined) return active.host;
    if (this.config.pass_host === 'rewrite' && this.config.upstream_host !== undefined) return this.config.upstream_host;
    return node.key.startsWith('[') || active.port !== undefined ? node.host : node.key;
  }

  report(): UpstreamHealthReport {
    const checks: UpstreamHealthReport['checks'] = [];
    if (this.checks.active) checks.push('active');
    if (this.checks.passive) checks.push('passive');
    return {
      upstream: this.key,
      checks,
      nodes: [...this.nodes.values()].map((s) => ({ node: s.node.key, healthy: s.healthy, since: s.since, by: s.by, ...(s.lastProbe && { last_probe: s.lastProbe }) })),
    };
  }
}


/**
 * The instance's health checks, run once per instance in the config pipeline's process (not in
 * each worker, not per route): active probes of every checked upstream's nodes, the authoritative
 * state of every node (for /status and metrics), the passive verdicts data planes report, and the
 * readmission of nodes passive checks took out when no probe would bring them back. Every verdict
 * goes to `publish`, which hands it to every data plane of the instance.
 */
export class HealthSupervisor {
  private readonly upstreams = new Map<string, CheckedUpstream>();
  private readonly listeners: Array<(v: HealthVerdict) => void> = [];

  constructor(
    /** the nodes DNS found for an upstream, when it has them (else its configured nodes are checked) */
    private readonly discovered: (key: string, config: UpstreamConfig) => UpstreamNode[] | undefined = () => undefined,
  ) {}

  /** Verdicts go to `listener` (the data planes); returns nothing to unsubscribe: they live as long as the instance. */
  subscribe(listener: (v: HealthVerdict) => void): void {
    this.listeners.push(listener);
  }

  private readonly publish = (v: HealthVerdict): void => {
    for (const l of this.listeners) l(v);
  };

  /**
   * Follows a new snapshot: checkers of upstreams whose `checks` block is unchanged keep their state
   * (and only learn the node set); a changed block starts that upstream's checks over. `changed` is
   * changedUpstreams() of the snapshot.
   */
  update(changed: ReadonlyMap<string, UpstreamConfig | undefined>): void {
    for (const [key, config] of changed) {
      const current = this.upstreams.get(key);
      let checks: HealthChecks | undefined;
      let nodes: UpstreamNode[] | undefined;
      try {
        checks = config && compileChecks(config.checks);
        nodes = checks && (this.discovered(key, config!) ?? (config!.nodes === undefined ? [] : normalizeNodes(config!.nodes, config!.scheme ?? 'http')));
      } catch {
        checks = undefined; // validated objects compile; this only guards the supervisor against a bug
      }
      if (checks === undefined || nodes === undefined) {
        current?.stop();
        this.upstreams.delete(key);
        continue;
      }
      let checked = current;
      if (checked === undefined || checked.checks.id !== checks.id) {
        current?.stop();
        this.upstreams.set(key, (checked = new CheckedUpstream(key, checks, config!, this.publish)));
      }
      checked.setNodes(nodes, config!);
    }
  }

  /** DNS found other nodes for the upstream: new ones are checked, removed ones no longer. */
  nodesChanged(key: string, nodes: readonly UpstreamNode[]): void {
    const checked = this.upstreams.get(key);
    checked?.setNodes(nodes, checked.config);
  }

  /** A passive verdict a data plane reached: recorded, and handed to every data plane. */
  passive(v: HealthVerdict): void {
    const checked = this.upstreams.get(v.upstream);
    if (checked === undefined || checked.checks.id !== v.checks) return;
    checked.passive(v.node, v.healthy);
  }

  /** Every node that is unhealthy now, as verdicts: what a data plane that starts must learn. */
  verdicts(): HealthVerdict[] {
    const out: HealthVerdict[] = [];
    for (const checked of this.upstreams.values()) {
      for (const s of checked.nodes.values()) {
        if (!s.healthy) out.push({ upstream: checked.key, checks: checked.checks.id, node: s.node.key, healthy: false, by: s.by as HealthVerdict['by'] });
      }
    }
    return out;
  }

  report(): UpstreamHealthReport[] {
    return [...this.upstreams.values()].map((u) => u.report());
  }

  stop(): void {
    for (const checked of this.upstreams.values()) checked.stop();
    this.upstreams.clear();
  }
}
