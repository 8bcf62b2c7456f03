import type { Balancer, NodeSet, PickRequest, UpstreamNode } from '../types.ts';
import { NodeCounters, statusOutcome, type HealthChecks, type Outcome } from './checks.ts';

/** A node's health changed: decided by a probe, by real traffic, or by the passive readmission delay. */
export interface HealthVerdict {
  /** the upstream's key: "upstreams/<id>", "routes/<id>", "services/<id>" */
  upstream: string;
  /** HealthChecks.id of the checks that decided it: a verdict of replaced checks is ignored */
  checks: string;
  /** the node's key, "host:port" */
  node: string;
  healthy: boolean;
  by: 'active' | 'passive' | 'readmit';
}

/**
 * The health of one checked upstream as one process's data plane sees it: which nodes are down,
 * and the passive checker's counters over the requests this process sent. Kept across config
 * changes that keep the upstream's `checks` block (see HealthBook.for).
 */
export class UpstreamHealth {
  /** keys of the nodes that are unhealthy */
  readonly down = new Set<string>();
  private readonly counters = new Map<string, NodeCounters>();

  constructor(
    readonly upstream: string,
    readonly checks: HealthChecks,
    private readonly report: (v: HealthVerdict) => void,
  ) {}

  /** Passive check: the node answered with this status. */
  observeStatus(node: UpstreamNode, status: number): void {
    const passive = this.checks.passive;
    if (passive === undefined) return;
    const outcome = statusOutcome(status, passive);
    if (outcome !== undefined) this.observe(node, outcome);
  }

  /** Passive check: what a real request to the node came to. */
  observe(node: UpstreamNode, outcome: Outcome): void {
    const passive = this.checks.passive;
    if (passive === undefined) return;
    // healthy nodes that keep answering well are the common case: nothing to count
    if (outcome === 'success' && !this.down.has(node.key) && !this.counters.has(node.key)) return;
    let counters = this.counters.get(node.key);
    if (counters === undefined) this.counters.set(node.key, (counters = new NodeCounters(!this.down.has(node.key))));
    const flipped = counters.report(outcome, passive);
    if (flipped === undefined) return;
    this.set(node.key, flipped);
    this.report({ upstream: this.upstream, checks: this.checks.id, node: node.key, healthy: flipped, by: 'passive' });
  }

  /** A verdict reached here or elsewhere (a probe, another worker): counting starts over. */
  set(node: string, healthy: boolean): void {
    if (healthy) this.down.delete(node);
    else this.down.add(node);
    this.counters.get(node)?.set(healthy);
  }

  /** Forgets the nodes the upstream no longer has. */
  retain(nodes: readonly UpstreamNode[]): void {
    const keys = new Set(nodes.map((n) => n.key));
    for (const key of this.down) if (!keys.has(key)) this.down.delete(key);
    for (const key of this.counters.keys()) if (!keys.has(key)) this.counters.delete(key);
  }
}

/**
 * Every checked upstream's health in one process. The data plane reads it on each pick; verdicts
 * arrive from the instance's health supervisor (active probes, passive verdicts of other workers,
 * readmissions) through apply(), and passive verdicts reached here leave through `report`.
 */
export class HealthBook {
  private readonly entries = new Map<string, UpstreamHealth>();
  /** verdicts for an upstream (and checks) this process has not compiled yet */
  private readonly pending = new Map<string, Map<string, HealthVerdict>>();

  constructor(private readonly report: (v: HealthVerdict) => void = () => undefined) {}

  /**
   * The health of the upstream `key` under `checks`: the same object while the checks block stays
   * the same (state, counters survive the change), a new one when it changed.
   */
  for(key: string, checks: HealthChecks, nodes: readonly UpstreamNode[]): UpstreamHealth {
    let entry = this.entries.get(key);
    if (entry === undefined || entry.checks.id !== checks.id) {
      entry = new UpstreamHealth(key, checks, this.report);
      this.entries.set(key, entry);
      const early = this.pending.get(key);
      this.pending.delete(key);
      if (early !== undefined) for (const v of early.values()) if (v.checks === checks.id) entry.set(v.node, v.healthy);
    }
    entry.retain(nodes);
    return entry;
  }

  /** The upstream is gone, or no longer checked. */
  drop(key: string): void {
    this.entries.delete(key);
    this.pending.delete(key);
  }

  apply(v: HealthVerdict): void {
    const entry = this.entries.get(v.upstream);
    if (entry !== undefined && entry.checks.id === v.checks) return entry.set(v.node, v.healthy);
    let early = this.pending.get(v.upstream);
    if (early === undefined) this.pending.set(v.upstream, (early = new Map()));
    early.set(v.node, v);
  }
}

/** `tried` plus the unhealthy nodes: what a balancer must not pick while a healthy node is left. */
class Skipping implements NodeSet {
  constructor(
    private readonly tried: NodeSet | undefined,
    private readonly down: ReadonlySet<string>,
  ) {}

  get size(): number {
    return (this.tried?.size ?? 0) + this.down.size;
  }

  has(node: UpstreamNode): boolean {
    return this.down.has(node.key) || (this.tried !== undefined && this.tried.has(node));
  }
}

/**
 * A balancer that skips unhealthy nodes, the way every balancer skips nodes already tried for a
 * request; priority levels fall through to the next level when all of a level's nodes are down.
 * When no healthy node is left, the request still goes to the upstream's nodes (APISIX does the
 * same: a wrong verdict must not turn into an outage).
 */
export class HealthAwareBalancer implements Balancer {
  readonly needsRequest: boolean | undefined;
  readonly started: Balancer['started'];
  readonly done: Balancer['done'];

  constructor(
    readonly inner: Balancer,
    private readonly health: UpstreamHealth,
  ) {
    this.needsRequest = inner.needsRequest;
    this.started = inner.started?.bind(inner);
    this.done = inner.done?.bind(inner);
  }

  pick(tried?: NodeSet, request?: PickRequest): UpstreamNode | undefined {
    const down = this.health.down;
    if (down.size === 0) return this.inner.pick(tried, request);
    return this.inner.pick(new Skipping(tried, down), request) ?? this.inner.pick(tried, request);
  }
}
