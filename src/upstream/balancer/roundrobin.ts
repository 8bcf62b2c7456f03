import type { Balancer, UpstreamNode, NodeSet } from '../types.ts';

/**
 * Smooth weighted round robin, nginx's algorithm (ngx_http_upstream_get_peer): on each pick every
 * eligible node gains its weight, the node with the highest running total wins and gives back the
 * sum of all eligible weights. Weights 5/1/1 yield `a a b a c a a` — heavy nodes are spread out
 * instead of being picked in bursts.
 *
 * Skipped nodes (weight 0 or already tried for this request) neither gain nor pay, as in nginx.
 */
export function createRoundRobin(nodes: UpstreamNode[]): Balancer {
  const eligible = nodes.filter((node) => node.weight > 0);
  if (eligible.length === 0) return { pick: () => undefined };
  if (eligible.length === 1) {
    const only = eligible[0]!;
    return { pick: (tried) => (tried !== undefined && tried.has(only) ? undefined : only) };
  }
  return new SmoothRoundRobin(eligible);
}

class SmoothRoundRobin implements Balancer {
  private readonly nodes: UpstreamNode[];
  private readonly weights: Float64Array;
  private readonly current: Float64Array;

  constructor(nodes: UpstreamNode[]) {
    this.nodes = nodes;
    this.weights = Float64Array.from(nodes, (node) => node.weight);
    this.current = new Float64Array(nodes.length);
  }

  pick(tried?: NodeSet): UpstreamNode | undefined {
    const { nodes, weights, current } = this;
    let best = -1;
    let total = 0;
    for (let i = 0; i < nodes.length; i++) {
      if (tried !== undefined && tried.size > 0 && tried.has(nodes[i]!)) continue;
      const weight = weights[i]!;
      current[i]! += weight;
      total += weight;
      if (best === -1 || current[i]! > current[best]!) best = i;
    }
    if (best === -1) return undefined;
    current[best]! -= total;
    return nodes[best];
  }
}
