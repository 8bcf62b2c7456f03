import type { UpstreamConfig } from '../config/schema/upstream.ts';
import { ErrorCode, PorticoError } from '../errors.ts';
import { createBalancer } from '../upstream/balancer/index.ts';
import { HealthAwareBalancer, type HealthBook } from '../upstream/health/book.ts';
import { compileChecks } from '../upstream/health/checks.ts';
import { discoverySource, type DiscoveredNodes } from '../upstream/discovery/upstream-nodes.ts';
import { normalizeNodes } from '../upstream/nodes.ts';
import { compileUpstreamTls } from '../upstream/tls.ts';
import type { UpstreamNode, UpstreamTarget } from '../upstream/types.ts';

/** APISIX's defaults, so an upstream copied from APISIX behaves the same. */
const DEFAULT_TIMEOUT_S = 60;
const DEFAULT_KEEPALIVE = { size: 320, idleTimeout: 60_000, requests: 1000 };

function sameNodes(a: readonly UpstreamNode[], b: readonly UpstreamNode[]): boolean {
  return a.length === b.length && a.every((n, i) => n.key === b[i]!.key && n.weight === b[i]!.weight && n.priority === b[i]!.priority);
}

/** Node's timers take at most 2^31-1 ms; a longer delay silently becomes 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A timeout from config (seconds) in ms. Throws on one a timer cannot hold: it would fire after
 * 1 ms and fail every request while the config looked fine.
 */
export function timeoutMs(seconds: number | undefined, at: string): number {
  const ms = (seconds ?? DEFAULT_TIMEOUT_S) * 1000;
  if (!(ms <= MAX_TIMER_MS)) {
    throw new PorticoError(ErrorCode.SEMANTIC, `${at}: must be at most ${Math.floor(MAX_TIMER_MS / 1000)} seconds`);
  }
  return ms;
}

/** APISIX `timeout: {connect, send, read}` (seconds) in ms; `at` is the field's path. */
export function compileTimeout(t: UpstreamConfig['timeout'], at = '/timeout'): UpstreamTarget['timeout'] {
  return {
    connect: timeoutMs(t?.connect, `${at}/connect`),
    send: timeoutMs(t?.send, `${at}/send`),
    read: timeoutMs(t?.read, `${at}/read`),
  };
}

/**
 * Compiles an upstream object for the data plane (`discovered`: the nodes DNS found for it). When
 * the nodes are unchanged from `previous`, the balancer (and with it its rotation state) is
 * carried over; with `checks`, the upstream's
 * health comes from `health` (kept there while the checks block is unchanged). Throws
 * PorticoError(SEMANTIC) whose message starts with the field's path in the upstream; the validator
 * runs this same function (see compile.ts), so a throw here is a rejection at validation, not in
 * the data plane.
 */
export function compileUpstream(key: string, u: UpstreamConfig, previous?: UpstreamTarget, book?: HealthBook, discovered?: DiscoveredNodes): UpstreamTarget {
  // tcp/udp (stream routes' upstreams) carry no HTTP or TLS: compiled like http (a node without a port gets 80)
  const scheme = u.scheme === 'https' ? 'https' : 'http';
  // nodes found by DNS for this very config, else the configured ones (host names then resolve per
  // connection until the answers arrive; discovery_type dns has none until then)
  let nodes = discovered?.nodes !== undefined && discovered.source === discoverySource(u) ? discovered.nodes : u.nodes === undefined ? [] : normalizeNodes(u.nodes, scheme);
  const type = u.type ?? 'roundrobin';
  const options = { hashOn: u.hash_on ?? 'vars', key: u.key };
  const balancerKey = `${type}|${options.hashOn}|${options.key ?? ''}`;
  // the balancer's state (rotation, counts, latencies) survives a change that keeps its nodes and
  // algorithm; so do the node objects, which balancers and `tried` sets know by identity
  const keep = previous !== undefined && previous.balancerKey === balancerKey && sameNodes(previous.nodes, nodes);
  if (keep) nodes = previous.nodes;
  const baseBalancer = keep ? (previous.baseBalancer ?? previous.balancer) : createBalancer(type, nodes, options);
  const checks = compileChecks(u.checks);
  const health = checks && book?.for(key, checks, nodes);
  if (health === undefined) book?.drop(key);
  return {
    key,
    scheme,
    passHost: u.pass_host ?? 'pass',
    upstreamHost: u.upstream_host,
    timeout: compileTimeout(u.timeout),
    // APISIX: without `retries`, each other node is tried once
    retries: u.retries ?? Math.max(0, nodes.filter((n) => n.weight > 0).length - 1),
    retryTimeout: (u.retry_timeout ?? 0) * 1000,
    nodes,
    balancer: health === undefined ? baseBalancer : new HealthAwareBalancer(baseBalancer, health),
    baseBalancer,
    balancerKey,
    health,
    tls: compileUpstreamTls(u.tls),
    keepalive: {
      size: u.keepalive_pool?.size ?? DEFAULT_KEEPALIVE.size,
      idleTimeout: u.keepalive_pool?.idle_timeout !== undefined ? u.keepalive_pool.idle_timeout * 1000 : DEFAULT_KEEPALIVE.idleTimeout,
      requests: u.keepalive_pool?.requests ?? DEFAULT_KEEPALIVE.requests,
    },
  };
}
