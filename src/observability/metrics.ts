import { Counter, Gauge, Registry } from 'prom-client';
import type { StatusReport } from './status.ts';

/**
 * Prometheus metrics of the config pipeline, read from the same report as /status at scrape time,
 * so they never disagree with it and cost nothing between scrapes.
 */
export function createMetrics(report: () => StatusReport): Registry {
  const registry = new Registry();
  let last: StatusReport | undefined;
  // one report per scrape, shared by every metric's collect()
  const current = () => (last ??= report());

  new Gauge({
    name: 'portico_config_revision',
    help: 'Source revision of the config in force',
    registers: [registry],
    collect() {
      this.set(current().revision);
    },
  });
  new Gauge({
    name: 'portico_config_ready',
    help: '1 once a full sync (or the on-disk snapshot) is in force',
    registers: [registry],
    collect() {
      this.set(current().ready ? 1 : 0);
    },
  });
  new Gauge({
    name: 'portico_config_stale',
    help: '1 while the config served may differ from the source',
    registers: [registry],
    collect() {
      this.set(current().stale ? 1 : 0);
    },
  });
  new Gauge({
    name: 'portico_source_connected',
    help: '1 while the config source is reachable',
    labelNames: ['source'],
    registers: [registry],
    collect() {
      this.set({ source: current().source }, current().connected ? 1 : 0);
    },
  });
  new Gauge({
    name: 'portico_config_objects',
    help: 'Objects in force, by kind',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      for (const [kind, n] of Object.entries(current().counts)) this.set({ kind }, n);
    },
  });
  new Gauge({
    name: 'portico_config_rejected_objects',
    help: 'Objects currently not in force as the source wrote them, by error code',
    labelNames: ['code'],
    registers: [registry],
    collect() {
      this.reset();
      const byCode = new Map<string, number>();
      for (const r of current().rejected) byCode.set(r.code, (byCode.get(r.code) ?? 0) + 1);
      for (const [code, n] of byCode) this.set({ code }, n);
    },
  });
  // the store owns the count; the counter follows it by the difference since the last scrape
  const counted = new Map<string, number>();
  new Counter({
    name: 'portico_config_rejections_total',
    help: 'Rejections since start, by error code',
    labelNames: ['code'],
    registers: [registry],
    collect() {
      for (const [code, n] of Object.entries(current().rejections_total)) {
        const delta = n - (counted.get(code) ?? 0);
        if (delta > 0) this.inc({ code }, delta);
        counted.set(code, n);
      }
    },
  });

  new Gauge({
    name: 'portico_ssl_certificate_expiry_days',
    help: 'Whole days until the earliest certificate of an ssl object expires (negative: expired)',
    labelNames: ['ssl'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of current().certificates ?? []) this.set({ ssl: c.id }, c.days_left);
    },
  });

  const countedRefusals = new Map<string, number>();
  new Counter({
    name: 'portico_tls_refused_total',
    help: 'TLS connections refused: no_certificate (no ssl object for the SNI) or refused (handshake or client certificate)',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      const r = current().tls_refusals;
      if (r === undefined) return;
      for (const [reason, n] of Object.entries(r)) {
        const delta = n - (countedRefusals.get(reason) ?? 0);
        if (delta > 0) this.inc({ reason }, delta);
        countedRefusals.set(reason, n);
      }
    },
  });

  const countedFailures = new Map<string, number>();
  new Counter({
    name: 'portico_plugin_failures_total',
    help: 'Requests answered 500 because a plugin threw, by plugin',
    labelNames: ['plugin'],
    registers: [registry],
    collect() {
      for (const [plugin, n] of Object.entries(current().plugin_failures ?? {})) {
        const delta = n - (countedFailures.get(plugin) ?? 0);
        if (delta > 0) this.inc({ plugin }, delta);
        countedFailures.set(plugin, n);
      }
    },
  });

  new Gauge({
    name: 'portico_upstream_node_healthy',
    help: '1 while a node of a checked upstream is healthy, 0 while it is not (upstreams with checks only)',
    labelNames: ['upstream', 'node'],
    registers: [registry],
    collect() {
      // removed upstreams and nodes disappear from the scrape
      this.reset();
      for (const u of current().upstream_health ?? []) for (const n of u.nodes) this.set({ upstream: u.upstream, node: n.node }, n.healthy ? 1 : 0);
    },
  });

  const metrics = registry.metrics.bind(registry);
  registry.metrics = async () => {
    last = undefined;
    try {
      return await metrics();
    } finally {
      last = undefined;
    }
  };
  return registry;
}
