import type { UpstreamHealth } from './health/book.ts';
import type { UpstreamTls } from './tls.ts';

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
  /**
   * The host name this node's address was resolved from (DNS): the Host header for
   * pass_host=node. Unset for nodes configured by address.
   */
  hostname?: string;
}

/** Nodes a pick must skip (those already tried for the request, and unhealthy ones). */
export interface NodeSet {
  has(node: UpstreamNode): boolean;
  /** an upper bound of how many nodes has() is true for (0: none) */
  readonly size: number;
}

/**
 * What a balancer may read of the request it picks a node for (chash keys): the plugins' request
 * view, plus the consumer an auth plugin identified.
 */
export interface PickRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly host: string;
  readonly clientAddress: string;
  header(name: string): string | undefined;
  cookie(name: string): string | undefined;
  arg(name: string): string | undefined;
  readonly consumerName?: string;
}

/** An upstream's `hash_on` and `key` (APISIX), for the balancers that hash. */
export interface BalancerOptions {
  hashOn: string;
  key: string | undefined;
}

/**
 * One file per algorithm in upstream/balancer/, each exporting a factory with this shape.
 * A balancer is created when an upstream's nodes (or its type, hash_on, key) change, and kept
 * (with its state) otherwise.
 */
export interface Balancer {
  /**
   * The next node to try. `tried` holds nodes that already failed for this request (retries go to
   * another node); returns undefined when no eligible node is left. `request` is given when
   * `needsRequest` is set.
   */
  pick(tried?: NodeSet, request?: PickRequest): UpstreamNode | undefined;
  /** pick() reads the request (the data plane builds a PickRequest only for these) */
  readonly needsRequest?: boolean;
  /** a request was sent to `node` (least_conn counts it until done) */
  started?(node: UpstreamNode): void;
  /** the request sent to `node` ended, after `latencyMs`; `failed`: the node failed it (connect, reset, timeout, 5xx parse) */
  done?(node: UpstreamNode, latencyMs: number, failed: boolean): void;
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
  /** type, hash_on and key: what decides whether a recompiled upstream keeps its balancer */
  balancerKey?: string;
  /** `balancer` without the health filter (what a recompiled upstream keeps) */
  baseBalancer?: Balancer;
  /** health of the nodes, when the upstream has `checks`: passive checks report to it */
  health?: UpstreamHealth;
  keepalive: { size: number; idleTimeout: number /* ms */; requests: number };
  /** https upstreams: client certificate and verification (upstream `tls`) */
  tls?: UpstreamTls;
}
