/**
 * Proxy throughput, side by side in one run, same wrk settings, same upstream (nginx, one worker,
 * small static body), same path (/aa/hello) for every target:
 *   direct upstream | a node:net byte relay with no HTTP (bench/relay.mjs: the ceiling of any Node
 *   proxy on the machine) | Portico, 1 worker | Portico, `proxy.workers: auto` | nginx proxy_pass, 1 worker
 *   | the seed's nginx+lua gateway (../shared/peers/seed-nginx-lua.conf) | fast-gateway 5
 * Prints req/s, p50/p99, errors, the CPU the target's processes used (% of one core, and CPU
 * microseconds per request) and how idle the machine was during the run, then the ratios
 * Portico/seed, Portico/fast-gateway, Portico/nginx (throughput and p99) and what `workers: auto`
 * adds per core. Each target runs alone (started, warmed up 2 s, measured, stopped); loopback only;
 * every run is bounded by --duration.
 *
 * Peers that are not installed are skipped with a line saying how to install them:
 *   - nginx, and the seed: `apt-get install nginx libnginx-mod-http-lua`; the seed's config is read
 *     from ../shared/peers/seed-nginx-lua.conf (PORTICO_SEED_CONF overrides);
 *   - fast-gateway 5: installed as in ../shared/peers/README.md into /tmp/peers
 *     (PORTICO_PEERS_DIR overrides).
 *
 * The gateway runs compiled (tsc into .tmp/bench/, as `npm run build` would into dist/): that is
 * what production runs, and it spares the gateway tsx's loader and esbuild's per-function `__name`
 * wrappers (about 1-3% here). It is not built into dist/ because bin/portico.js prefers dist/ when
 * present, so a leftover build would silently replace the sources under test. --tsx runs the
 * sources through tsx instead; --root DIR builds another checkout (e.g. `git archive HEAD` unpacked
 * with a node_modules symlink) to measure committed code while the working tree is being edited.
 *
 * --transport node,socket measures the Portico rows once per `proxy.transport` listed (unset: the
 * gateway's default; PORTICO_PROXY_TRANSPORT in the environment overrides portico.yaml).
 *
 *   npm run bench -- [--duration 10] [--connections 50] [--threads 1] [--workers auto]
 *     [--targets direct,relay,portico,portico-quiet,portico-observed,portico-traced,portico-plugins,portico-plugins-redis,portico-auto,nginx,seed,fast-gateway,balancers]
 *     [--transport node,socket]
 *
 * balancers (not in the default run): roundrobin, chash, least_conn and ewma over three nodes (one
 * nginx listening on 127.0.0.1-3), and round robin with active and passive health checks on, each
 * against round robin.
 * portico-plugins: key-auth + limit-count (local) + proxy-rewrite on the route, wrk sending the key;
 * portico-plugins-redis: the same with limit-count policy: redis (a redis-server the bench starts).
 *     [--tsx] [--root DIR]
 */
import { parseArgs } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import {
  buildGateway,
  freePort,
  machineCpuMs,
  ROOT,
  run,
  startFastGateway,
  startNginx,
  startPortico,
  startSeed,
  START_FLAGS,
  startUpstream,
  stop,
  treeCpuMs,
  waitPort,
  which,
  wrk,
  type Peer,
  type WrkResult,
} from './lib.ts';
import { startRedis } from '../test/helpers/redis.ts';

const ALL = ['direct', 'relay', 'portico', 'portico-quiet', 'portico-observed', 'portico-traced', 'portico-plugins', 'portico-plugins-redis', 'portico-auto', 'nginx', 'seed', 'fast-gateway', 'balancers'] as const;
type Target = (typeof ALL)[number] | 'balancer';
/** the default run: every target but the balancer rows (`--targets balancers` adds them) */
const DEFAULT_TARGETS = ALL.filter((t) => t !== 'balancers');

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    threads: { type: 'string', default: '1' },
    tsx: { type: 'boolean', default: false },
    workers: { type: 'string', default: 'auto' },
    targets: { type: 'string', default: DEFAULT_TARGETS.join(',') },
    root: { type: 'string' },
    transport: { type: 'string' },
  },
});
const opts = { duration: Number(values.duration), connections: Number(values.connections), threads: Number(values.threads) };
const autoWorkers: number | 'auto' = values.workers === 'auto' ? 'auto' : Number(values.workers);
const autoCount = autoWorkers === 'auto' ? os.availableParallelism() : autoWorkers;
const targets = new Set<string>(values.targets.split(',').map((t) => t.trim()));
for (const t of targets) if (!(ALL as readonly string[]).includes(t)) throw new Error(`unknown target ${t}; one of ${ALL.join(', ')}`);
const root = path.resolve(values.root ?? ROOT);
const gatewayMain = values.tsx ? path.join(root, 'bin/portico.js') : buildGateway(path.join(root, '.tmp/bench'), root);

