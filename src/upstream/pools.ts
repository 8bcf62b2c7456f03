import { upstreamTlsOptions } from './tls.ts';
import { onFirstUse } from '../lazy-package.ts';
import type { Dispatcher, Pool } from 'undici';
import type { Socket } from 'node:net';
import { skipContinueResponses } from './continue-filter.ts';
import type { UpstreamNode, UpstreamTarget } from './types.ts';

export interface PoolSettings {
  /**
   * Requests in flight (so connections in use) to one node, per process; 0 = no cap. A request that
   * finds its node at the cap waits for a free slot up to the upstream's connect timeout.
   */
  maxConnectionsPerNode: number;
}

/**
 * A request waiting for a slot on a node at its cap. The gate calls `admitted()` with the slot
 * already counted for it, so it must `leave()` once done.
 */
export interface NodeWaiter {
  admitted(): void;
}

/**
 * Requests in flight to one node (`scheme://host:port`), across every pool of that node, and the
 * requests waiting for one of them to finish while the node is at its cap. Like nginx's `max_conns`
 * it counts connections in use, not idle kept-alive ones (those are bounded by keepalive_pool.size).
 */
export class NodeGate {
  active = 0;
  private waiting: NodeWaiter[] = [];

  constructor(private readonly settings: PoolSettings) {}

  /** Takes a slot if the node is under its cap. */
  tryEnter(): boolean {
    const max = this.settings.maxConnectionsPerNode;
    if (max > 0 && this.active >= max) return false;
    this.active++;
    return true;
  }

  /** Queues `waiter` for the next free slot (FIFO). */
  enqueue(waiter: NodeWaiter): void {
    this.waiting.push(waiter);
  }

  /** Takes `waiter` out of the queue (it gave up); false when it was not there. */
  remove(waiter: NodeWaiter): boolean {
    const i = this.waiting.indexOf(waiter);
    if (i === -1) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  /** Gives a slot back: the next waiter, if any, gets it. */
  leave(): void {
    const next = this.waiting.shift();
    if (next === undefined) this.active--;
    else next.admitted();
  }

  get queued(): number {
    return this.waiting.length;
  }
}

/** A node's pool for one set of connection settings, and the node's gate (shared by its pools). */
export interface NodePool {
  readonly key: string;
  /** the target this entry was last resolved for (a recompiled target gets a new entry, same pool) */
  readonly target: UpstreamTarget;
  readonly pool: Pool;
  readonly gate: NodeGate;
}

/**
 * Keep-alive connection pools, one undici Pool per (scheme, node, connect timeout, keepalive
 * settings). Pools are created on first use and outlive config changes: an upstream recompiled with
 * the same node and settings gets the same pool, so a config push does not drop warm connections.
 * The runtime calls `retain()` with the keys still referenced after publishing a snapshot.
 *
 * Connections to a node are bounded twice (see `keepAlive` in proxy/http.ts and NodeGate):
 * - in use: at most `maxConnectionsPerNode` requests in flight per node; more wait for a slot;
 * - idle: at most keepalive_pool.size kept for reuse — requests beyond that many in flight are sent
 *   with `Connection: close`, as nginx closes connections its keepalive cache has no room for.
 */
export class ConnectionPools {
  private readonly byKey = new Map<string, NodePool>();
  /** by `scheme://host:port` */
  private readonly gates = new Map<string, NodeGate>();
  /**
   * Hot-path cache: node object → its entry. Upstreams are compiled once per change, so the same
   * node object is seen by every request until then and no key string is built per request.
   */
  private readonly byNode = new WeakMap<UpstreamNode, NodePool>();
  private readonly settings: PoolSettings;
  private closed = false;

  /** No cap unless given one: the gateway configures the shared pools from portico.yaml (default 1024 there). */
  constructor(settings: Partial<PoolSettings> = {}) {
    this.settings = { maxConnectionsPerNode: settings.maxConnectionsPerNode ?? 0 };
  }

  /**
   * Applies portico.yaml's settings, before the first request: pools already made keep the
   * connection bound they were created with (the gate's count applies at once).
   */
  configure(settings: Partial<PoolSettings>): void {
    if (settings.maxConnectionsPerNode !== undefined) this.settings.maxConnectionsPerNode = settings.maxConnectionsPerNode;
  }

  /** The pool and gate for a node of a target; creates them on first use. */
  nodePool(target: UpstreamTarget, node: UpstreamNode): NodePool {
    const cached = this.byNode.get(node);
    if (cached !== undefined && cached.target === target && !cached.pool.closed) return cached;
    return this.slowNodePool(target, node);
  }

  /** The dispatcher for a node of a target, without the per-node cap (tests, diagnostics). */
  dispatcherFor(target: UpstreamTarget, node: UpstreamNode): Dispatcher {
    return this.nodePool(target, node).pool;
  }

