import type { Balancer, UpstreamNode, NodeSet } from '../types.ts';

/**
 * Weighted least connections (APISIX upstream `type: least_conn`): the node with the fewest
 * requests in flight per unit of weight wins.
 *
 * Model: each node has `active`, the attempts the data plane has sent to it (`started`) and not yet
 * seen end (`done`), counted per process — every worker balances on its own traffic, as each
 * nginx worker does in APISIX. pick() compares `active / weight` and changes nothing itself, so a
 * pick that is never sent (the client left while waiting for a slot) cannot leak a count.
 *
 * Why `active / weight` and not APISIX's `(active + 1) / weight`: with the `+ 1`, idle nodes score
 * `1 / weight` and sequential traffic (nothing in flight between requests) always lands on the
 * heaviest node; nginx's least_conn compares `active / weight` and breaks ties with its smooth
 * weighted round robin, so idle nodes share by weight and equal nodes alternate. We do the same:
 * among the nodes at the lowest ratio, the smooth round robin (roundrobin.ts) decides.
 *
 * A linear scan instead of APISIX's binary heap: upstreams have a handful of nodes, a scan over
 * typed arrays costs less than heap upkeep on every started/done, and the tie-break needs to see
 * every tied node anyway. Ratios are compared by cross-multiplying (`a.active * b.weight`), exact
 * on integers.
 */
export function createLeastConn(nodes: UpstreamNode[]): Balancer {
  const eligible = nodes.filter((node) => node.weight > 0);
  if (eligible.length === 0) return { pick: () => undefined };
  return new LeastConn(eligible);
}

class LeastConn implements Balancer {
  private readonly nodes: UpstreamNode[];
  private readonly index = new Map<UpstreamNode, number>();
  private readonly weights: Float64Array;
  /** requests in flight per node */
  private readonly active: Float64Array;
  /** smooth round robin running totals, for ties */
  private readonly current: Float64Array;
  /** scratch: the indexes tied at the lowest ratio during one pick */
  private readonly tied: Int32Array;

  constructor(nodes: UpstreamNode[]) {
    this.nodes = nodes;
    nodes.forEach((node, i) => this.index.set(node, i));
    this.weights = Float64Array.from(nodes, (node) => node.weight);
    this.active = new Float64Array(nodes.length);
    this.current = new Float64Array(nodes.length);
    this.tied = new Int32Array(nodes.length);
  }

  pick(tried?: NodeSet): UpstreamNode | undefined {
    const { nodes, weights, active, current, tied } = this;
    const skip = tried !== undefined && tried.size > 0;
    let count = 0;
    let best = -1;
    for (let i = 0; i < nodes.length; i++) {
      if (skip && tried.has(nodes[i]!)) continue;
      if (best !== -1) {
        // active[i] / weights[i] vs active[best] / weights[best]
        const lhs = active[i]! * weights[best]!;
        const rhs = active[best]! * weights[i]!;
        if (lhs > rhs) continue;
        if (lhs < rhs) count = 0;
      }
      best = i;
      tied[count++] = i;
    }
    if (count === 0) return undefined;
    if (count === 1) return nodes[tied[0]!];
    // smooth weighted round robin among the tied: only they gain and pay, as nginx does
    let total = 0;
    let winner = -1;
    for (let k = 0; k < count; k++) {
      const i = tied[k]!;
      current[i]! += weights[i]!;
      total += weights[i]!;
      if (winner === -1 || current[i]! > current[winner]!) winner = i;
    }
    current[winner]! -= total;
    return nodes[winner];
  }

  started(node: UpstreamNode): void {
    const i = this.index.get(node);
    if (i !== undefined) this.active[i]! += 1;
  }

  done(node: UpstreamNode): void {
    const i = this.index.get(node);
    // never below 0: a done() whose started() went to a balancer this one replaced
    if (i !== undefined && this.active[i]! > 0) this.active[i]! -= 1;
  }
}
