/** Shared pieces of the benchmarks: processes started by PID and stopped by PID, wrk runs, nginx. */
import type { Pool } from 'undici';
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..');

/**
 * The node flags `npm start` runs Portico with (the words before bin/portico.js in package.json's
 * start script): the benches start the gateway the same way.
 */
export const START_FLAGS: readonly string[] = (() => {
  const words = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start.split(/\s+/);
  return words.slice(1, words.indexOf('bin/portico.js')).filter((w) => w.startsWith('--'));
})();

/** PORTICO_BENCH_NODE_FLAGS: more node flags for the gateways a bench starts (--perf-basic-prof to profile one, --trace-gc) */
function extraNodeFlags(): string[] {
  return (process.env.PORTICO_BENCH_NODE_FLAGS ?? '').split(/\s+/).filter((w) => w !== '');
}
const children = new Set<ChildProcess>();
/** temp dirs of the processes started here (configs, logs, snapshots), removed on exit */
const tempDirs = new Set<string>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.pid) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(prefix: string): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(d);
  return d;
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

export function run(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}

import { freePort } from '../test/helpers/etcd.ts';
export { freePort };

/**
 * Builds the gateway of the checkout at `root` as `npm run build` does (tsc, then the bundles of
 * scripts/bundle.mjs when the checkout has it) into `out`, and returns the CLI entry bin/portico.js
 * would run: the bundled dist/portico.js, or dist/cli/main.js in a checkout without it. Benchmarks
 * run the gateway built, as production does; not into dist/, because bin/portico.js prefers dist/
 * when present, so a leftover build would silently replace the sources under test. `out` must lie
 * inside `root` so the build finds its node_modules.
 */
export function buildGateway(out: string, root = ROOT): string {
  rmSync(out, { recursive: true, force: true });
  const dist = path.join(out, 'dist');
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json'), '--outDir', dist], { stdio: 'inherit' });
  copyFileSync(path.join(root, 'package.json'), path.join(out, 'package.json')); // src/version.ts reads ../package.json
  const bundler = path.join(root, 'scripts/bundle.mjs');
  if (existsSync(bundler)) execFileSync(process.execPath, [bundler, dist], { stdio: ['ignore', 'ignore', 'inherit'] });
  const bundled = path.join(dist, 'portico.js');
  return existsSync(bundled) ? bundled : path.join(dist, 'cli/main.js');
}

export async function waitPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); }).on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not listening after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function which(bin: string): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin', ...(process.env.PATH ?? '').split(':')]) {
    const p = path.join(dir, bin);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export interface WrkResult {
  rps: number;
  /** requests completed in the measured run */
  requests: number;
  p50ms: number;
  p99ms: number;
  /** non2xx + socketErrors */
  errors: number;
  /** responses wrk counted as "Non-2xx or 3xx" */
  non2xx: number;
  /** connect + read + write + timeout errors */
  socketErrors: number;
}

export interface WrkOptions {
  duration: number;
  connections: number;
  threads: number;
  /** request headers, `Name: value` */
  headers?: string[];
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

function wrkArgs(url: string, opts: WrkOptions): string[] {
  const headers = (opts.headers ?? []).flatMap((h) => ['-H', h]);
  return ['-t', String(opts.threads), '-c', String(opts.connections), '-d', `${opts.duration}s`, ...headers, '--latency', url];
}

/** wrk's text report -> numbers. */
export function parseWrk(out: string): WrkResult {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in /.exec(out)?.[1] ?? NaN);
  const p50 = /\n\s+50%\s+(\S+)/.exec(out)?.[1] ?? '';
  const p99 = /\n\s+99%\s+(\S+)/.exec(out)?.[1] ?? '';
  const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = errs ? Number(errs[1]) : 0;
  const socketErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return { rps, requests, p50ms: toMs(p50), p99ms: toMs(p99), errors: non2xx + socketErrors, non2xx, socketErrors };
}

/** Runs wrk (loopback only, bounded by duration) and parses throughput and latency percentiles. */
export function wrk(url: string, opts: WrkOptions): WrkResult {
  return parseWrk(execFileSync('wrk', wrkArgs(url, opts), { encoding: 'utf8', timeout: (opts.duration + 30) * 1000 }));
}

/** wrk without blocking this process's event loop, for benches that act on the gateway while it runs. */
export function wrkAsync(url: string, opts: WrkOptions): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    execFile('wrk', wrkArgs(url, opts), { encoding: 'utf8', timeout: (opts.duration + 30) * 1000 }, (err, out) => (err ? reject(err) : resolve(parseWrk(out))));
  });
}

