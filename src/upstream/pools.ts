import { Pool, type Dispatcher } from 'undici';
import type { UpstreamNode, UpstreamTarget } from './types.ts';

/**
 * Keep-alive connection pools, one undici Pool per (scheme, node, connect timeout, keepalive
 * settings). Pools are created on first use and outlive config changes: an upstream recompiled with
 * the same node and settings gets the same pool, so a config push does not drop warm connections.
 * The runtime calls `retain()` with the keys still referenced after publishing a snapshot.
 */
export class ConnectionPools {
  private readonly byKey = new Map<string, PoolEntry>();
  /**
   * Hot-path cache: node object → its entry. Upstreams are compiled once per change, so the same
   * node object is seen by every request until then and no key string is built per request.
   */
  private readonly byNode = new WeakMap<UpstreamNode, PoolEntry>();
  private closed = false;

  /** The dispatcher for a node of a target; creates the pool on first use. */
  dispatcherFor(target: UpstreamTarget, node: UpstreamNode): Dispatcher {
    const cached = this.byNode.get(node);
    if (cached !== undefined && cached.target === target && !cached.pool.closed) return cached.pool;
    return this.slowDispatcherFor(target, node);
  }

  private slowDispatcherFor(target: UpstreamTarget, node: UpstreamNode): Dispatcher {
    const key = poolKey(target, node);
    let entry = this.byKey.get(key);
    if (entry === undefined) {
      entry = { key, target, pool: createPool(target, node) };
      // After close() (shutdown) a late request still gets a pool; it is not tracked, so closing
      // it is left to process exit — better than failing the request.
      if (!this.closed) this.byKey.set(key, entry);
    } else if (entry.target !== target) {
      entry = { key, target, pool: entry.pool };
      this.byKey.set(key, entry);
    }
    this.byNode.set(node, entry);
    return entry.pool;
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

interface PoolEntry {
  key: string;
  /** the target this entry was last resolved for (a recompiled target gets a new entry, same pool) */
  target: UpstreamTarget;
  pool: Pool;
}

/**
 * The identity of a pool: everything that is fixed per connection. Per-request settings (read
 * timeout, Host/SNI) are not part of it.
 */
export function poolKey(target: UpstreamTarget, node: UpstreamNode): string {
  const { keepalive } = target;
  return `${target.scheme}://${node.key}|c${target.timeout.connect}|k${keepalive.size},${keepalive.idleTimeout},${keepalive.requests}`;
}

function createPool(target: UpstreamTarget, node: UpstreamNode): Pool {
  const origin = `${target.scheme}://${node.key}`;
  const { keepalive } = target;
  return new Pool(origin, {
    // No cap on concurrent connections, as nginx (max_conns=0): capping would queue requests
    // behind the pool instead of opening a connection. Idle connections close after idleTimeout.
    connections: null,
    pipelining: 1,
    connectTimeout: target.timeout.connect,
    keepAliveTimeout: keepalive.idleTimeout,
    keepAliveMaxTimeout: keepalive.idleTimeout,
    ...(keepalive.requests > 0 ? { maxRequestsPerClient: keepalive.requests } : {}),
    // nginx's proxy_ssl_verify is off by default and APISIX keeps it so; upstream `tls.verify`
    // support will turn this on per upstream.
    ...(target.scheme === 'https' ? { connect: { rejectUnauthorized: false } } : {}),
  });
}

/** The process-wide pools used by the proxy unless it is given its own. */
export const pools = new ConnectionPools();

export function retainPools(keys: ReadonlySet<string>): Promise<void> {
  return pools.retain(keys);
}

export function closePools(): Promise<void> {
  return pools.close();
}
