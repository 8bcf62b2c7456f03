/**
 * Proxy throughput, side by side in one run: wrk against the upstream directly, through Portico,
 * and through nginx (one worker, the per-core peer) when nginx is installed. Prints req/s, p50/p99
 * and ratios. Loopback only; every run is bounded by --duration.
 *
 * The gateway runs compiled (tsc into .tmp/bench/, as `npm run build` would into dist/): that is
 * what production runs, and it spares the gateway tsx's loader and esbuild's per-function `__name`
 * wrappers (about 1-3% here). It is not built into dist/ because bin/portico.js prefers dist/ when
 * present, so a leftover build would silently replace the sources under test. --tsx runs the
 * sources through tsx instead.
 *
 * --workers N runs Portico with `proxy.workers: N` and the nginx peer with N worker processes, so
 * the ratio stays a like-for-like comparison.
 *
 *   npm run bench -- [--duration 10] [--connections 50] [--threads 1] [--workers 1] [--tsx]
 */
import { parseArgs } from 'node:util';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildGateway, freePort, ROOT, run, startNginx, stop, waitPort, wrk, type WrkResult } from './lib.ts';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    threads: { type: 'string', default: '1' },
    tsx: { type: 'boolean', default: false },
    workers: { type: 'string', default: '1' },
  },
});
const opts = { duration: Number(values.duration), connections: Number(values.connections), threads: Number(values.threads) };
const workers = Number(values.workers);

const gatewayMain = values.tsx ? path.join(ROOT, 'bin/portico.js') : buildGateway(path.join(ROOT, '.tmp/bench'));

const upstreamPort = await freePort();
const gatewayPort = await freePort();
const statusPort = await freePort();
const nginxPort = await freePort();

// The upstream: nginx returning a small body when available (so it is never the bottleneck), else node:http.
const upstream =
  startNginx(`server { listen 127.0.0.1:${upstreamPort}; location / { return 200 "hello from upstream\\n"; } }`) ??
  run(process.execPath, ['-e', `require('http').createServer((q,s)=>s.end('hello from upstream\\n')).listen(${upstreamPort},'127.0.0.1')`]);
await waitPort(upstreamPort);

const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-bench-'));
writeFileSync(
  path.join(dir, 'routes.yaml'),
  `upstreams:\n  - id: u\n    nodes: { "127.0.0.1:${upstreamPort}": 1 }\nroutes:\n  - id: r\n    uri: /hello\n    upstream_id: u\n`,
);
writeFileSync(
  path.join(dir, 'portico.yaml'),
  `proxy: { listen: ["127.0.0.1:${gatewayPort}"], workers: ${workers} }\nstatus: { listen: "127.0.0.1:${statusPort}" }\nconfig: { source: file, file: { path: routes.yaml }, snapshot: snapshot.json }\n`,
);
const gateway = run(process.execPath, [gatewayMain, 'start', '--config', path.join(dir, 'portico.yaml')], {
  env: { PORTICO_LOG_LEVEL: 'warn', NODE_ENV: 'production' },
});
await waitPort(gatewayPort);

const peer = startNginx(
  `upstream u { server 127.0.0.1:${upstreamPort}; keepalive 320; }
   server { listen 127.0.0.1:${nginxPort}; location /hello { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  workers,
);
if (peer) await waitPort(nginxPort);

const rows: Array<[string, WrkResult]> = [];
const measure = (name: string, url: string) => {
  wrk(url, { ...opts, duration: Math.min(2, opts.duration) }); // warm-up: JIT, pools
  const r = wrk(url, opts);
  rows.push([name, r]);
  return r;
};
const direct = measure('direct upstream', `http://127.0.0.1:${upstreamPort}/hello`);
const plural = (n: number) => `${n} worker${n > 1 ? 's' : ''}`;
const portico = measure(workers > 1 ? `portico (${plural(workers)})` : 'portico', `http://127.0.0.1:${gatewayPort}/hello`);
const nginx = peer ? measure(`nginx proxy (${plural(workers)})`, `http://127.0.0.1:${nginxPort}/hello`) : undefined;

console.log(`\nwrk -t${opts.threads} -c${opts.connections} -d${opts.duration}s, node ${process.version}, ${os.cpus().length} cores, gateway ${values.tsx ? 'from src (tsx)' : 'compiled'}`);
console.log('target                      req/s     p50 ms   p99 ms   errors');
for (const [name, r] of rows) {
  console.log(`${name.padEnd(24)} ${r.rps.toFixed(0).padStart(9)} ${r.p50ms.toFixed(2).padStart(9)} ${r.p99ms.toFixed(2).padStart(8)} ${String(r.errors).padStart(8)}`);
}
console.log(`\nportico / direct: ${(portico.rps / direct.rps).toFixed(2)}x throughput`);
if (nginx) console.log(`portico / nginx:  ${(portico.rps / nginx.rps).toFixed(2)}x throughput, p99 ${(portico.p99ms / nginx.p99ms).toFixed(2)}x`);

await Promise.all([stop(gateway), stop(upstream), ...(peer ? [stop(peer)] : [])]);
