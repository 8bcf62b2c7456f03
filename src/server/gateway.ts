import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from '../config/gateway.ts';
import { parseListen } from '../config/listen.ts';
import { createStatusServer, type StatusEndpoints, type StatusReport } from '../observability/status.ts';
import type { TrafficSnapshot } from '../observability/exchange.ts';
import { configObjectsView } from '../observability/objects-view.ts';
import { DataPlane } from './data-plane.ts';
import { keepValidatedMatchers } from '../runtime/compile.ts';
import { ConfigPipeline } from './pipeline.ts';
import { createAdminServer, type AdminServer } from '../admin/server.ts';
import { EtcdSource } from '../sources/etcd/source.ts';

export interface GatewayAddresses {
  proxy: AddressInfo[];
  status: AddressInfo;
  /** the Admin API's port, when portico.yaml has an `admin` section */
  admin?: number;
}

/** Starts the status listener (/status, /status/ready, /metrics, the dashboard and its data). */
export async function listenStatus(config: GatewayConfig, report: () => StatusReport, endpoints: StatusEndpoints = {}): Promise<Server> {
  const { host, port } = parseListen(config.status.listen);
  const server = createStatusServer(report, endpoints);
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

export async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

/**
 * What every way of running an instance shares: the config pipeline, the status listener, and the
 * order of start (config, then proxy, then status) and stop (drain the proxy, then the pipeline).
 */
export abstract class GatewayInstance {
  abstract readonly pipeline: ConfigPipeline;
  private statusServer: Server | undefined;
  private adminServer: AdminServer | undefined;
  private stopping = false;

  constructor(readonly config: GatewayConfig) {}

  /** Binds the proxy listeners once the pipeline has config; resolves with their addresses. */
  protected abstract startProxy(): Promise<AddressInfo[]>;
  /** Drains the proxy: stop accepting, finish in-flight requests (up to proxy.drain_timeout). */
  protected abstract stopProxy(): Promise<void>;
  /** The instance's request traffic since start (with workers: all of theirs, merged). */
  abstract traffic(): Promise<TrafficSnapshot>;
  /** Reopens the access log files (SIGUSR1, after logrotate moved them). */
  abstract reopenLogs(): void;

  get instanceId(): string {
    return this.pipeline.instanceId;
  }

  /** Work that can start before the config is in (forking workers: they load while etcd is listed). */
  protected prepare(): void {}

  /** Starts syncing config and listening. Resolves when the listeners are bound. */
  async start(): Promise<GatewayAddresses> {
    this.prepare();
    await this.pipeline.start();
    const proxy = await this.startProxy();
    const etcd = this.config.config.source === 'etcd';
    this.statusServer = await listenStatus(this.config, () => this.status(), {
      traffic: () => this.traffic(),
      objects: () => configObjectsView(this.pipeline.store.snapshot),
      ...(etcd && { fleet: () => import('../cli/fleet.ts').then((f) => f.readFleet(this.config)) }),
      dashboard: this.config.status.dashboard,
      admin: () => this.adminServer,
    });
    const status = this.statusServer.address() as AddressInfo;
    this.pipeline.setAddresses(proxy, status);
    const admin = await this.startAdmin();
    return { proxy, status, ...(admin !== undefined && { admin }) };
  }

  /** The revision every data plane of this instance serves (what `?wait=served` waits for). */
  protected servedRevision(): number {
    return this.pipeline.store.snapshot.revision;
  }

  private async startAdmin(): Promise<number | undefined> {
    const admin = this.config.admin;
    if (admin === undefined) return undefined;
    const source = this.pipeline.source;
    this.adminServer = createAdminServer({
      keys: admin.keys,
      allow: admin.allow,
      source: source instanceof EtcdSource ? 'etcd' : 'file',
      ...(source instanceof EtcdSource && { etcd: source.client }),
      prefix: this.config.config.etcd?.prefix ?? '/portico',
      routerMode: this.config.proxy.router,
      snapshot: () => this.pipeline.store.snapshot,
      servedRevision: () => this.servedRevision(),
      maxBodyBytes: admin.max_body_bytes,
      maxApplyBytes: admin.max_apply_bytes,
      maxTxnOps: admin.max_txn_ops,
    });
    const { host, port } = parseListen(admin.listen);
    return this.adminServer.listen(host, port);
  }

  status(): StatusReport {
    return this.pipeline.status();
  }

  /** Graceful stop: drain the proxy, then deregister, stop the source and flush the snapshot. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.stopProxy();
    await this.adminServer?.close();
    await this.pipeline.stop();
    await closeServer(this.statusServer);
  }
}

/**
 * One gateway instance in one process: config pipeline -> data plane, in the same event loop.
 * (With `proxy.workers` > 1, server/cluster.ts splits the two across processes.)
 */
export class Gateway extends GatewayInstance {
  readonly pipeline: ConfigPipeline;
  readonly dataPlane: DataPlane;

  constructor(config: GatewayConfig) {
    super(config);
    this.pipeline = new ConfigPipeline(config);
    // passive verdicts go to the supervisor, which records them and hands them back with the probes'
    this.dataPlane = new DataPlane(config, (verdict) => this.pipeline.health.passive(verdict));
    this.pipeline.store.subscribe((snapshot, diff) => this.dataPlane.apply(snapshot, diff));
    // validator and data plane in one process: routes are compiled once, by the validator
    keepValidatedMatchers(true);
    this.pipeline.health.subscribe((verdict) => this.dataPlane.runtime.health.apply(verdict));
    this.pipeline.discovery.subscribe((nodes) => this.dataPlane.discovered(nodes));
  }

  protected startProxy(): Promise<AddressInfo[]> {
    return this.dataPlane.start();
  }

  protected stopProxy(): Promise<void> {
    return this.dataPlane.stop();
  }

  traffic(): Promise<TrafficSnapshot> {
    return Promise.resolve(this.dataPlane.trafficSnapshot());
  }

  reopenLogs(): void {
    this.dataPlane.reopenLogs();
  }
}
