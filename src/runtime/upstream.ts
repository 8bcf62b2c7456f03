import type { UpstreamConfig } from '../config/schema/upstream.ts';
import { createBalancer } from '../upstream/balancer/index.ts';
import { normalizeNodes } from '../upstream/nodes.ts';
import type { UpstreamNode, UpstreamTarget } from '../upstream/types.ts';

/** APISIX's defaults, so an upstream copied from APISIX behaves the same. */
const DEFAULT_TIMEOUT_S = 60;
const DEFAULT_KEEPALIVE = { size: 320, idleTimeout: 60_000, requests: 1000 };

function sameNodes(a: readonly UpstreamNode[], b: readonly UpstreamNode[]): boolean {
  return a.length === b.length && a.every((n, i) => n.key === b[i]!.key && n.weight === b[i]!.weight);
}

/**
 * Compiles an upstream object for the data plane. When the nodes are unchanged from `previous`,
 * the balancer (and with it its rotation state) is carried over.
 */
export function compileUpstream(key: string, u: UpstreamConfig, previous?: UpstreamTarget): UpstreamTarget {
  const scheme = u.scheme ?? 'http';
  const nodes = normalizeNodes(u.nodes, scheme);
  const type = u.type ?? 'roundrobin';
  const balancer = previous && sameNodes(previous.nodes, nodes) ? previous.balancer : createBalancer(type, nodes);
  return {
    key,
    scheme,
    passHost: u.pass_host ?? 'pass',
    upstreamHost: u.upstream_host,
    timeout: {
      connect: (u.timeout?.connect ?? DEFAULT_TIMEOUT_S) * 1000,
      send: (u.timeout?.send ?? DEFAULT_TIMEOUT_S) * 1000,
      read: (u.timeout?.read ?? DEFAULT_TIMEOUT_S) * 1000,
    },
    // APISIX: without `retries`, each other node is tried once
    retries: u.retries ?? Math.max(0, nodes.filter((n) => n.weight > 0).length - 1),
    retryTimeout: (u.retry_timeout ?? 0) * 1000,
    nodes,
    balancer,
    keepalive: {
      size: u.keepalive_pool?.size ?? DEFAULT_KEEPALIVE.size,
      idleTimeout: u.keepalive_pool?.idle_timeout !== undefined ? u.keepalive_pool.idle_timeout * 1000 : DEFAULT_KEEPALIVE.idleTimeout,
      requests: u.keepalive_pool?.requests ?? DEFAULT_KEEPALIVE.requests,
    },
  };
}
