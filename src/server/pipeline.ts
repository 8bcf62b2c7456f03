import { certificateReport } from '../observability/certificates.ts';
import { tlsRefusals } from './tls-front.ts';
import { configureDataEncryption } from '../config/data-encryption.ts';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { LatestWriter } from '../coalesce.ts';
import { perKind, type Change, type ChangeSet } from '../config/changeset.ts';
import { pluginFailures } from '../plugins/run.ts';
import type { GatewayConfig } from '../config/gateway.ts';
import { readSnapshotFile, snapshotWriter } from '../config/persist.ts';
import { changedUpstreams, type Snapshot } from '../config/snapshot.ts';
import { ConfigStore, type RejectionRecord, type ValidObject } from '../config/store.ts';
import { log } from '../observability/log.ts';
import type { StatusReport } from '../observability/status.ts';
import type { CompileFailure } from '../runtime/types.ts';
import { EtcdSource } from '../sources/etcd/source.ts';
import { FileSource } from '../sources/file.ts';
import type { Source, SourceState } from '../sources/source.ts';
import { VERSION } from '../version.ts';
import { INSTANCES_DIR, InstanceRegistration } from './registration.ts';
import { HealthSupervisor } from '../upstream/health/supervisor.ts';
import { NodeDiscovery } from '../upstream/discovery/upstream-nodes.ts';
import { collectGarbage, LARGE_LISTING } from './heap.ts';

function createSource(cfg: GatewayConfig): Source {
  if (cfg.config.source === 'etcd') {
    const e = cfg.config.etcd!;
    return new EtcdSource({ endpoints: e.endpoints, prefix: e.prefix, user: e.user, password: e.password, tls: e.tls, timeout: e.timeout });
  }
  return new FileSource({ path: cfg.config.file.path });
}

/**
 * The config side of one instance: source -> store -> snapshot file, fleet registration and the
 * status report. It runs once per instance whatever the number of worker processes, so etcd sees
 * one watch per instance.
 */
