import { Agent, request, type Dispatcher } from 'undici';
import type { GatewayConfig } from '../config/gateway.ts';
import type { StatusReport } from '../observability/status.ts';
import { EtcdClient } from '../sources/etcd/client.ts';
import { configKey, configRangeStart } from '../sources/etcd/source.ts';
import { watchPrefix } from '../sources/etcd/watch.ts';
import { INSTANCES_DIR, type InstanceRecord } from '../server/registration.ts';

export interface FleetInstance extends InstanceRecord {
  /** serves the newest config change (revision >= configRevision) */
  converged: boolean;
  /**
   * where revision, ready, stale and rejected come from: 'live' = the instance's own /status just
   * now; 'record' = its etcd record, which publishes the revision at most every `fleet_interval`
   * seconds (its status address did not answer in time, or answered as another instance)
   */
  from: 'live' | 'record';
  /** the revision in the etcd record */
  record_revision: number;
}

export interface FleetView {
  /** etcd's current revision */
  etcdRevision: number;
  /** revision of the newest config change (route/service/upstream put or delete) at or before etcdRevision */
  configRevision: number;
  /** true when configRevision could only be estimated (history compacted: deletes not seen) */
  approximate: boolean;
  instances: FleetInstance[];
}

export interface FleetOptions {
  /** ms to wait for each instance's /status (default 500) */
  liveTimeoutMs?: number;
}

/** /status requests in flight at once: 1,000 instances whose addresses never answer cost 5 x 500 ms */
const LIVE_CONCURRENCY = 200;
/** a /status answer larger than this is not read (it lists rejections; the record is used instead) */
const LIVE_MAX_BYTES = 8 << 20;

/**
 * Reads the fleet from etcd: every registered instance and whether it serves etcd's current config.
 * The revision each instance serves is asked live from its status listener (records publish it at
 * a bounded rate, so they may lag by up to `fleet_interval`); the record is the fallback.
 * "Converged" compares against the newest *config* change, not etcd's revision: instance
 * registrations (and anything else in etcd) bump the revision too, and must not count.
 */
export async function readFleet(cfg: GatewayConfig, opts: FleetOptions = {}): Promise<FleetView> {
  const e = cfg.config.etcd!;
  const prefix = `${e.prefix.replace(/\/+$/, '')}/`;
  const client = new EtcdClient({ endpoints: e.endpoints, user: e.user, password: e.password, tls: e.tls, timeout: e.timeout });
  try {
    const listed = await client.rangePrefix(`${prefix}${INSTANCES_DIR}/`);
    const etcdRevision = listed.revision;
    const records = listed.kvs.flatMap((kv) => {
      try {
        return [JSON.parse(kv.value) as InstanceRecord];
      } catch {
        return [];
      }
    });
    const instances = await withLiveState(records, opts.liveTimeoutMs ?? 500);
    const oldest = instances.reduce((m, i) => Math.min(m, i.revision), etcdRevision);
    let { configRevision, approximate } = await newestConfigChange(client, prefix, oldest, etcdRevision);
    if (approximate) configRevision = Math.max(configRevision, oldest);
    return {
      etcdRevision,
      configRevision,
      approximate,
      instances: instances
        .map((i) => ({ ...i, converged: i.revision >= configRevision }))
        .sort((a, b) => a.instance_id.localeCompare(b.instance_id)),
    };
  } finally {
    await client.close();
  }
}

/** Each record with revision, ready, stale and rejected taken from the instance's /status when it answers. */
async function withLiveState(records: InstanceRecord[], timeoutMs: number): Promise<Omit<FleetInstance, 'converged'>[]> {
  const out: Omit<FleetInstance, 'converged'>[] = new Array(records.length);
  let next = 0;
  // its own agent, closed at the end: kept-alive sockets must not hold the CLI process open
  const agent = new Agent({ connect: { timeout: timeoutMs } });
  const worker = async () => {
    while (next < records.length) {
      const i = next++;
      const r = records[i]!;
      const live = await liveStatus(r, timeoutMs, agent);
      out[i] = live
        ? { ...r, revision: live.revision, ready: live.ready, stale: live.stale, rejected: live.rejected.length, from: 'live', record_revision: r.revision }
        : { ...r, from: 'record', record_revision: r.revision };
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(LIVE_CONCURRENCY, records.length) }, worker));
  } finally {
    await agent.destroy();
  }
  return out;
}

