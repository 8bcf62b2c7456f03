import { ErrorCode, PorticoError } from '../../errors.ts';
import type { Balancer, BalancerOptions, PickRequest, UpstreamNode, NodeSet } from '../types.ts';
import { createEwma } from './ewma.ts';
import { createLeastConn } from './least-conn.ts';
import { createChash } from './chash.ts';
import { createRoundRobin } from './roundrobin.ts';

/** Every balancer file exports one factory of this shape (`createRoundRobin`, `createChash`, ...). */
export type BalancerFactory = (nodes: UpstreamNode[], options?: BalancerOptions) => Balancer;

/** APISIX upstream `type` → factory. Add one line per algorithm file. */
const factories: Readonly<Record<string, BalancerFactory>> = {
  roundrobin: createRoundRobin,
  chash: createChash,
  least_conn: createLeastConn,
  ewma: createEwma,
};

export function balancerTypes(): string[] {
  return Object.keys(factories);
}

/**
 * A balancer for an upstream's nodes. Nodes with different `priority` values get one balancer per
 * priority level, tried from the highest: lower levels only serve a request once every eligible
 * node above has been tried (APISIX's priority semantics).
 */
export function createBalancer(type: string, nodes: UpstreamNode[], options: BalancerOptions = { hashOn: 'vars', key: undefined }): Balancer {
  const factory = Object.hasOwn(factories, type) ? factories[type] : undefined;
  if (factory === undefined) {
    throw new PorticoError(ErrorCode.SEMANTIC, `unknown balancer type "${type}" (known: ${balancerTypes().join(', ')})`);
  }
  const levels = new Map<number, UpstreamNode[]>();
  for (const node of nodes) {
    const priority = node.priority ?? 0;
    let level = levels.get(priority);
    if (level === undefined) levels.set(priority, (level = []));
    level.push(node);
  }
  if (levels.size <= 1) return factory(nodes, options);
  const ordered = [...levels.entries()].sort((a, b) => b[0] - a[0]).map(([, level]) => factory(level, options));
  return new PriorityBalancer(ordered);
}

class PriorityBalancer implements Balancer {
  readonly needsRequest: boolean;
  /** the level of each node, for the accounting hooks */
  private readonly levelOf = new Map<UpstreamNode, Balancer>();

  constructor(private readonly levels: Balancer[]) {
    this.needsRequest = levels.some((l) => l.needsRequest === true);
  }

  pick(tried?: NodeSet, request?: PickRequest): UpstreamNode | undefined {
    for (const level of this.levels) {
      const node = level.pick(tried, request);
      if (node !== undefined) {
        this.levelOf.set(node, level);
        return node;
      }
    }
    return undefined;
  }

  started(node: UpstreamNode): void {
    this.levelOf.get(node)?.started?.(node);
  }

  done(node: UpstreamNode, latencyMs: number, failed: boolean): void {
    this.levelOf.get(node)?.done?.(node, latencyMs, failed);
  }
}
