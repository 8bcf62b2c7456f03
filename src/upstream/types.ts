/**
 * What the data plane needs of an upstream, precompiled from config once per change:
 * the proxy never reads raw config.
 */

export interface UpstreamNode {
  host: string;
  port: number;
  weight: number;
  /** "host:port" ("[v6]:port" for IPv6), the node's identity for balancers and pools */
  key: string;
  /**
   * APISIX node priority (default 0): nodes of a lower priority are only tried once every node of
   * a higher priority has failed for the request.
   */
  priority?: number;
}

/**
 * One file per algorithm in upstream/balancer/, each exporting a factory with this shape.
 * A balancer is created when an upstream's nodes change, and kept (with its state) otherwise.
 */
export interface Balancer {
  /**
   * The next node to try. `tried` holds nodes that already failed for this request (retries go to
   * another node); returns undefined when no eligible node is left.
   */
  pick(tried?: ReadonlySet<UpstreamNode>): UpstreamNode | undefined;
}

export interface UpstreamTimeouts {
  /** milliseconds */
  connect: number;
  send: number;
  read: number;
}

export interface UpstreamTarget {
  /** where this upstream comes from: "upstreams/<id>", "routes/<id>" (inline) or "services/<id>" (inline) */
  key: string;
  scheme: 'http' | 'https';
  passHost: 'pass' | 'node' | 'rewrite';
  /** Host header for pass_host=rewrite */
  upstreamHost?: string;
  timeout: UpstreamTimeouts;
  /** how many other nodes to try after a connect failure (APISIX default: number of nodes - 1) */
  retries: number;
  /** overall time budget for retries in ms; 0 = unlimited */
  retryTimeout: number;
  nodes: UpstreamNode[];
  balancer: Balancer;
  keepalive: { size: number; idleTimeout: number /* ms */; requests: number };
}
