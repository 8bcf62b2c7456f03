import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { hostname } from 'node:os';
import type { ChangeSet } from '../config/changeset.ts';
import { parseListen, type GatewayConfig } from '../config/gateway.ts';
import { readSnapshotFile, snapshotWriter } from '../config/persist.ts';
import type { LatestWriter } from '../coalesce.ts';
import { isEmptyDiff, type Snapshot } from '../config/snapshot.ts';
import { ConfigStore } from '../config/store.ts';
import { log } from '../observability/log.ts';
import { createStatusServer, type StatusReport } from '../observability/status.ts';
import { createHttpProxy } from '../proxy/http.ts';
import { Runtime } from '../runtime/runtime.ts';
import { EtcdSource } from '../sources/etcd/source.ts';
import { FileSource } from '../sources/file.ts';
import type { Source, SourceState } from '../sources/source.ts';
import { closePools, poolKey, retainPools } from '../upstream/pools.ts';
import { VERSION } from '../version.ts';
import { INSTANCES_DIR, InstanceRegistration } from './registration.ts';

export interface GatewayAddresses {
  proxy: AddressInfo[];
  status: AddressInfo;
}

function createSource(cfg: GatewayConfig): Source {
  if (cfg.config.source === 'etcd') {
    const e = cfg.config.etcd!;
    return new EtcdSource({ endpoints: e.endpoints, prefix: e.prefix, user: e.user, password: e.password, tls: e.tls, timeout: e.timeout });
  }
  return new FileSource({ path: cfg.config.file.path });
}

/**
 * One gateway instance: config source -> store -> runtime -> listeners. The config pipeline runs
 * once per instance; the data plane only ever reads the runtime.
 */
export class Gateway {
  readonly instanceId: string;
  readonly store: ConfigStore;
  readonly runtime: Runtime;
  private readonly source: Source;
  private readonly writer: LatestWriter<Snapshot>;
  private readonly servers: Server[] = [];
  private statusServer: Server | undefined;
  private sourceState: SourceState = { connected: false, since: new Date().toISOString() };
  private sourceError: { code: string; message: string } | undefined;
  private fromSnapshot = false;
  private synced = false;
  private lastApplied: string | null = null;
  private inFlight = 0;
  private draining = false;
  private readonly upgraded = new Set<Socket>();
  private drained: (() => void) | undefined;
  private registration: InstanceRegistration | undefined;
  private poolCleanup: NodeJS.Timeout | undefined;
  private addresses: GatewayAddresses | undefined;
  private readonly startedAt = new Date().toISOString();

  constructor(readonly config: GatewayConfig) {
    this.instanceId = config.instance_id ?? `${hostname()}-${randomBytes(3).toString('hex')}`;
    this.store = new ConfigStore(config.config.source);
    this.runtime = new Runtime(config.proxy.router);
    this.source = createSource(config);
    if (this.source instanceof EtcdSource) {
      const prefix = config.config.etcd!.prefix.replace(/\/+$/, '');
      this.registration = new InstanceRegistration(this.source.client, `${prefix}/${INSTANCES_DIR}/${this.instanceId}`);
    }
    this.writer = snapshotWriter(config.config.snapshot, (err) =>
      log.error({ err, path: config.config.snapshot }, 'cannot write snapshot; the gateway keeps serving'),
    );
    this.store.subscribe((snapshot, diff) => {
      this.runtime.apply(snapshot, diff);
      this.lastApplied = snapshot.appliedAt;
      if (!isEmptyDiff(diff)) this.schedulePoolCleanup();
    });
  }

