/**
 * What validating config costs: validateObject per object, and a full store.apply (validate,
 * resolve, publish) of N upstreams + N routes. Run it on two checkouts to compare, e.g. before and
 * after a new validation step:
 *
 *   node --import tsx bench/validate.ts [--n 10000] [--rounds 5] [--mode radixtree_host_uri]
 *
 * --mode: the router mode routes are compiled for, as a gateway does (its proxy.router); without
 * it, routes must compile in every mode, as for `portico validate` on a routes file alone.
 * Prints the median over rounds (after one warm-up round) in µs per object.
 */
import { parseArgs } from 'node:util';
import { ConfigStore } from '../src/config/store.ts';
import { validateObject } from '../src/config/validate.ts';
import type { RouterMode } from '../src/router/types.ts';

const { values } = parseArgs({
  options: { n: { type: 'string', default: '10000' }, rounds: { type: 'string', default: '5' }, mode: { type: 'string' } },
});
const n = Number(values.n);
const rounds = Number(values.rounds);
const mode = values.mode as RouterMode | undefined;
// older checkouts take no mode: extra arguments are ignored there
const validate = validateObject as (kind: 'routes' | 'upstreams', id: string, value: unknown, mode?: RouterMode) => { ok: boolean };

const upstream = (i: number) => ({
  nodes: { [`10.0.${(i >> 8) & 255}.${i & 255}:8080`]: 1, [`10.1.${(i >> 8) & 255}.${i & 255}:8080`]: 2, 'backend.internal:80': 1 },
  timeout: { connect: 5, send: 10, read: 10 },
  pass_host: 'rewrite',
  upstream_host: `svc-${i}.example.com`,
  retries: 2,
});
const route = (i: number) => ({
  uri: `/api/v1/svc${i}/*`,
  hosts: ['api.example.com'],
  methods: ['GET', 'POST'],
  vars: [['http_x_tenant', '==', `t${i}`]],
  upstream_id: `u${i}`,
  plugins: { 'limit-count': { count: 100, time_window: 60 } },
});
const upstreams = Array.from({ length: n }, (_, i) => upstream(i));
const routes = Array.from({ length: n }, (_, i) => route(i));

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
function time(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e3; // µs
}

const results: Record<string, number[]> = { upstream: [], route: [], apply: [] };
for (let r = 0; r <= rounds; r++) {
  const u = time(() => {
    for (let i = 0; i < n; i++) if (!validate('upstreams', `u${i}`, upstreams[i], mode).ok) throw new Error(`u${i} invalid`);
  });
  const rt = time(() => {
    for (let i = 0; i < n; i++) if (!validate('routes', `r${i}`, routes[i], mode).ok) throw new Error(`r${i} invalid`);
  });
  const store = new (ConfigStore as new (source: string, options?: { routerMode?: RouterMode }) => ConfigStore)('bench', { routerMode: mode });
  const changes = [
    ...upstreams.map((value, i) => ({ kind: 'upstreams' as const, id: `u${i}`, modRevision: 1, value })),
    ...routes.map((value, i) => ({ kind: 'routes' as const, id: `r${i}`, modRevision: 1, value })),
  ];
  const ap = time(() => {
    const res = store.apply({ source: 'bench', revision: 1, full: true, changes });
    if (res.rejected.length) throw new Error(res.rejected[0]!.reason);
  });
  if (r === 0) continue; // warm-up
  results.upstream!.push(u / n);
  results.route!.push(rt / n);
  results.apply!.push(ap / (2 * n));
}
console.log(
  `n=${n}, mode ${mode ?? 'all'}, median of ${rounds}: validateObject upstream ${median(results.upstream!).toFixed(2)} µs, ` +
    `route ${median(results.route!).toFixed(2)} µs; store.apply (full, ${2 * n} objects) ${median(results.apply!).toFixed(2)} µs/object`,
);
