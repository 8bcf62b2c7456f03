// What the page reads from the status listener. The report types are the server's own (type-only
// imports, erased by the bundler): a change there breaks the dashboard's type-check, not the page.
export type { StatusReport } from '../../status.ts';
export type { TrafficSnapshot, RouteTraffic, NodeTraffic, DurationHistogram } from '../../exchange.ts';
export type { FleetView, FleetInstance } from '../../../cli/fleet.ts';
export type { HistoryEntry, HistoryResult, ConfigDiff, RollbackResult } from '../../../admin/history.ts';

/** A node list as upstreams carry it: APISIX's map form ("host:port" -> weight) or its array form. */
export type Nodes = Record<string, number> | Array<{ host: string; port?: number; weight?: number; priority?: number }>;

/**
 * GET /status/routes: the objects in force (src/observability/objects-view.ts, ObjectsView): what
 * identifies each one, the lists cut at a limit (`totals` has the real counts).
 */
export interface RoutesView {
  revision?: number;
  totals?: { routes: number; services: number; upstreams: number };
  routes: Array<{
    id: string;
    name?: string;
    uri?: string;
    uris?: string[];
    host?: string;
    hosts?: string[];
    methods?: string[];
    service_id?: string;
    upstream_id?: string;
    priority?: number;
    status?: number;
  }>;
  services: Array<{ id: string; name?: string; upstream_id?: string }>;
  upstreams: Array<{ id: string; name?: string; type?: string; nodes?: Nodes; service_name?: string; discovery_type?: string; scheme?: string }>;
}

export interface WhoAmI {
  name: string;
  role: 'admin' | 'viewer';
}
