import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from '../config/gateway.ts';
import { isEmptyDiff, type Snapshot, type SnapshotDiff } from '../config/snapshot.ts';
import { Runtime } from '../runtime/runtime.ts';
import { configureDataEncryption } from '../config/data-encryption.ts';
import { configurePostArgs } from '../proxy/post-args.ts';
import { HealthBook, type HealthVerdict } from '../upstream/health/book.ts';
import type { DiscoveredNodes } from '../upstream/discovery/upstream-nodes.ts';
import type { CompileFailure } from '../runtime/types.ts';
import { http1Pools } from '../upstream/http1-pool.ts';
import { closePools, configurePools, poolKey, retainPools } from '../upstream/pools.ts';
import { ProxyListeners } from './listeners.ts';
import { SocketListeners } from './socket-listeners.ts';
import { StreamListeners } from './stream-listeners.ts';

/**
 * What serves traffic: the runtime compiled from snapshots, the listeners, and the upstream pools.
 * The same in a single process and in each worker; only how snapshots arrive differs.
 */
export class DataPlane {
  readonly runtime: Runtime;
  private readonly listeners: ProxyListeners | SocketListeners;
  private readonly streams: StreamListeners | undefined;
  private poolCleanup: NodeJS.Timeout | undefined;
  private stopping = false;

  constructor(
    config: GatewayConfig,
    /** where this process's passive health verdicts go (the instance's health supervisor) */
    reportHealth: (verdict: HealthVerdict) => void,
  ) {
    configureDataEncryption(config.data_encryption?.keyring);
    configurePools({ maxConnectionsPerNode: config.proxy.upstream_max_connections_per_node });
    configurePostArgs({ maxBytes: config.proxy.max_post_args_readable_size });
    this.runtime = new Runtime(config.proxy.router, new HealthBook(reportHealth), config.proxy.fallback_sni);
    // PORTICO_PROXY_TRANSPORT overrides portico.yaml (runs the test suite on either transport)
    const transport = process.env.PORTICO_PROXY_TRANSPORT ?? config.proxy.transport;
    const routes = () => this.runtime;
    const sniTable = () => this.runtime.sniTable;
    this.listeners = transport === 'socket' ? new SocketListeners(config.proxy, routes, sniTable) : new ProxyListeners(config.proxy, routes, sniTable);
    // UDP sessions need one owner: with workers, the first worker serves the UDP listeners
    const udp = process.env.PORTICO_WORKER_INDEX === undefined || process.env.PORTICO_WORKER_INDEX === '0';
    this.streams = config.proxy.stream_listen.length > 0 ? new StreamListeners(config.proxy, () => this.runtime, sniTable, udp) : undefined;
  }

  /** Returns the objects the runtime could not compile (the store rejects them). */
  apply(snapshot: Snapshot, diff: SnapshotDiff): CompileFailure[] {
    const failures = this.runtime.apply(snapshot, diff);
    if (diff.stream_routes.size > 0) this.streams?.routesChanged();
    if (!isEmptyDiff(diff)) this.schedulePoolCleanup();
    return failures;
  }

  /** DNS found other nodes for an upstream (the instance's discovery sends them). */
  discovered(d: DiscoveredNodes): void {
    if (this.runtime.setDiscovered(d)) this.schedulePoolCleanup();
  }

  async start(): Promise<AddressInfo[]> {
    const http = await this.listeners.start();
    return this.streams === undefined ? http : [...http, ...(await this.streams.start())];
  }

  /** Drains the listeners, then closes every upstream connection. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.poolCleanup);
    await Promise.all([this.listeners.drain(), this.streams?.drain()]);
    http1Pools.close();
    await closePools();
  }

  /**
   * Closes keep-alive pools of nodes no longer used by any upstream. Deferred and coalesced: it
   * walks every upstream, which is not worth doing on each change of a burst.
   */
  private schedulePoolCleanup(): void {
    if (this.poolCleanup || this.stopping) return;
    this.poolCleanup = setTimeout(() => {
      this.poolCleanup = undefined;
      const keys = new Set<string>();
      for (const target of this.runtime.upstreamTargets()) for (const node of target.nodes) keys.add(poolKey(target, node));
      http1Pools.retain(keys);
      void retainPools(keys);
    }, 1000).unref();
  }
}