export class ConfigPipeline {
  readonly instanceId: string;
  readonly store: ConfigStore;
  /** upstream host names and service names resolved by DNS, once per instance */
  readonly discovery: NodeDiscovery;
  /** active probes and the node health of every checked upstream, once per instance */
  readonly health: HealthSupervisor;
  readonly source: Source;
  private readonly writer: LatestWriter<Snapshot>;
  private readonly registration: InstanceRegistration | undefined;
  private sourceState: SourceState = { connected: false, since: new Date().toISOString() };
  private sourceError: { code: string; message: string } | undefined;
  private fromSnapshot = false;
  private synced = false;
  private addresses: { proxy: AddressInfo[]; status: AddressInfo } | undefined;
  private stopping = false;
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly config: GatewayConfig,
    /**
     * extra readiness condition (workers up) and status fields; `listed`: the valid objects of a
     * listing, page by page, while it goes on (before the snapshot holding them is published);
     * `collect`: runs the heap collection after a first large listing (server/heap.ts) when the
     * caller chooses (default: at once, before the snapshot is applied)
     */
    private readonly extra: {
      ready(): boolean;
      report?(): Partial<StatusReport>;
      listed?(objects: ValidObject[]): void;
      collect?(run: () => void): void;
    } = { ready: () => true },
  ) {
    this.instanceId = config.instance_id ?? `${hostname()}-${randomBytes(3).toString('hex')}`;
    configureDataEncryption(config.data_encryption?.keyring);
    this.store = new ConfigStore(config.config.source, { routerMode: config.proxy.router });
    this.source = createSource(config);
    const dns = config.dns;
    this.discovery = new NodeDiscovery({ servers: dns.servers, minTtl: dns.min_ttl, maxTtl: Math.max(dns.min_ttl, dns.max_ttl), timeoutMs: dns.timeout * 1000, tries: dns.tries });
    this.health = new HealthSupervisor((key, upstream) => this.discovery.nodesOf(key, upstream));
    // discovery first: the health supervisor checks the nodes it found
    let followed = this.store.snapshot;
    this.store.subscribe((snapshot, diff) => {
      const changed = changedUpstreams(followed, snapshot, diff);
      followed = snapshot;
      this.discovery.update(changed);
      this.health.update(changed);
    });
    this.discovery.subscribe((d) => {
      if (d.nodes !== undefined) this.health.nodesChanged(d.upstream, d.nodes);
    });
    if (this.source instanceof EtcdSource) {
      const prefix = config.config.etcd!.prefix.replace(/\/+$/, '');
      this.registration = new InstanceRegistration(this.source.client, `${prefix}/${INSTANCES_DIR}/${this.instanceId}`, { fleetInterval: config.fleet_interval });
    }
    this.writer = snapshotWriter(config.config.snapshot, (err) =>
      log.error({ err, path: config.config.snapshot }, 'cannot write snapshot; the gateway keeps serving'),
    );
  }

  /**
   * Syncs with the source; when it is down, loads the last snapshot from disk (the source keeps
   * retrying). Throws only for a file source that is broken with no snapshot to fall back to.
   */
  async start(): Promise<void> {
    const events = {
      onChangeSet: (cs: ChangeSet) => this.applyChangeSet(cs),
      onPrefetch: (changes: readonly Change[]) => {
        if (this.extra.listed === undefined) return this.store.stage(changes);
        const valid: ValidObject[] = [];
        this.store.stage(changes, valid);
        if (valid.length > 0) this.extra.listed(valid);
      },
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

  /** The listeners are bound: publish them in the fleet registration. */
  setAddresses(proxy: AddressInfo[], status: AddressInfo): void {
    this.addresses = { proxy, status };
    this.register();
  }

  private applyChangeSet(cs: ChangeSet): void {
    if (cs.full && !this.synced && !this.fromSnapshot && cs.changes.length >= LARGE_LISTING) {
      // the first listing of a large config, nothing served yet (not even the snapshot file): its
      // garbage goes before the tables are built (server/heap.ts)
      const objects = cs.changes.length;
      const run = () => log.debug({ objects, ms: Math.round(collectGarbage()) }, 'heap collected after the first listing');
      if (this.extra.collect === undefined) run();
      else this.extra.collect(run);
    }
    const { rejected } = this.store.apply(cs);
    if (cs.full) {
      this.synced = true;
      this.fromSnapshot = false;
    }
    this.published(rejected);
  }

  /**
   * Objects a worker's data plane could not compile: rejected, and the snapshot (and the file
   * written from it) republished without them.
   */
  rejectCompileFailures(failures: readonly CompileFailure[]): void {
    const rejected = this.store.rejectCompileFailures(failures);
    if (rejected.length > 0) this.published(rejected);
  }

  private published(rejected: readonly RejectionRecord[]): void {
    for (const r of rejected) log.warn({ code: r.code, kind: r.kind, id: r.id }, `rejected ${r.reason}`);
    this.writer.schedule(this.store.snapshot);
    this.register();
  }

  /** Publishes this instance's state to the fleet view (etcd source only). */
  register(): void {
    if (!this.registration || !this.addresses || this.stopping) return;
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

  status(): StatusReport {
    const s = this.store.snapshot;
    const synced = this.synced || this.fromSnapshot;
    // and every host name had a first answer (or failure): the first requests go to resolved nodes
    const ready = synced && this.extra.ready() && this.discovery.settled();
    return {
      instance_id: this.instanceId,
      version: VERSION,
      source: this.config.config.source,
      revision: s.revision,
      source_detail: s.detail,
      ready,
      stale: !synced || this.fromSnapshot || !this.sourceState.connected || this.sourceError !== undefined,
      from_snapshot: this.fromSnapshot,
      connected: this.sourceState.connected,
      connected_since: this.sourceState.since,
      source_error: this.sourceError ?? this.sourceState.error,
      // nothing applied yet: the store still holds its empty initial snapshot
      last_applied: s.revision > 0 ? s.appliedAt : null,
      counts: perKind((kind) => s[kind].size),
      rejected: this.store.rejections(),
      rejections_total: Object.fromEntries(this.store.rejectionCount),
      plugin_failures: Object.fromEntries(pluginFailures),
      upstream_health: this.health.report(),
      upstream_dns: this.discovery.report(),
      certificates: certificateReport(s),
      tls_refusals: { no_certificate: tlsRefusals.noCertificate, refused: tlsRefusals.refused },
      ...this.extra.report?.(),
    };
  }

  /** Deregisters, stops the source and writes the last snapshot. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.health.stop();
    this.discovery.stop();
    await this.registration?.stop();
    await this.source.stop();
    await this.writer.flush();
  }
}