/**
 * GET http://<status_address>/status within `timeoutMs`; undefined if it does not answer, or
 * answers as another instance: a status listener on 127.0.0.1 (the default) is published as such,
 * and from another host that address reaches whatever listens there locally.
 */
async function liveStatus(r: InstanceRecord, timeoutMs: number, dispatcher: Dispatcher): Promise<StatusReport | undefined> {
  if (typeof r.status_address !== 'string' || r.status_address === '') return undefined;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const res = await request(`http://${r.status_address}/status`, { dispatcher, signal, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return undefined;
    }
    let size = 0;
    const chunks: Buffer[] = [];
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > LIVE_MAX_BYTES) {
        res.body.destroy();
        return undefined;
      }
      chunks.push(chunk as Buffer);
    }
    const st = JSON.parse(Buffer.concat(chunks).toString('utf8')) as StatusReport;
    if (st.instance_id !== r.instance_id || typeof st.revision !== 'number' || !Array.isArray(st.rejected)) return undefined;
    return st;
  } catch {
    return undefined;
  }
}

/** Replays etcd's history after `after` up to `upTo` and returns the revision of the last config event. */
async function newestConfigChange(client: EtcdClient, prefix: string, after: number, upTo: number): Promise<{ configRevision: number; approximate: boolean }> {
  let last = after;
  if (after >= upTo) return { configRevision: last, approximate: false };
  const abort = new AbortController();
  let quiet: NodeJS.Timeout | undefined;
  const settle = () => {
    clearTimeout(quiet);
    // history up to `upTo` is sent right after the watch is created; a short silence means it is all here
    quiet = setTimeout(() => abort.abort(), 300);
  };
  // the config range only: registrations are written outside it and would make this replay long
  const end = await watchPrefix(client, {
    prefix,
    from: configRangeStart(prefix),
    startRevision: after + 1,
    endpoint: client.rotate(),
    probeInterval: 0,
    signal: abort.signal,
    onCreated: settle,
    onProgress: settle,
    onEvents: (events) => {
      for (const ev of events) {
        const rev = ev.kv.modRevision;
        if (rev > upTo) {
          abort.abort();
          return;
        }
        if (configKey(prefix, ev.kv.key)) last = Math.max(last, rev);
      }
      settle();
    },
  });
  clearTimeout(quiet);
  if (end.reason === 'compacted') {
    // history is gone: the newest put still shows in the keys' mod_revision (deletes do not)
    const kvs = (await client.rangePrefix(prefix, { from: configRangeStart(prefix) })).kvs.filter((kv) => configKey(prefix, kv.key));
    return { configRevision: kvs.reduce((m, kv) => Math.max(m, kv.modRevision), 0), approximate: true };
  }
  if (end.reason === 'disconnected') throw end.error;
  return { configRevision: last, approximate: false };
}

export function formatFleet(view: FleetView): string {
  const head = ['INSTANCE', 'ADDRESS', 'VERSION', 'REVISION', 'READY', 'STALE', 'REJECTED', 'UPDATED', 'CONVERGED', 'FROM'];
  const rows = view.instances.map((i) => [
    i.instance_id,
    i.address.join(','),
    i.version,
    String(i.revision),
    i.ready ? 'yes' : 'no',
    i.stale ? 'yes' : 'no',
    String(i.rejected),
    i.updated_at,
    i.converged ? 'yes' : 'NO',
    i.from,
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((v, c) => v.padEnd(widths[c]!)).join('  ').trimEnd();
  const converged = view.instances.filter((i) => i.converged).length;
  const fromRecord = view.instances.filter((i) => i.from === 'record');
  const intervals = [...new Set(fromRecord.map((i) => i.fleet_interval).filter((s) => s !== undefined))];
  return [
    line(head),
    ...rows.map(line),
    '',
    `etcd revision ${view.etcdRevision}; newest config change at revision ${view.configRevision}${view.approximate ? ' (approximate: history compacted)' : ''}; ` +
      `${converged}/${view.instances.length} instances converged`,
    ...(fromRecord.length > 0
      ? [
          `${fromRecord.length} instance(s) shown FROM record: status address did not answer; their revision is published ` +
            `every ${intervals.length === 1 ? `${intervals[0]} s` : 'fleet_interval'} and may lag by that much`,
        ]
      : []),
  ].join('\n');
}
