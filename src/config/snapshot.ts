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
 * The upstreams whose config a snapshot change touched, by upstream key ("upstreams/<id>", and the
 * inline ones "services/<id>", "routes/<id>", "stream_routes/<id>"), with their config (undefined: gone or none). The
 * instance's upstream followers (DNS discovery, health checks) walk this once per change.
 */
export function changedUpstreams(snapshot: Snapshot, diff: SnapshotDiff | undefined): Map<string, UpstreamConfig | undefined> {
  const out = new Map<string, UpstreamConfig | undefined>();
  const ids = (kind: 'upstreams' | 'services' | 'routes' | 'stream_routes') => diff?.[kind] ?? snapshot[kind].keys();
  for (const id of ids('upstreams')) out.set(`upstreams/${id}`, snapshot.upstreams.get(id)?.value);
  for (const id of ids('services')) out.set(`services/${id}`, snapshot.services.get(id)?.value.upstream);
  for (const id of ids('routes')) out.set(`routes/${id}`, snapshot.routes.get(id)?.value.upstream);
  for (const id of ids('stream_routes')) {
    const inline = snapshot.stream_routes.get(id)?.value.upstream;
    out.set(`stream_routes/${id}`, inline && streamUpstreamForCompile(inline));
  }
  return out;
}