/** CPU time (utime + stime, ms) of a process and its descendants, from /proc; 0 for processes gone. */
export function treeCpuMs(pid: number): number {
  const tick = 1000 / 100; // USER_HZ is 100 on every Linux ABI node runs on
  const stats = new Map<number, { ppid: number; ms: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // comm may hold spaces
      stats.set(Number(name), { ppid: Number(f[1]), ms: (Number(f[11]) + Number(f[12])) * tick });
    } catch {
      /* exited meanwhile */
    }
  }
  let total = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    total += stats.get(p)?.ms ?? 0;
    for (const [child, s] of stats) if (s.ppid === p) todo.push(child);
  }
  return total;
}

/** The machine's idle and total CPU time (ms, all cores) from /proc/stat, to tell a saturated machine. */
export function machineCpuMs(): { idle: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0) * 10;
  return { idle: (f[3]! + (f[4] ?? 0)) * 10, total };
}

/** VmRSS of a process in MiB (NaN once it is gone). */
export function rssMiB(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** nginx with one worker by default, as a fair per-core peer; `serverBlock` is the server block. */
export function startNginx(serverBlock: string, workers = 1): ChildProcess | undefined {
  const bin = which('nginx');
  if (!bin) return undefined;
  const dir = tempDir('portico-bench-nginx-');
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off; master_process ${workers > 1 ? 'on' : 'off'}; worker_processes ${workers}; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
${serverBlock}
}
`,
  );
  return run(bin, ['-c', conf, '-p', dir]);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** GET http://127.0.0.1:port/path -> status and body ('' and status 0 when it failed). */
export function httpGet(port: number, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: p, agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('timeout', function (this: http.ClientRequest) { this.destroy(); })
      .on('error', () => resolve({ status: 0, body: '' }));
  });
}

/**
 * The upstream of every bench: nginx (one worker) answering any path with a small static body,
 * so it is never the bottleneck; node:http when nginx is not installed.
 */
export async function startUpstream(port: number): Promise<ChildProcess> {
  const upstream =
    // three loopback addresses on one port: three upstream nodes for the balancer rows
    startNginx(`server { listen 127.0.0.1:${port}; listen 127.0.0.2:${port}; listen 127.0.0.3:${port}; location / { return 200 "hello from upstream\\n"; } }`) ??
    run(process.execPath, ['-e', `require('http').createServer((q,s)=>s.end('hello from upstream\\n')).listen(${port},'127.0.0.1')`]);
  await waitPort(port);
  return upstream;
}

export interface PorticoOptions {
  /** the CLI entry: a compiled dist/cli/main.js (buildGateway) or bin/portico.js */
  main: string;
  /** the routes file (YAML) for the file source; ignored with `etcd` */
  routes?: string;
  /** serve from etcd instead of a file */
  etcd?: { endpoint: string; prefix: string };
  workers?: number | 'auto';
  /** proxy.transport (node | socket); unset: the gateway's default (PORTICO_PROXY_TRANSPORT overrides both) */
  transport?: string;
  /** more `proxy:` fields, as YAML flow text (`tls_listen: ["127.0.0.1:9443"]`) */
  proxyExtra?: string;
  /** more `status:` fields, as YAML flow text (`request_metrics: false`) */
  statusExtra?: string;
  /** more top-level sections, as YAML lines (`log: { access: { enabled: true, path: access.log } }`) */
  extraYaml?: string;
}

export interface PorticoRun {
  child: ChildProcess;
  /** the gateway's PID (the primary when it has workers) */
  pid: number;
  port: number;
  statusPort: number;
  dir: string;
  routesFile: string;
  status(): Promise<{ revision?: number; ready?: boolean; [k: string]: unknown }>;
}

/**
 * Starts a Portico process on free loopback ports and waits until /status/ready answers 200. The
 * gateway runs under `sh -c 'ulimit -n <hard limit>; exec node ...'` (same PID), so benches holding
 * thousands of client connections are not capped by a low soft limit of the shell that started them.
 */
export async function startPortico(opts: PorticoOptions): Promise<PorticoRun> {
  const port = await freePort();
  const statusPort = await freePort();
  const dir = tempDir('portico-bench-');
  const routesFile = path.join(dir, 'routes.yaml');
  if (!opts.etcd) writeFileSync(routesFile, opts.routes ?? 'routes: []\n');
  const source = opts.etcd
    ? `source: etcd, etcd: { endpoints: ["http://${opts.etcd.endpoint}"], prefix: "${opts.etcd.prefix}" }`
    : 'source: file, file: { path: routes.yaml }';
  writeFileSync(
    path.join(dir, 'portico.yaml'),
    `proxy: { listen: ["127.0.0.1:${port}"], workers: ${opts.workers ?? 1}${opts.transport ? `, transport: ${opts.transport}` : ''}${opts.proxyExtra ? `, ${opts.proxyExtra}` : ''} }\nstatus: { listen: "127.0.0.1:${statusPort}"${opts.statusExtra ? `, ${opts.statusExtra}` : ''} }\nconfig: { ${source}, snapshot: snapshot.json }\n${opts.extraYaml ?? ''}\n`,
  );
  const child = run('sh', ['-c', 'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@"', process.execPath, ...START_FLAGS, ...extraNodeFlags(), opts.main, 'start', '--config', path.join(dir, 'portico.yaml')], {
    env: { PORTICO_LOG_LEVEL: 'warn', NODE_ENV: 'production' },
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
  const deadline = Date.now() + 30_000;
  while ((await httpGet(statusPort, '/status/ready')).status !== 200) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`portico did not become ready: ${stderr}`);
    await sleep(50);
  }
  await waitPort(port);
  return {
    child,
    pid: child.pid!,
    port,
    statusPort,
    dir,
    routesFile,
    status: async () => JSON.parse((await httpGet(statusPort, '/status')).body || '{}'),
  };
}

/** Where the benchmark peers live; see ../shared/peers/README.md. */
export const PEERS_DIR = process.env.PORTICO_PEERS_DIR ?? '/tmp/peers';
export const SEED_CONF = process.env.PORTICO_SEED_CONF ?? path.resolve(ROOT, '../shared/peers/seed-nginx-lua.conf');
const LUA_MODULE = '/usr/lib/nginx/modules/ngx_http_lua_module.so';

/** A peer process, or the line to print instead when it is not installed. */
export type Peer = { child: ChildProcess } | { skipped: string };

/** The seed's nginx+lua gateway (SEED_CONF, placeholders filled in), one worker, as the seed runs it. */
export async function startSeed(port: number, upstreamPort: number): Promise<Peer> {
  const bin = which('nginx');
  if (!bin || !existsSync(LUA_MODULE)) return { skipped: 'apt-get install nginx libnginx-mod-http-lua' };
  if (!existsSync(SEED_CONF)) return { skipped: `seed config not found at ${SEED_CONF} (set PORTICO_SEED_CONF)` };
  const dir = tempDir('portico-bench-seed-');
  mkdirSync(path.join(dir, 'logs'));
  // temp paths inside DIR: the Debian defaults under /var/lib/nginx may not exist or be writable
  const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `${t}_temp_path ${dir};`).join(' ');
  const conf = readFileSync(SEED_CONF, 'utf8')
    .replaceAll('__PORT__', String(port))
    .replaceAll('__UPSTREAM__', `127.0.0.1:${upstreamPort}`)
    .replace(/^http \{/m, `http { ${temps}`);
  writeFileSync(path.join(dir, 'seed.conf'), conf);
  const child = run(bin, ['-p', `${dir}/`, '-c', path.join(dir, 'seed.conf'), '-g', 'daemon off; master_process off;']);
  await waitPort(port);
  return { child };
}

/** fast-gateway 5 from PEERS_DIR, routing prefix /aa to the upstream (same path upstream). */
export async function startFastGateway(port: number, upstreamPort: number): Promise<Peer> {
  const mod = path.join(PEERS_DIR, 'node_modules/fast-gateway');
  if (!existsSync(mod)) {
    return { skipped: `not found in ${PEERS_DIR} (set PORTICO_PEERS_DIR): install as in ../shared/peers/README.md (npm install fast-gateway@5.0.1 with override fast-proxy-lite 1.1.2)` };
  }
  const child = run(
    process.execPath,
    ['-e', `require(${JSON.stringify(mod)})({routes:[{prefix:'/aa',target:'http://127.0.0.1:${upstreamPort}',prefixRewrite:'/aa'}]}).start(${port})`],
    { cwd: PEERS_DIR, env: { NODE_ENV: 'production' } },
  );
  await waitPort(port);
  return { child };
}

/**
 * Polls `path` on `pool` (one keep-alive connection) until it answers `want`; returns when it did
 * (performance.now()). Propagation benches time a config change with it. Bounded: 10 s.
 */
export async function servedAt(pool: Pool, path: string, want: number): Promise<number> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const res = await pool.request({ path, method: 'GET' });
    await res.body.dump();
    if (res.statusCode === want) return performance.now();
    if (performance.now() > deadline) throw new Error(`${path} not ${want} after 10 s`);
  }
}