const PATH = '/aa/hello'; // fast-gateway routes by prefix (/aa); every target is asked the same path
const upstreamPort = await freePort();
const upstream = await startUpstream(upstreamPort);
const routes = `upstreams:\n  - id: u\n    nodes: { "127.0.0.1:${upstreamPort}": 1 }\nroutes:\n  - id: r\n    uri: /aa/*\n    upstream_id: u\n`;
/**
 * The plugin rows: key-auth + limit-count + proxy-rewrite on the route (the issue's set), the count
 * far above what a run sends so every request passes all three; `redis`: the counter in Redis.
 */
const pluginRoutes = (redisPort?: number) => `upstreams:
  - id: u
    nodes: { "127.0.0.1:${upstreamPort}": 1 }
consumers:
  - username: bench
    plugins: { key-auth: { key: bench-key } }
routes:
  - id: r
    uri: /aa/*
    upstream_id: u
    plugins:
      key-auth: {}
      limit-count: { count: 1000000000, time_window: 60, key: consumer_name${redisPort === undefined ? '' : `, policy: redis, redis_host: 127.0.0.1, redis_port: ${redisPort}`} }
      proxy-rewrite: { headers: { set: { X-Bench: "1" } } }
`;
const pluginHeaders = ['apikey: bench-key'];

interface Row {
  name: string;
  target: Target;
  r?: WrkResult;
  /** CPU of the target's processes, % of one core */
  cpuPct?: number;
  /** CPU microseconds of the target's processes per request */
  cpuUsPerReq?: number;
  /** idle share of the whole machine during the run */
  idlePct?: number;
  skipped?: string;
}
const rows: Row[] = [];

/** Starts a target, warms it up (JIT, pools), measures it with its CPU use, stops it. */
async function measure(target: Target, name: string, start: () => Promise<{ port: number; child: ChildProcess } | { skipped: string }>): Promise<void> {
  if (!targets.has(target)) return;
  const started = await start();
  if ('skipped' in started) {
    rows.push({ name, target, skipped: started.skipped });
    return;
  }
  const url = `http://127.0.0.1:${started.port}${PATH}`;
  const runOpts = target.startsWith('portico-plugins') ? { ...opts, headers: pluginHeaders } : opts;
  try {
    wrk(url, { ...runOpts, duration: Math.min(2, opts.duration) });
    const pid = started.child.pid!;
    const cpu0 = treeCpuMs(pid);
    const m0 = machineCpuMs();
    const r = wrk(url, runOpts);
    const cpu = treeCpuMs(pid) - cpu0;
    const m1 = machineCpuMs();
    rows.push({
      name,
      target,
      r,
      cpuPct: (cpu / (opts.duration * 1000)) * 100,
      cpuUsPerReq: (cpu * 1000) / r.requests,
      idlePct: ((m1.idle - m0.idle) / (m1.total - m0.total)) * 100,
    });
  } finally {
    if (started.child !== upstream) await stop(started.child);
  }
}

const peer = async (port: number, p: Promise<Peer>) => {
  const started = await p;
  return 'skipped' in started ? started : { port, child: started.child };
};