  /** Starts syncing config and listening. Resolves when the proxy listeners are bound. */
  async start(): Promise<GatewayAddresses> {
    await this.startConfig();
    const proxy = createHttpProxy({ routes: () => this.runtime });
    // one listener for every response, not a closure per request
    const gateway = this;
    function onResponseClose(this: ServerResponse) {
      gateway.requestDone(this.req.socket);
    }
    const addresses: AddressInfo[] = [];
    for (const listen of this.config.proxy.listen) {
      const { host, port } = parseListen(listen);
      const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
        this.inFlight++;
        if (this.draining) res.setHeader('connection', 'close');
        res.on('close', onResponseClose);
        proxy.handleRequest(req, res);
      });
      server.on('upgrade', (req, socket: Socket, head) => {
        this.upgraded.add(socket);
        socket.once('close', () => this.upgraded.delete(socket));
        proxy.handleUpgrade(req, socket, head);
      });
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
        // malformed or oversize HTTP: answer like nginx would, without logging each one
        if (socket.writable && !socket.destroyed) {
          const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
          socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n{"error_msg":"bad request"}`);
        } else socket.destroy();
      });
      server.listen(port, host);
      await once(server, 'listening');
      this.servers.push(server);
      addresses.push(server.address() as AddressInfo);
    }
    const { host, port } = parseListen(this.config.status.listen);
    this.statusServer = createStatusServer(() => this.status());
    this.statusServer.listen(port, host);
    await once(this.statusServer, 'listening');
    this.addresses = { proxy: addresses, status: this.statusServer.address() as AddressInfo };
    this.register();
    return this.addresses;
  }

  /**
   * Closes keep-alive pools of nodes no longer used by any upstream. Deferred and coalesced: it
   * walks every upstream, which is not worth doing on each change of a burst.
   */
  private schedulePoolCleanup(): void {
    if (this.poolCleanup || this.draining) return;
    this.poolCleanup = setTimeout(() => {
      this.poolCleanup = undefined;
      const keys = new Set<string>();
      for (const target of this.runtime.upstreamTargets()) for (const node of target.nodes) keys.add(poolKey(target, node));
      void retainPools(keys);
    }, 1000).unref();
  }

  /** Publishes this instance's state to the fleet view (etcd source only). */
  private register(): void {
    if (!this.registration || !this.addresses || this.draining) return;
    const st = this.status();
    const addr = (a: AddressInfo) => {
      const host = a.address === '0.0.0.0' || a.address === '::' ? hostname() : a.family === 'IPv6' ? `[${a.address}]` : a.address;
      return `${host}:${a.port}`;
    };
    this.registration.update({
      instance_id: this.instanceId,
      hostname: hostname(),
      pid: process.pid,
      version: VERSION,
      address: this.addresses.proxy.map(addr),
      status_address: addr(this.addresses.status),
      revision: st.revision,
      ready: st.ready,
      stale: st.stale,
      rejected: st.rejected.length,
      started_at: this.startedAt,
      updated_at: new Date().toISOString(),
    });
  }

  private async startConfig(): Promise<void> {
    const events = {
      onChangeSet: (cs: ChangeSet) => this.applyChangeSet(cs),
      onState: (s: SourceState) => {
        if (s.connected) this.sourceError = undefined;
        this.sourceState = s;
        this.register();
      },
      onError: (e: { code: string; message: string }) => {
        this.sourceError = e;
      },
    };
    try {
      await this.source.start(events);
      return;
    } catch (err) {
      log.warn({ err: (err as Error).message }, `${this.source.name} source not available at start`);
    }
    // the source is down (it keeps retrying): serve the last good snapshot if there is one
    const saved = await readSnapshotFile(this.config.config.snapshot).catch((err: Error) => {
      log.error({ err: err.message }, 'cannot load snapshot');
      return undefined;
    });
    if (this.synced) return; // the source came back while we were reading the file
    if (saved && saved.source === this.config.config.source) {
      this.store.apply(saved);
      this.fromSnapshot = true;
      log.warn({ path: this.config.config.snapshot, revision: saved.revision, savedAt: saved.savedAt }, 'serving the last snapshot from disk (stale)');
    } else if (this.config.config.source === 'file') {
      // a broken routes file and nothing to fall back to: refuse to start rather than serve nothing
      await this.source.stop();
      throw Object.assign(new Error(this.sourceError?.message ?? 'file source failed'), { code: this.sourceError?.code });
    } else {
      log.warn('no snapshot on disk: not ready until the config source answers');
    }
  }

  private applyChangeSet(cs: ChangeSet): void {
    const { rejected } = this.store.apply(cs);
    if (cs.full) {
      this.synced = true;
      this.fromSnapshot = false;
    }
    for (const r of rejected) log.warn({ code: r.code, kind: r.kind, id: r.id }, `rejected ${r.reason}`);
    this.writer.schedule(this.store.snapshot);
    this.register();
  }

  status(): StatusReport {
    const s = this.store.snapshot;
    const ready = this.synced || this.fromSnapshot;
    return {
      instance_id: this.instanceId,
      version: VERSION,
      source: this.config.config.source,
      revision: s.revision,
      source_detail: s.detail,
      ready,
      stale: !ready || this.fromSnapshot || !this.sourceState.connected || this.sourceError !== undefined,
      from_snapshot: this.fromSnapshot,
      connected: this.sourceState.connected,
      connected_since: this.sourceState.since,
      source_error: this.sourceError ?? this.sourceState.error,
      last_applied: this.lastApplied,
      counts: { routes: s.routes.size, services: s.services.size, upstreams: s.upstreams.size },
      rejected: this.store.rejections(),
      rejections_total: Object.fromEntries(this.store.rejectionCount),
    };
  }

  private requestDone(socket: Socket): void {
    this.inFlight--;
    if (this.draining) {
      // finish the response, then close: a keep-alive client must reconnect elsewhere
      socket.end();
      if (this.inFlight === 0) this.drained?.();
    }
  }

  /**
   * Graceful stop: stop accepting, let in-flight requests finish (up to proxy.drain_timeout),
   * then close everything and flush the snapshot.
   */
  async stop(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    clearTimeout(this.poolCleanup);
    const closed = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.servers) s.closeIdleConnections();
    if (this.inFlight > 0) {
      const timeout = this.config.proxy.drain_timeout * 1000;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeout);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const s of this.servers) s.closeAllConnections();
    for (const socket of this.upgraded) socket.destroy();
    await Promise.all(closed);
    await this.registration?.stop();
    await this.source.stop();
    await this.writer.flush();
    await closePools();
    if (this.statusServer) {
      this.statusServer.closeAllConnections();
      await new Promise<void>((r) => this.statusServer!.close(() => r()));
    }
  }
}
