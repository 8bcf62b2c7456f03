import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Kind } from '../config/changeset.ts';
import type { RejectionRecord } from '../config/store.ts';
import type { Registry } from 'prom-client';
import type { UpstreamHealthReport } from '../upstream/health/supervisor.ts';
import type { DiscoveryReport } from '../upstream/discovery/upstream-nodes.ts';
import type { CertificateReport } from './certificates.ts';
import type { TrafficSnapshot } from './exchange.ts';

/** What every instance reports about itself at GET /status. */
export interface StatusReport {
  instance_id: string;
  version: string;
  /** "file" | "etcd" */
  source: string;
  /** source revision served (file: a counter; see source_detail for the content hash) */
  revision: number;
  source_detail?: string;
  /** true once a first full sync (or a snapshot from disk) is in force */
  ready: boolean;
  /** true while what is served may differ from the source: loaded from disk, or the source is unreachable/broken */
  stale: boolean;
  /** config came from the on-disk snapshot and the source has not answered since start */
  from_snapshot: boolean;
  connected: boolean;
  /** since when `connected` has its current value */
  connected_since: string;
  source_error?: { code: string; message: string };
  last_applied: string | null;
  counts: Record<Kind, number>;
  rejected: RejectionRecord[];
  rejections_total: Record<string, number>;
  /**
   * requests answered 500 because a plugin threw, since start, by plugin; with proxy.workers > 1
   * the sum over the workers (each reports within a second)
   */
  plugin_failures?: Record<string, number>;
  /** every upstream with `checks`: each node's health, since when, and the last probe */
  upstream_health?: UpstreamHealthReport[];
  /** every name upstreams resolve by DNS: what it found, when, and the last failure (the last good answer stays in force) */
  upstream_dns?: DiscoveryReport[];
  /** every ssl object in force: SNIs and when its certificates expire (never key material) */
  certificates?: CertificateReport[];
  /**
   * TLS connections refused since start: no ssl object for the SNI, or refused during or after the
   * handshake (protocol, client certificate); with workers, the sum over them (within a second)
   */
  tls_refusals?: { no_certificate: number; refused: number };
  /** with proxy.workers > 1: each worker process and the revision it serves */
  workers?: Array<{ pid: number; revision: number | null; listening: boolean }>;
}

/** What the status listener serves besides /status: each absent one answers 404. */
export interface StatusEndpoints {
  /** the whole instance's request traffic (with workers: every worker's, merged) */
  traffic?: () => Promise<TrafficSnapshot>;
  /** the config objects in force, for the dashboard's tables (an ETag of its revision: a page polls it cheaply) */
  objects?: () => { revision: number };
  /** the fleet sharing this etcd (etcd source only) */
  fleet?: () => Promise<unknown>;
  /** serve the dashboard at /dashboard */
  dashboard?: boolean;
  /** the Admin API, when configured: /portico/admin/* is passed to it (the dashboard's history) */
  admin?: () => { handle(req: IncomingMessage, res: ServerResponse): void } | undefined;
}

const json = (res: ServerResponse, status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
const notFound = (res: ServerResponse) => json(res, 404, { error_msg: '404 Not Found' });

/** The fleet view costs an etcd range and a /status request per instance: one per 2 s, however many pages ask. */
const FLEET_CACHE_MS = 2000;

/**
 * Status endpoints, on their own listener (loopback by default) so that they are never routed
 * through the proxy: GET /status (JSON), GET /status/ready (200 when ready, else 503),
 * GET /metrics (Prometheus), GET /status/traffic, /status/routes, /status/fleet (JSON for the
 * dashboard), GET /dashboard (the page), and /portico/admin/* (the Admin API's own endpoints, with
 * its keys) when an Admin API is configured.
 */
export function createStatusServer(report: () => StatusReport, endpoints: StatusEndpoints = {}): Server {
  // prom-client is loaded at the first scrape, not by every gateway at start
  let metrics: Promise<Registry> | undefined;
  const registry = () =>
    (metrics ??= Promise.all([import('./metrics.ts'), import('./traffic.ts')]).then(([m, t]) => {
      const r = m.createMetrics(report);
      if (endpoints.traffic !== undefined) t.registerTrafficMetrics(r, endpoints.traffic);
      return r;
    }));
  let dashboard: Promise<(req: IncomingMessage, res: ServerResponse, path: string) => boolean> | undefined;
  const dashboardHandler = () => (dashboard ??= import('./dashboard/serve.ts').then((d) => d.createDashboard({ admin: () => endpoints.admin?.() !== undefined })));
  let fleet: { at: number; view: Promise<unknown> } | undefined;
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path.startsWith('/portico/admin/')) {
      const admin = endpoints.admin?.();
      if (admin === undefined) {
        req.resume();
        return notFound(res);
      }
      return admin.handle(req, res);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'application/json', allow: 'GET, HEAD' }).end('{"error_msg":"method not allowed"}');
      return;
    }
    const failed = (err: Error) => json(res, 500, { error_msg: err.message });
    if (path === '/status') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(report()));
    } else if (path === '/metrics') {
      registry()
        .then(async (r) => ({ text: await r.metrics(), type: r.contentType }))
        .then(
          ({ text, type }) => res.writeHead(200, { 'content-type': type }).end(text),
          (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(err.message),
        );
    } else if (path === '/status/ready') {
      const r = report();
      const body = JSON.stringify({ ready: r.ready, stale: r.stale, revision: r.revision });
      res.writeHead(r.ready ? 200 : 503, { 'content-type': 'application/json' }).end(body);
    } else if (path === '/status/traffic' && endpoints.traffic !== undefined) {
      endpoints.traffic().then((t) => json(res, 200, t), failed);
    } else if (path === '/status/routes' && endpoints.objects !== undefined) {
      const view = endpoints.objects();
      const etag = `"${view.revision}"`;
      if (req.headers['if-none-match'] === etag) return void res.writeHead(304, { etag, 'cache-control': 'no-cache' }).end();
      res.writeHead(200, { 'content-type': 'application/json', etag, 'cache-control': 'no-cache' }).end(JSON.stringify(view));
    } else if (path === '/status/fleet' && endpoints.fleet !== undefined) {
      const now = Date.now();
      if (fleet === undefined || now - fleet.at > FLEET_CACHE_MS) fleet = { at: now, view: endpoints.fleet() };
      fleet.view.then((v) => json(res, 200, v), (err: Error) => json(res, 503, { error_msg: `fleet: ${err.message}` }));
    } else if (endpoints.dashboard === true && (path === '/dashboard' || path.startsWith('/dashboard/'))) {
      dashboardHandler().then((handle) => handle(req, res, path) || notFound(res), failed);
    } else {
      notFound(res);
    }
  });
}
