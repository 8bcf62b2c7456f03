import type { GatewayConfig } from '../config/gateway.ts';
import { EtcdClient } from '../sources/etcd/client.ts';
import { configKey } from '../sources/etcd/source.ts';
import { watchPrefix } from '../sources/etcd/watch.ts';
import { INSTANCES_DIR, type InstanceRecord } from '../server/registration.ts';

export interface FleetView {
  /** etcd's current revision */
  etcdRevision: number;
  /** revision of the newest config change (route/service/upstream put or delete) at or before etcdRevision */
  configRevision: number;
  /** true when configRevision could only be estimated (history compacted: deletes not seen) */
  approximate: boolean;
  instances: Array<InstanceRecord & { converged: boolean }>;
}

/**
 * Reads the fleet from etcd: every registered instance and whether it serves etcd's current config.
 * "Converged" compares against the newest *config* change, not etcd's revision: instance
 * registrations (and anything else in etcd) bump the revision too, and must not count.
 */
export async function readFleet(cfg: GatewayConfig): Promise<FleetView> {
  const e = cfg.config.etcd!;
  const prefix = `${e.prefix.replace(/\/+$/, '')}/`;
  const client = new EtcdClient({ endpoints: e.endpoints, user: e.user, password: e.password, tls: e.tls, timeout: e.timeout });
  try {
    const listed = await client.rangePrefix(`${prefix}${INSTANCES_DIR}/`);
    const etcdRevision = listed.revision;
    const instances = listed.kvs.flatMap((kv) => {
      try {
        return [JSON.parse(kv.value) as InstanceRecord];
      } catch {
        return [];
      }
    });
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
  const end = await watchPrefix(client, {
    prefix,
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
    const kvs = (await client.rangePrefix(prefix)).kvs.filter((kv) => configKey(prefix, kv.key));
    return { configRevision: kvs.reduce((m, kv) => Math.max(m, kv.modRevision), 0), approximate: true };
  }
  if (end.reason === 'disconnected') throw end.error;
  return { configRevision: last, approximate: false };
}

export function formatFleet(view: FleetView): string {
  const head = ['INSTANCE', 'ADDRESS', 'VERSION', 'REVISION', 'READY', 'STALE', 'REJECTED', 'UPDATED', 'CONVERGED'];
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
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((v, c) => v.padEnd(widths[c]!)).join('  ').trimEnd();
  const converged = view.instances.filter((i) => i.converged).length;
  return [
    line(head),
    ...rows.map(line),
    '',
    `etcd revision ${view.etcdRevision}; newest config change at revision ${view.configRevision}${view.approximate ? ' (approximate: history compacted)' : ''}; ` +
      `${converged}/${view.instances.length} instances converged`,
  ].join('\n');
}
