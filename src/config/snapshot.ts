import type { Kind } from './changeset.ts';
import { FrozenMap } from './frozen-map.ts';
import type { RouteConfig } from './schema/route.ts';
import type { ServiceConfig } from './schema/service.ts';
import type { UpstreamConfig } from './schema/upstream.ts';
import type { ConsumerConfig } from './schema/consumer.ts';
import type { GlobalRuleConfig, PluginConfigConfig } from './schema/plugin-config.ts';
import type { SslConfig } from './schema/ssl.ts';
import { streamUpstreamForCompile, type StreamRouteConfig } from './schema/stream-route.ts';
import { KINDS, perKind } from './changeset.ts';

export interface StoredObject<V> {
  readonly id: string;
  /** source revision at which this version was written (etcd mod_revision) */
  readonly modRevision: number;
  readonly value: V;
}

export interface SnapshotObjects {
  readonly routes: ReadonlyMap<string, StoredObject<RouteConfig>>;
  readonly services: ReadonlyMap<string, StoredObject<ServiceConfig>>;
  readonly upstreams: ReadonlyMap<string, StoredObject<UpstreamConfig>>;
  readonly consumers: ReadonlyMap<string, StoredObject<ConsumerConfig>>;
  readonly plugin_configs: ReadonlyMap<string, StoredObject<PluginConfigConfig>>;
  readonly global_rules: ReadonlyMap<string, StoredObject<GlobalRuleConfig>>;
  readonly ssls: ReadonlyMap<string, StoredObject<SslConfig>>;
  readonly stream_routes: ReadonlyMap<string, StoredObject<StreamRouteConfig>>;
}

/**
 * The configuration in force (maps are FrozenMaps: an update shares the unchanged entries): every object valid and every reference resolved. Immutable once
 * published; publishing a new one is a single reference swap in the store.
 */
export interface Snapshot extends SnapshotObjects {
  /** the source revision this snapshot reflects */
  readonly revision: number;
  readonly source: string;
  /** source detail (file: content hash) */
  readonly detail?: string;
  /** ISO time the snapshot was published */
  readonly appliedAt: string;
}

/** Ids whose version in force changed (added, replaced or removed) between two snapshots. */
export type SnapshotDiff = Record<Kind, Set<string>>;

export function emptyDiff(): SnapshotDiff {
  return perKind(() => new Set<string>());
}

export function isEmptyDiff(d: SnapshotDiff): boolean {
  return KINDS.every((kind) => d[kind].size === 0);
}

export function emptySnapshot(source: string): Snapshot {
  return {
    revision: 0,
    source,
    appliedAt: new Date(0).toISOString(),
    ...(perKind(() => FrozenMap.empty()) as unknown as SnapshotObjects),
  };
}

/**
 * The upstreams whose config the change from `previous` to `snapshot` (ids in `diff`) touched, by
 * upstream key ("upstreams/<id>", and the inline ones "services/<id>", "routes/<id>",
 * "stream_routes/<id>"), with their config (undefined: gone). The instance's upstream followers
 * (DNS discovery, health checks) walk this once per change. An object that has no inline upstream
 * and had none is left out: the first snapshot of 50,000 routes that use upstream objects is no
 * 50,000-entry map of nothing for each follower.
 */
export function changedUpstreams(previous: Snapshot, snapshot: Snapshot, diff: SnapshotDiff): Map<string, UpstreamConfig | undefined> {
  const out = new Map<string, UpstreamConfig | undefined>();
  for (const id of diff.upstreams) out.set(`upstreams/${id}`, snapshot.upstreams.get(id)?.value);
  const inline = <V>(kind: 'services' | 'routes' | 'stream_routes', upstreamOf: (value: V) => UpstreamConfig | undefined) => {
    const before = previous[kind] as ReadonlyMap<string, StoredObject<V>>;
    const now = snapshot[kind] as ReadonlyMap<string, StoredObject<V>>;
    for (const id of diff[kind]) {
      const was = before.get(id);
      const is = now.get(id);
      const upstream = is && upstreamOf(is.value);
      if (upstream !== undefined || (was !== undefined && upstreamOf(was.value) !== undefined)) out.set(`${kind}/${id}`, upstream);
    }
  };
  inline<ServiceConfig>('services', (s) => s.upstream);
  inline<RouteConfig>('routes', (r) => r.upstream);
  inline<StreamRouteConfig>('stream_routes', (r) => r.upstream && streamUpstreamForCompile(r.upstream));
  return out;
}