  private slowNodePool(target: UpstreamTarget, node: UpstreamNode): NodePool {
    const key = poolKey(target, node);
    let entry = this.byKey.get(key);
    if (entry === undefined) {
      entry = { key, target, pool: createPool(target, node, this.settings), gate: this.gateFor(target, node) };
      // After close() (shutdown) a late request still gets a pool; it is not tracked, so closing
      // it is left to process exit — better than failing the request.
      if (!this.closed) this.byKey.set(key, entry);
    } else if (entry.target !== target) {
      entry = { ...entry, target };
      this.byKey.set(key, entry);
    }
    this.byNode.set(node, entry);
    return entry;
  }

  private gateFor(target: UpstreamTarget, node: UpstreamNode): NodeGate {
    const address = nodeAddress(target, node);
    let gate = this.gates.get(address);
    if (gate === undefined) this.gates.set(address, (gate = new NodeGate(this.settings)));
    return gate;
  }

  /** Number of live pools. */
  get size(): number {
    return this.byKey.size;
  }

  /** Keys of the live pools (diagnostics, tests). */
  keys(): string[] {
    return [...this.byKey.keys()];
  }

  /**
   * Closes pools whose key is not in `keys` (nodes no longer referenced by any upstream). Close is
   * graceful: requests already running on a pool finish first.
   */
  async retain(keys: ReadonlySet<string>): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [key, entry] of this.byKey) {
      if (keys.has(key)) continue;
      this.byKey.delete(key);
      // cached entries of older targets share this pool object and see it closed
      closing.push(entry.pool.close());
    }
    // a gate without pools or requests is forgotten; one still counting requests stays until they end
    const used = new Set<NodeGate>();
    for (const entry of this.byKey.values()) used.add(entry.gate);
    for (const [address, gate] of this.gates) {
      if (!used.has(gate) && gate.active === 0 && gate.queued === 0) this.gates.delete(address);
    }
    await Promise.all(closing);
  }

  /** Shutdown: closes every pool, letting running requests finish. */
  async close(): Promise<void> {
    this.closed = true;
    await this.retain(new Set());
  }

  /** Shutdown without waiting: aborts running requests. */
  async destroy(): Promise<void> {
    this.closed = true;
    const pools = [...this.byKey.values()].map((entry) => entry.pool);
    this.byKey.clear();
    await Promise.all(pools.map((pool) => pool.destroy()));
  }
}

/**
 * The identity of a pool: everything that is fixed per connection. Per-request settings (read
 * timeout, Host/SNI) are not part of it.
 */
export function poolKey(target: UpstreamTarget, node: UpstreamNode): string {
  const { keepalive } = target;
  const base = `${nodeAddress(target, node)}|c${target.timeout.connect}|k${keepalive.size},${keepalive.idleTimeout},${keepalive.requests}`;
  return target.tls === undefined ? base : `${base}|t${target.tls.id}`;
}

function nodeAddress(target: UpstreamTarget, node: UpstreamNode): string {
  return `${target.scheme}://${node.key}`;
}

/** undici, loaded with the first pool: the socket transport (the default) and its workers never need it */
const undiciModule = onFirstUse<typeof import('undici')>('undici');

function createPool(target: UpstreamTarget, node: UpstreamNode, settings: PoolSettings): Pool {
  const { buildConnector, Pool } = undiciModule();
  const origin = nodeAddress(target, node);
  const { keepalive } = target;
  const connector = buildConnector({
    timeout: target.timeout.connect,
    // nginx's proxy_ssl_verify is off by default and APISIX keeps it so; upstream `tls` turns it on
    ...(target.scheme === 'https' ? upstreamTlsOptions(target.tls) : {}),
  });
  // idle_timeout 0 means no keep-alive (nginx, APISIX): every request is then sent with
  // `Connection: close` (proxy/http.ts), and undici only needs a valid timer value here
  const idleTimeout = Math.max(1, keepalive.idleTimeout);
  return new Pool(origin, {
    // The gate keeps requests in flight under the cap; this makes it a hard bound on the sockets
    // of one pool too (null: as many as the gate lets through).
    connections: settings.maxConnectionsPerNode > 0 ? settings.maxConnectionsPerNode : null,
    pipelining: 1,
    connect(options, callback) {
      connector(options, (err, socket) => {
        if (err === null && socket) skipContinueResponses(socket as Socket);
        // the connector's callback type is a tuple union: call it with the same shape it gave
        (callback as (e: Error | null, s: Socket | null) => void)(err, socket);
      });
    },
    keepAliveTimeout: idleTimeout,
    keepAliveMaxTimeout: idleTimeout,
    ...(keepalive.requests > 0 ? { maxRequestsPerClient: keepalive.requests } : {}),
  });
}

/** The process-wide pools used by the proxy unless it is given its own. */
export const pools = new ConnectionPools();

export function configurePools(settings: Partial<PoolSettings>): void {
  pools.configure(settings);
}

export function retainPools(keys: ReadonlySet<string>): Promise<void> {
  return pools.retain(keys);
}

export function closePools(): Promise<void> {
  return pools.close();
}
