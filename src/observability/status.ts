import { createServer, type Server } from 'node:http';
import type { Kind } from '../config/changeset.ts';
import type { RejectionRecord } from '../config/store.ts';
import type { Registry } from 'prom-client';
import type { UpstreamHealthReport } from '../upstream/health/supervisor.ts';
import type { DiscoveryReport } from '../upstream/discovery/upstream-nodes.ts';
import type { CertificateReport } from './certificates.ts';

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

/**
 * Status endpoints, on their own listener (loopback by default) so that they are never routed
 * through the proxy: GET /status (JSON), GET /status/ready (200 when ready, else 503),
 * GET /metrics (Prometheus).
 */
export function createStatusServer(report: () => StatusReport): Server {
  // prom-client is loaded at the first scrape, not by every gateway at start
  let metrics: Promise<Registry> | undefined;
  const registry = () => (metrics ??= import('./metrics.ts').then((m) => m.createMetrics(report)));
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'application/json', allow: 'GET, HEAD' }).end('{"error_msg":"method not allowed"}');
      return;
    }
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
    } else {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error_msg":"404 Not Found"}');
    }
  });
}
