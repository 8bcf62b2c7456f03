import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseListen, type GatewayConfig } from '../config/gateway.ts';
import { createStatusServer, type StatusReport } from '../observability/status.ts';
import { DataPlane } from './data-plane.ts';
import { ConfigPipeline } from './pipeline.ts';

export interface GatewayAddresses {
  proxy: AddressInfo[];
  status: AddressInfo;
}

/** Starts the status listener (/status, /status/ready, /metrics). */
export async function listenStatus(config: GatewayConfig, report: () => StatusReport): Promise<Server> {
  const { host, port } = parseListen(config.status.listen);
  const server = createStatusServer(report);
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
 * One gateway instance in one process: config pipeline -> data plane, in the same event loop.
 * (With `proxy.workers` > 1, server/cluster.ts splits the two across processes.)
 */
export class Gateway {
  readonly pipeline: ConfigPipeline;
  readonly dataPlane: DataPlane;
  private statusServer: Server | undefined;
  private stopping = false;

  constructor(readonly config: GatewayConfig) {
    this.pipeline = new ConfigPipeline(config);
    this.dataPlane = new DataPlane(config);
    this.pipeline.store.subscribe((snapshot, diff) => this.dataPlane.apply(snapshot, diff));
  }

  get instanceId(): string {
    return this.pipeline.instanceId;
  }

  /** Starts syncing config and listening. Resolves when the listeners are bound. */
  async start(): Promise<GatewayAddresses> {
    await this.pipeline.start();
    const proxy = await this.dataPlane.start();
    this.statusServer = await listenStatus(this.config, () => this.status());
    const status = this.statusServer.address() as AddressInfo;
    this.pipeline.setAddresses(proxy, status);
    return { proxy, status };
  }

  status(): StatusReport {
    return this.pipeline.status();
  }

  /**
   * Graceful stop: stop accepting, let in-flight requests finish (up to proxy.drain_timeout),
   * then deregister, stop the source and flush the snapshot.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await this.dataPlane.stop();
    await this.pipeline.stop();
    await closeServer(this.statusServer);
  }
}
