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
import { TrafficStats } from '../observability/traffic.ts';
import { AccessLog } from '../observability/access-log.ts';
import { Tracer } from '../observability/tracing.ts';
import { RequestObservers } from '../observability/observers.ts';
import type { TrafficSnapshot } from '../observability/exchange.ts';
import { log } from '../observability/log.ts';

/** Whether an upstream key ('upstreams/<id>', 'routes/<id>', 'services/<id>') names an object in force. */
function upstreamInConfig(snapshot: Snapshot, key: string): boolean {
  const slash = key.indexOf('/');
  const kind = key.slice(0, slash);
  const id = key.slice(slash + 1);
  if (kind === 'upstreams') return snapshot.upstreams.has(id);
  if (kind === 'routes') return snapshot.routes.has(id);
  if (kind === 'services') return snapshot.services.has(id);
  return false;
}

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
  /** every request this process served, by route and node (/metrics, /status/traffic, the dashboard) */
  readonly traffic = new TrafficStats();
  private readonly accessLog: AccessLog | undefined;
  private tracer: Tracer | undefined;
  private snapshot: Snapshot | undefined;

  constructor(
    private readonly config: GatewayConfig,
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
    const access = config.log.access;
    if (access.enabled) this.accessLog = new AccessLog({ path: access.path, format: access.format });
  }

  /** Reopens the access log file (logrotate moved it: SIGUSR1). */
  reopenLogs(): void {
    this.accessLog?.reopen();
  }

  /** What this process served since it started. */
  trafficSnapshot(): TrafficSnapshot {
    return this.traffic.snapshot(this.listeners.openConnections());
  }

  /** Returns the objects the runtime could not compile (the store rejects them). */
  apply(snapshot: Snapshot, diff: SnapshotDiff): CompileFailure[] {
    const failures = this.runtime.apply(snapshot, diff);
    this.snapshot = snapshot;
    if (diff.stream_routes.size > 0) this.streams?.routesChanged();
    if (!isEmptyDiff(diff)) this.schedulePoolCleanup();
    return failures;
  }

  /** DNS found other nodes for an upstream (the instance's discovery sends them). */
  discovered(d: DiscoveredNodes): void {
    if (this.runtime.setDiscovered(d)) this.schedulePoolCleanup();
  }

  async start(): Promise<AddressInfo[]> {
    const tracing = this.config.tracing;
    const otlp = tracing.otlp;
    const propagate = tracing.propagate;
    if (propagate || otlp !== undefined) {
      this.tracer = await Tracer.create(
        {
          propagate,
          ...(otlp !== undefined && { otlp: { endpoint: otlp.endpoint, headers: otlp.headers, service_name: otlp.service_name, sample_ratio: otlp.sample_ratio, timeout_ms: otlp.timeout * 1000 } }),
        },
        { instanceId: this.config.instance_id },
      );
    }
    // nothing watches requests: the request path does no bookkeeping at all
    if (this.config.status.request_metrics || this.accessLog !== undefined || this.tracer !== undefined) {
      this.listeners.observers = new RequestObservers(this.config.status.request_metrics ? this.traffic : undefined, this.accessLog, this.tracer);
    }
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
    // the last requests' lines and spans
    await Promise.all([
      this.accessLog?.close().catch((err: Error) => log.error({ err: err.message }, 'access log: close failed')),
      this.tracer?.shutdown().catch((err: Error) => log.warn({ err: err.message }, 'tracing: shutdown failed')),
    ]);
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
      // statistics of routes and upstreams no longer in the config go (bounded label sets)
      const snapshot = this.snapshot;
      if (snapshot !== undefined) this.traffic.retain((id) => snapshot.routes.has(id), (key) => upstreamInConfig(snapshot, key));
    }, 1000).unref();
  }
}
