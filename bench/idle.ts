/**
 * Idle keep-alive client connections: what holding --idle connections costs Portico (1 worker).
 * Each idle connection makes one request (GET /aa/hello, keep-alive) and then stays open, silent,
 * as a browser or an SDK's pool leaves it (--no-request: connected, never a byte sent). Reported:
 * the gateway's RSS (VmRSS from /proc/<pid>/status) before, with the connections held, its peak
 * (sampled every 100 ms) and after they are closed; and wrk on 50 other connections without and
 * with the idle ones held, side by side; and how many idle connections were still open at the end
 * (the gateway closes idle keep-alive connections after proxy.timeouts.keepalive, 75 s by default,
 * longer than this bench).
 *
 * File descriptors: this process holds --idle sockets and the gateway as many plus its upstream
 * connections. The gateway is started with its soft limit raised to the hard one (bench/lib.ts
 * startPortico); this process cannot raise its own from Node, so it checks its limit first and
 * says to run `ulimit -n 20000` (or higher) in the shell when it is too low.
 *
 *   npm run bench:idle -- [--idle 10000] [--duration 10] [--connections 50] [--threads 1]
 *     [--open-concurrency 200] [--no-request] [--transport node|socket] [--tsx] [--root DIR]
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildGateway, freePort, ROOT, rssMiB, sleep, startPortico, startUpstream, stop, treeCpuMs, wrk, wrkAsync, type WrkResult } from './lib.ts';

const { values } = parseArgs({
  options: {
    idle: { type: 'string', default: '10000' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    threads: { type: 'string', default: '1' },
    'open-concurrency': { type: 'string', default: '200' },
    'no-request': { type: 'boolean', default: false },
    tsx: { type: 'boolean', default: false },
    root: { type: 'string' },
    transport: { type: 'string' },
  },
});
const opts = { duration: Number(values.duration), connections: Number(values.connections), threads: Number(values.threads) };
const idleCount = Number(values.idle);
const openConcurrency = Number(values['open-concurrency']);
const PATH = '/aa/hello';

const nofile = Number(/Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1]?.replace('unlimited', 'Infinity'));
if (nofile < idleCount + 500) {
  console.error(`this process may open ${nofile} files, the bench needs ${idleCount + 500}: run \`ulimit -n ${Math.max(20000, idleCount + 1000)}\` first`);
  process.exit(2);
}

const root = path.resolve(values.root ?? ROOT);
const gatewayMain = values.tsx ? path.join(root, 'bin/portico.js') : buildGateway(path.join(root, '.tmp/bench'), root);
const upstreamPort = await freePort();
const upstream = await startUpstream(upstreamPort);
const g = await startPortico({
  main: gatewayMain,
  transport: values.transport,
  routes: `upstreams:\n  - id: u\n    nodes: { "127.0.0.1:${upstreamPort}": 1 }\nroutes:\n  - id: r\n    uri: /aa/*\n    upstream_id: u\n`,
});
let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(g.pid) || 0)), 100);

const held = new Set<net.Socket>();
let closedEarly = 0;
let failed = 0;

/** One idle connection: connected, (by default) one request answered, then left open and silent. */
function openIdle(): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(g.port, '127.0.0.1');
    let settled = false;
    const done = (ok: boolean) => {
      if (settled) return;
      settled = true;
      if (ok) held.add(s);
      else {
        failed++;
        s.destroy();
      }
      resolve();
    };
    s.setNoDelay(true);
    s.on('error', () => done(false));
    s.on('close', () => {
      if (held.delete(s)) closedEarly++;
      done(false);
    });
    let got = '';
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (got.includes('hello from upstream\n')) done(true); // the whole small body: the response is complete
    });
    s.once('connect', () => {
      if (values['no-request']) done(true);
      else s.write(`GET ${PATH} HTTP/1.1\r\nHost: bench.example\r\n\r\n`);
    });
  });
}

try {
  const url = `http://127.0.0.1:${g.port}${PATH}`;
  wrk(url, { ...opts, duration: Math.min(2, opts.duration) }); // warm-up: JIT, pools
  await sleep(1000);
  const rssBefore = rssMiB(g.pid);
  let cpu0 = treeCpuMs(g.pid);
  const quiet: WrkResult = await wrkAsync(url, opts);
  const cpuQuiet = (treeCpuMs(g.pid) - cpu0) / (opts.duration * 10);
  const rssAfterQuiet = rssMiB(g.pid);

  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: openConcurrency }, async () => {
      while (next < idleCount) {
        next++;
        await openIdle();
      }
    }),
  );
  const openMs = performance.now() - t0;
  await sleep(1000);
  const rssHeld = rssMiB(g.pid);
  const openBefore = held.size;

  cpu0 = treeCpuMs(g.pid);
  const loaded: WrkResult = await wrkAsync(url, opts);
  const cpuLoaded = (treeCpuMs(g.pid) - cpu0) / (opts.duration * 10);
  const rssHeldAfterWrk = rssMiB(g.pid);
  const stillOpen = held.size;

  for (const s of held) s.destroy();
  held.clear();
  await sleep(2000);
  const rssReleased = rssMiB(g.pid);

  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(
    `\nidle keep-alive connections: ${idleCount} ${values['no-request'] ? 'connected, no request sent' : 'after one request each'}, held open on Portico (1 worker, ${values.transport ? `transport ${values.transport}, ` : ''}` +
      `${values.tsx ? 'tsx' : 'compiled'}); wrk -t${opts.threads} -c${opts.connections} -d${opts.duration}s ${PATH} on other connections; ` +
      `node ${process.version}, ${os.cpus().length} cores, load average ${load}`,
  );
  console.log(`opened ${openBefore} of ${idleCount} in ${(openMs / 1000).toFixed(1)} s (${failed} failed to open); ${stillOpen} still open after the wrk run (${closedEarly} closed by the gateway)`);
  console.log('\nrun                    req/s   p50 ms   p99 ms  errors  gw cpu %');
  const row = (name: string, w: WrkResult, cpu: number) =>
    console.log(`${name.padEnd(20)} ${w.rps.toFixed(0).padStart(8)} ${w.p50ms.toFixed(2).padStart(8)} ${w.p99ms.toFixed(2).padStart(8)} ${String(w.errors).padStart(7)} ${cpu.toFixed(0).padStart(9)}`);
  row('without idle conns', quiet, cpuQuiet);
  row(`with ${idleCount} idle`, loaded, cpuLoaded);
  console.log(`with/without throughput ${(loaded.rps / quiet.rps).toFixed(3)}x, p99 ${(loaded.p99ms / quiet.p99ms).toFixed(2)}x`);
  const growth = rssHeld - rssAfterQuiet;
  console.log('\ngateway RSS (MiB)');
  const rss = (name: string, v: number, extra = '') => console.log(`  ${name.padEnd(30)} ${v.toFixed(1).padStart(7)}${extra}`);
  rss('before (warm, no load)', rssBefore);
  rss('after the quiet wrk run', rssAfterQuiet);
  rss(`${idleCount} idle held`, rssHeld, `   growth ${growth.toFixed(1)} MiB (${((growth * 1024) / Math.max(1, openBefore)).toFixed(1)} KiB per connection; goal <= 100 MB)`);
  rss('held, after the wrk run', rssHeldAfterWrk);
  rss('peak (sampled every 100 ms)', peak);
  rss('2 s after closing them', rssReleased);
} finally {
  clearInterval(sampler);
  for (const s of held) s.destroy();
  await stop(g.child);
  await stop(upstream);
}
