import { LatestWriter } from '../coalesce.ts';
import { log } from '../observability/log.ts';
import type { EtcdClient } from '../sources/etcd/client.ts';

/** What an instance publishes about itself at `<prefix>/_instances/<instance-id>`. */
export interface InstanceRecord {
  instance_id: string;
  hostname: string;
  pid: number;
  version: string;
  /** proxy listeners, "host:port" */
  address: string[];
  /** status listener, "host:port" */
  status_address: string;
  /**
   * the etcd revision of the config this instance serves, as of `updated_at`: published at most
   * once per `fleet_interval` seconds (`portico status --fleet` asks the instance for the live one)
   */
  revision: number;
  ready: boolean;
  stale: boolean;
  rejected: number;
  started_at: string;
  updated_at: string;
  /** seconds between two publications of `revision` (absent in records of older versions) */
  fleet_interval?: number;
}

export const INSTANCES_DIR = '_instances';

/** Default seconds between two publications of the served revision (see InstanceRegistration). */
export const DEFAULT_FLEET_INTERVAL = 15;

export interface RegistrationOptions {
  /** lease TTL, seconds (default 15) */
  ttl?: number;
  /** seconds between two publications of the served revision (default DEFAULT_FLEET_INTERVAL) */
  fleetInterval?: number;
}

/**
 * Keeps this instance registered in etcd under a lease, so the fleet view lists live instances
 * only: a crashed instance disappears when its lease expires (TTL), a stopped one at once.
 *
 * What is written when, so that the fleet's registration traffic does not grow with its rate of
 * config changes (N instances x every change was N etcd writes per change, each one also reaching
 * every watch of the prefix before the config range left `_instances/` out):
 *   - the record's *state* (addresses, version, ready, stale) is written when it changes, after
 *     100 ms of coalescing: at start, when etcd drops or comes back, and again after etcd lost the
 *     lease (restarted, wiped, or we were cut off for longer than the TTL);
 *   - the *served revision* (and the count of rejections) is published at most once per
 *     `fleetInterval`, on a timer with a random phase per instance so a fleet's writes spread
 *     evenly: N instances write at most N / fleetInterval times per second whatever the number of
 *     config changes. At the default 15 s a fleet of 1,000 writes ~67 times a second, leaving room
 *     under a budget of 100/s for starts and state changes (at 10 s the revisions alone would fill
 *     it). `portico status --fleet` takes the live revision from each instance's /status and falls
 *     back to this record.
 * Lease keep-alives are not writes (no revision, no watch event).
 */
export class InstanceRegistration {
  private leaseId: string | undefined;
  private keepAliveTimer: NodeJS.Timeout | undefined;
  private publishTimer: NodeJS.Timeout | undefined;
  private latest: InstanceRecord | undefined;
  /** the last record etcd acknowledged (undefined: none since start or since the lease was lost) */
  private written: InstanceRecord | undefined;
  /** the newest record handed to the writer (in flight, or written): what a new record is compared with */
  private scheduled: InstanceRecord | undefined;
  private readonly writer: LatestWriter<InstanceRecord>;
  private readonly ttl: number;
  private readonly intervalMs: number;
  private stopped = false;
  private failing = false;
  /** etcd writes done (successful puts), for tests and benchmarks */
  writes = 0;

  constructor(
    private readonly client: EtcdClient,
    private readonly key: string,
    opts: RegistrationOptions = {},
  ) {
    this.ttl = opts.ttl ?? 15;
    this.intervalMs = Math.max(0.01, opts.fleetInterval ?? DEFAULT_FLEET_INTERVAL) * 1000;
    // 100 ms of coalescing: each registration write is an etcd commit (raft + fsync) competing with
    // the config writes the fleet is applying
    this.writer = new LatestWriter((r) => this.put(r), (err) => this.failed(err), 100, 1000);
  }

  /**
   * Takes the newest record; writes it soon if its state changed, else leaves the revision to the
   * next periodic publication. Never throws: etcd may be down.
   */
  update(record: InstanceRecord): void {
    if (this.stopped) return;
    this.latest = { ...record, fleet_interval: this.intervalMs / 1000 };
    if (!this.keepAliveTimer) {
      this.keepAliveTimer = setInterval(() => void this.keepAlive(), (this.ttl * 1000) / 3).unref();
      // a random phase: instances started together (a rollout) must not publish together
      this.publishTimer = setTimeout(() => {
        this.publishTimer = setInterval(() => this.publish(), this.intervalMs).unref();
        this.publish();
      }, Math.random() * this.intervalMs).unref();
    }
    const basis = this.scheduled ?? this.written;
    if (!basis || stateChanged(basis, this.latest)) this.schedule(this.latest);
  }

  /** Hands a record to the writer, remembering it: a write in flight is not asked for twice. */
  private schedule(record: InstanceRecord): void {
    this.scheduled = record;
    this.writer.schedule(record);
  }

  /** The periodic publication: whatever differs from what etcd holds (also retries a failed write). */
  private publish(): void {
    if (this.stopped || !this.latest) return;
    // compared with what is being written, if anything: a put still in flight already carries it
    const w = this.scheduled ?? this.written;
    if (w && !stateChanged(w, this.latest) && w.revision === this.latest.revision && w.rejected === this.latest.rejected) return;
    this.schedule({ ...this.latest, updated_at: new Date().toISOString() });
  }

  private async put(record: InstanceRecord): Promise<void> {
    this.leaseId ??= (await this.client.grantLease(this.ttl)).id;
    await this.client.put(this.key, JSON.stringify(record), { lease: this.leaseId });
    this.writes++;
    this.written = record;
    if (this.failing) log.info({ key: this.key }, 'instance registration restored');
    this.failing = false;
  }

  private async keepAlive(): Promise<void> {
    if (this.stopped || !this.latest) return;
    try {
      const ttl = this.leaseId ? await this.client.keepAliveOnce(this.leaseId) : 0;
      if (ttl > 0) return;
      // lease gone (expired while we were cut off, or etcd was wiped): register again
      this.leaseId = undefined;
      this.written = undefined;
      this.schedule({ ...this.latest, updated_at: new Date().toISOString() });
    } catch (err) {
      this.failed(err as Error);
    }
  }

  private failed(err: Error): void {
    // the scheduled record did not land: the next publication compares with what etcd holds
    this.scheduled = undefined;
    if (!this.failing) log.warn({ key: this.key, err: err.message }, 'instance registration failed; retrying');
    this.failing = true;
  }

  /** Deregisters: revoking the lease deletes the record at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.keepAliveTimer);
    // a Timeout from setTimeout or setInterval: clearInterval clears either
    clearInterval(this.publishTimer);
    await this.writer.flush();
    if (this.leaseId) await this.client.revokeLease(this.leaseId).catch(() => undefined);
  }
}

/** Fields whose change is written at once (the revision and rejections wait for the timer). */
function stateChanged(a: InstanceRecord, b: InstanceRecord): boolean {
  return (
    a.ready !== b.ready ||
    a.stale !== b.stale ||
    a.version !== b.version ||
    a.pid !== b.pid ||
    a.hostname !== b.hostname ||
    a.status_address !== b.status_address ||
    a.address.join(',') !== b.address.join(',')
  );
}
