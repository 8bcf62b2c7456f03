import type { Snapshot } from '../config/snapshot.ts';

/** At most this many routes (and services, upstreams) in one answer: the dashboard's tables, not an export. */
export const OBJECTS_VIEW_LIMIT = 1000;

export interface ObjectsView {
  revision: number;
  /** objects in force, by kind (the lists may be cut at OBJECTS_VIEW_LIMIT: compare) */
  totals: { routes: number; services: number; upstreams: number };
  routes: Array<Record<string, unknown>>;
  services: Array<Record<string, unknown>>;
  upstreams: Array<Record<string, unknown>>;
}

function pick(value: object, fields: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const v = (value as Record<string, unknown>)[f];
    if (v !== undefined) out[f] = v;
  }
  return out;
}

function first<V extends object>(map: ReadonlyMap<string, { value: V }>, fields: readonly string[]): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const [id, { value }] of map) {
    if (out.length >= OBJECTS_VIEW_LIMIT) break;
    out.push({ id, ...pick(value, fields) });
  }
  return out;
}

const ROUTE_FIELDS = ['name', 'uri', 'uris', 'host', 'hosts', 'methods', 'priority', 'service_id', 'upstream_id', 'status'] as const;
const SERVICE_FIELDS = ['name', 'upstream_id', 'hosts'] as const;
const UPSTREAM_FIELDS = ['name', 'type', 'nodes', 'service_name', 'discovery_type', 'scheme'] as const;

/**
 * The objects in force as the dashboard lists them: what identifies each one (never plugin
 * settings: they may hold keys and secrets). GET /status/routes.
 */
export function configObjectsView(snapshot: Snapshot): ObjectsView {
  return {
    revision: snapshot.revision,
    totals: { routes: snapshot.routes.size, services: snapshot.services.size, upstreams: snapshot.upstreams.size },
    routes: first(snapshot.routes, ROUTE_FIELDS),
    services: first(snapshot.services, SERVICE_FIELDS),
    upstreams: first(snapshot.upstreams, UPSTREAM_FIELDS),
  };
}