await measure('direct', 'direct upstream', async () => ({ port: upstreamPort, child: upstream }));
// node's own ceiling: a byte relay with no HTTP (bench/relay.mjs), what Portico's per-request work adds to
await measure('relay', 'node:net byte relay (no HTTP)', async () => {
  const port = await freePort();
  const child = run(process.execPath, [...START_FLAGS, path.join(ROOT, 'bench/relay.mjs'), String(port), String(upstreamPort)]);
  await waitPort(port);
  return { port, child };
});
for (const transport of values.transport ? values.transport.split(',') : [undefined]) {
  const t = transport ? `${transport}, ` : '';
  await measure('portico', `portico (${t}1 worker)`, async () => {
    const g = await startPortico({ main: gatewayMain, routes, workers: 1, transport });
    return { port: g.port, child: g.child };
  });
  // what watching requests costs: nothing watched (no metrics, no traceparent, no access log) against
  // metrics and a JSON access log to a file, and the same with traceparent propagation (the default)
  await measure('portico-quiet', `portico, observability off (${t}1 worker)`, async () => {
    const g = await startPortico({ main: gatewayMain, routes, workers: 1, transport, statusExtra: 'request_metrics: false', extraYaml: 'tracing: { propagate: false }' });
    return { port: g.port, child: g.child };
  });
  await measure('portico-observed', `portico + access log (JSON, file), metrics (${t}1 worker)`, async () => {
    const g = await startPortico({ main: gatewayMain, routes, workers: 1, transport, extraYaml: 'log: { access: { enabled: true, path: access.log, format: json } }\ntracing: { propagate: false }' });
    return { port: g.port, child: g.child };
  });
  await measure('portico-traced', `portico + access log, metrics, traceparent (${t}1 worker)`, async () => {
    const g = await startPortico({ main: gatewayMain, routes, workers: 1, transport, extraYaml: 'log: { access: { enabled: true, path: access.log, format: json } }\ntracing: { propagate: true }' });
    return { port: g.port, child: g.child };
  });
  await measure('portico-plugins', `portico + 3 plugins (${t}local)`, async () => {
    const g = await startPortico({ main: gatewayMain, routes: pluginRoutes(), workers: 1, transport });
    return { port: g.port, child: g.child };
  });
  if (targets.has('portico-plugins-redis')) {
    if (!which('redis-server')) rows.push({ name: `portico + 3 plugins (${t}redis)`, target: 'portico-plugins-redis', skipped: 'apt-get install redis-server' });
    else {
      const redis = await startRedis();
      try {
        await measure('portico-plugins-redis', `portico + 3 plugins (${t}redis)`, async () => {
          const g = await startPortico({ main: gatewayMain, routes: pluginRoutes(redis.port), workers: 1, transport });
          return { port: g.port, child: g.child };
        });
      } finally {
        await redis.stop();
      }
    }
  }
  if (targets.has('balancers')) {
    // three nodes (one nginx on 127.0.0.1-3), each algorithm of src/upstream/balancer/
    // and round robin with active probes (every node once a second) and passive checks on every response
    const checks = `\n    checks: { active: { http_path: "${PATH}", healthy: { interval: 1 } }, passive: {} }`;
    for (const [type, extra, label] of [
      ['roundrobin', '', 'roundrobin'],
      ['chash', '\n    hash_on: vars\n    key: remote_addr', 'chash'],
      ['least_conn', '', 'least_conn'],
      ['ewma', '', 'ewma'],
      ['roundrobin', checks, 'roundrobin + checks'],
    ] as const) {
      const balancerRoutes = `upstreams:\n  - id: u\n    type: ${type}${extra}\n    nodes: { "127.0.0.1:${upstreamPort}": 1, "127.0.0.2:${upstreamPort}": 1, "127.0.0.3:${upstreamPort}": 1 }\nroutes:\n  - id: r\n    uri: /aa/*\n    upstream_id: u\n`;
      targets.add('balancer');
      await measure('balancer', `portico, 3 nodes, ${t}${label}`, async () => {
        const g = await startPortico({ main: gatewayMain, routes: balancerRoutes, workers: 1, transport });
        return { port: g.port, child: g.child };
      });
    }
  }
  await measure('portico-auto', `portico (${t}workers: ${values.workers}=${autoCount})`, async () => {
    const g = await startPortico({ main: gatewayMain, routes, workers: autoWorkers, transport });
    return { port: g.port, child: g.child };
  });
}
await measure('nginx', 'nginx proxy_pass (1 worker)', async () => {
  const port = await freePort();
  const child = startNginx(
    `upstream u { server 127.0.0.1:${upstreamPort}; keepalive 320; }
     server { listen 127.0.0.1:${port}; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  );
  if (!child) return { skipped: 'apt-get install nginx' };
  await waitPort(port);
  return { port, child };
});
await measure('seed', 'seed nginx+lua', async () => {
  const port = await freePort();
  return peer(port, startSeed(port, upstreamPort));
});
await measure('fast-gateway', 'fast-gateway 5', async () => {
  const port = await freePort();
  return peer(port, startFastGateway(port, upstreamPort));
});
await stop(upstream);

const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(
  `\nwrk -t${opts.threads} -c${opts.connections} -d${opts.duration}s ${PATH}, node ${process.version}, ${os.cpus().length} cores, ` +
    `gateway ${values.tsx ? 'from src (tsx)' : 'compiled'}${values.root ? ` from ${root}` : ''} with ${START_FLAGS.join(' ') || 'no node flags'} (as npm start), load average ${load}`,
);
console.log('target                                req/s   p50 ms   p99 ms   errors   cpu %  cpu us/req  machine idle %');
for (const row of rows) {
  if (!row.r) {
    console.log(`${row.name.padEnd(34)} skipped: ${row.skipped}`);
    continue;
  }
  const { r } = row;
  console.log(
    `${row.name.padEnd(34)} ${r.rps.toFixed(0).padStart(8)} ${r.p50ms.toFixed(2).padStart(8)} ${r.p99ms.toFixed(2).padStart(8)} ${String(r.errors).padStart(8)}` +
      ` ${row.cpuPct!.toFixed(0).padStart(7)} ${row.cpuUsPerReq!.toFixed(1).padStart(11)} ${row.idlePct!.toFixed(0).padStart(15)}`,
  );
}

const get = (t: Target) => rows.find((x) => x.target === t && x.r);
const balancerRows = rows.filter((x) => x.target === 'balancer' && x.r);
if (balancerRows.length > 1) {
  const rr = balancerRows[0]!;
  console.log('');
  for (const b of balancerRows.slice(1)) console.log(`${b.name} / round robin: ${(b.r!.rps / rr.r!.rps).toFixed(2)}x throughput, CPU per request ${b.cpuUsPerReq!.toFixed(1)} vs ${rr.cpuUsPerReq!.toFixed(1)} us`);
}
for (const t of ['portico-plugins', 'portico-plugins-redis'] as const) {
  const withPlugins = get(t);
  const bare = get('portico');
  if (withPlugins && bare) {
    const goal = t === 'portico-plugins' ? ' (goal >= 0.8x: the three local plugins cost <= 20 %)' : '';
    console.log(`\n${withPlugins.name} / ${bare.name}: ${(withPlugins.r!.rps / bare.r!.rps).toFixed(2)}x throughput${goal}, CPU per request ${withPlugins.cpuUsPerReq!.toFixed(1)} vs ${bare.cpuUsPerReq!.toFixed(1)} us`);
  }
}
{
  const quiet = get('portico-quiet');
  for (const t of ['portico-observed', 'portico-traced'] as const) {
    const observed = get(t);
    if (!quiet || !observed) continue;
    const goal = t === 'portico-observed' ? ' (goal >= 0.85x)' : '';
    console.log(`\n${observed.name} / ${quiet.name}: ${(observed.r!.rps / quiet.r!.rps).toFixed(2)}x throughput${goal}, CPU per request ${observed.cpuUsPerReq!.toFixed(1)} vs ${quiet.cpuUsPerReq!.toFixed(1)} us`);
  }
}
const porticoRows = rows.filter((x) => x.target === 'portico' && x.r);
const autoRows = rows.filter((x) => x.target === 'portico-auto' && x.r);
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
for (const [i, portico] of porticoRows.entries()) {
  console.log(`\n${portico.name}:`);
  for (const [t, label, goal] of [
    ['direct', 'portico / direct      ', ''],
    ['relay', 'portico / byte relay  ', '  (node:net alone, no HTTP: the ceiling of a Node proxy here)'],
    ['seed', 'portico / seed        ', '  (goal >= 0.6x, aim 0.8x)'],
    ['fast-gateway', 'portico / fast-gateway', '  (goal >= 2.5x)'],
    ['nginx', 'portico / nginx       ', ''],
  ] as const) {
    const other = get(t);
    if (!other) continue;
    let line = `  ${label} ${ratio(portico.r!.rps, other.r!.rps)} throughput`;
    if (t === 'nginx') line += `, p99 ${ratio(portico.r!.p99ms, other.r!.p99ms)} (goal <= 1.5x)`;
    console.log(line + goal);
  }
  const auto = autoRows[i];
  if (!auto) continue;
  const gain = auto.r!.rps / portico.r!.rps;
  const perCore = autoCount > 1 ? (auto.r!.rps - portico.r!.rps) / (autoCount - 1) / portico.r!.rps : NaN;
  console.log(
    `  workers ${autoCount} / 1           ${gain.toFixed(2)}x throughput; per added core ${perCore.toFixed(2)}x of the first (goal >= 0.8x); ` +
      `gateway CPU per request ${auto.cpuUsPerReq!.toFixed(1)} us vs ${portico.cpuUsPerReq!.toFixed(1)} us`,
  );
  console.log(
    `  requests per gateway CPU-second: ${(1e6 / portico.cpuUsPerReq!).toFixed(0)} (1 worker) vs ${(1e6 / auto.cpuUsPerReq!).toFixed(0)} (${autoCount} workers): ` +
      `${(portico.cpuUsPerReq! / auto.cpuUsPerReq!).toFixed(2)}x, the per-core efficiency of the added workers, whether or not the cores were free`,
  );
  // What the per-core figure means depends on whether there were cores to add: wrk -t1 and the
  // nginx upstream run on the same cores as the workers. CPU per request, not req/s, is then the
  // figure that tells whether workers cost anything beyond the cores they occupy.
  console.log(
    `  (${os.cpus().length} cores shared by wrk, the upstream and the gateway: machine idle ${auto.idlePct!.toFixed(0)}% during the workers run. ` +
      `Where it is ~0% the throughput gain is capped by the CPU wrk and the upstream need, not by the workers; ` +
      `equal CPU per request says an added worker costs no more per request than the first, which is what scaling needs.)`,
  );
}
