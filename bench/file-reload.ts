/**
 * What a reload of a large routes file costs the requests being served. For each size N: the
 * gateway (compiled, with bench/loop-probe.mjs preloaded) serves a file of N routes; a client thread
 * sends a request every --interval ms to one route; the bench edits one line of the file (another
 * route's uri, saved as editors do: temp file + rename) and waits until the edit is served, then
 * 2.5 s more, so the snapshot write that follows a change (after 1 s of quiet) is inside the window.
 * Per edit it records the slowest request of the window, the longest event-loop block and GC pause
 * in the gateway, the time from save to the edit being served, and the gateway's RSS (sampled
 * every 25 ms). An idle window of the same length, with no edit, gives the noise floor.
 *
 *   node --import tsx bench/file-reload.ts [--routes 1000,5000,30000,100000] [--edits 3]
 *     [--interval 2] [--root DIR] [--tsx] [--aliases]
 *
 * Each column shows the worst edit and, in parentheses, the median one: on a shared machine a
 * single window can catch unrelated scheduling noise (compare the idle window), a reload stall
 * shows in every window.
 *
 * --root DIR builds and runs the gateway of another checkout (e.g. `git archive <commit>` unpacked,
 * with a node_modules symlink), to compare before and after a change. --tsx runs bin/portico.js
 * from the sources instead of compiling.
 */
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSteadyClient } from '../test/helpers/steady-client.ts';
import { buildGateway, freePort, ROOT, run, stop, waitPort } from './lib.ts';

const { values } = parseArgs({
  options: {
    routes: { type: 'string', default: '1000,5000,30000,100000' },
    edits: { type: 'string', default: '3' },
    interval: { type: 'string', default: '2' },
    root: { type: 'string' },
    tsx: { type: 'boolean', default: false },
    aliases: { type: 'boolean', default: false },
  },
});
const sizes = values.routes.split(',').map(Number);
const edits = Number(values.edits);
const interval = Number(values.interval);
const root = path.resolve(values.root ?? ROOT);
const gatewayMain = values.tsx ? path.join(root, 'bin/portico.js') : buildGateway(path.join(root, '.tmp/bench-file-reload'), root);
const probe = path.join(ROOT, 'bench/loop-probe.mjs');

const upstreamPort = await freePort();
const upstream = run(process.execPath, ['-e', `require('http').createServer((q,s)=>s.end('ok')).listen(${upstreamPort},'127.0.0.1')`]);
await waitPort(upstreamPort);

/**
 * N routes of a typical shape (~115 bytes of YAML each), route `edited` with its uri suffixed. With
 * --aliases, the first route anchors its methods and every 1,000th refers to them (YAML decoders
 * allow 100 aliases), a layout the file source cannot cut into items: it decodes the whole file.
 */
function routesFile(n: number, edited = -1, suffix = ''): string {
  const parts = [`upstreams:\n  - id: u\n    nodes:\n      "127.0.0.1:${upstreamPort}": 1\nroutes:\n`];
  for (let i = 0; i < n; i++) {
    const methods = !values.aliases || i % 1000 !== 0 ? '[GET, POST]' : i === 0 ? '&m [GET, POST]' : '*m';
    parts.push(`  - id: r${i}\n    uri: /api/v1/r${i}${i === edited ? suffix : ''}/*\n    methods: ${methods}\n    hosts: [api${i % 10}.example.com]\n    upstream_id: u\n`);
  }
  return parts.join('');
}

function get(port: number, p: string, host: string): Promise<number> {
  return new Promise((resolve) => {
    http
      .get({ host: '127.0.0.1', port, path: p, headers: { host }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', () => resolve(0));
  });
}

/** The gateway's event-loop record since the previous call (bench/loop-probe.mjs, on SIGUSR2). */
async function takeLoop(pid: number): Promise<{ maxms: number; cpuMaxMs: number | null; gcs: Array<{ ms: number }> }> {
  const file = `/tmp/portico-loop-${pid}.window.json`;
  const before = existsSync(file) ? statSync(file).mtimeMs : 0;
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 60_000;
  while (!existsSync(file) || statSync(file).mtimeMs === before) {
    if (Date.now() > deadline) throw new Error('no answer from the loop probe');
    await sleep(10);
  }
  await sleep(10);
  return JSON.parse(readFileSync(file, 'utf8'));
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Window {
  requestMaxMs: number;
  loopMaxMs: number;
  /** the longest the main thread computed at once (Node >= 23.9; NaN before) */
  cpuMaxMs: number;
  gcMaxMs: number;
  liveMs: number;
  rssPeakMb: number;
  requests: number;
  errors: number;
}

async function scenario(n: number) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-bench-reload-'));
  const routesPath = path.join(dir, 'routes.yaml');
  const save = (text: string) => {
    writeFileSync(`${routesPath}.tmp`, text);
    renameSync(`${routesPath}.tmp`, routesPath);
  };
  const base = routesFile(n);
  save(base);
  const port = await freePort();
  const statusPort = await freePort();
  writeFileSync(
    path.join(dir, 'portico.yaml'),
    `proxy: { listen: ["127.0.0.1:${port}"] }\nstatus: { listen: "127.0.0.1:${statusPort}" }\nconfig: { source: file, file: { path: routes.yaml }, snapshot: snapshot.json }\n`,
  );
  const t0 = performance.now();
  const gw = run(process.execPath, ['--import', probe, gatewayMain, 'start', '--config', path.join(dir, 'portico.yaml')], {
    env: { PORTICO_LOG_LEVEL: 'warn', NODE_ENV: 'production' },
  });
  let out = '';
  gw.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  gw.stdout!.on('data', () => {});
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${statusPort}/status/ready`).catch(() => undefined);
    if (r?.status === 200) break;
    if (gw.exitCode !== null) throw new Error(`gateway exited: ${out}`);
    if (performance.now() - t0 > 300_000) throw new Error('gateway not ready after 300 s');
    await sleep(20);
  }
  const startMs = performance.now() - t0;
  const pid = gw.pid!;
  const client = startSteadyClient({ port, path: '/api/v1/r7/x', host: 'api7.example.com', everyMs: interval });
  await sleep(2000); // warm-up: JIT, sockets
  await client.take();

  const measure = async (edit: (() => void) | undefined, live: () => Promise<boolean>): Promise<Window> => {
    await takeLoop(pid);
    await client.take();
    let rssPeakMb = rssMb(pid);
    const sampler = setInterval(() => (rssPeakMb = Math.max(rssPeakMb, rssMb(pid))), 25);
    const saved = performance.now();
    edit?.();
    let liveMs = 0;
    if (edit) {
      while (!(await live())) {
        if (performance.now() - saved > 300_000) throw new Error('edit not served after 300 s');
        await sleep(5);
      }
      liveMs = performance.now() - saved;
    }
    await sleep(2500);
    clearInterval(sampler);
    const loop = await takeLoop(pid);
    const req = await client.take();
    return {
      requestMaxMs: req.maxMs,
      loopMaxMs: loop.maxms,
      cpuMaxMs: loop.cpuMaxMs ?? NaN,
      gcMaxMs: Math.max(0, ...loop.gcs.map((g) => g.ms)),
      liveMs,
      rssPeakMb,
      requests: req.count,
      errors: req.errors,
    };
  };

  const rssBeforeMb = rssMb(pid);
  const idle = await measure(undefined, async () => true);
  const reloads: Window[] = [];
  const edited = Math.floor(n / 2);
  const host = `api${edited % 10}.example.com`;
  for (let k = 1; k <= edits; k++) {
    const text = routesFile(n, edited, `-e${k}`); // built before the window opens
    reloads.push(await measure(() => save(text), async () => (await get(port, `/api/v1/r${edited}-e${k}/x`, host)) === 200));
  }
  await client.close();
  await stop(gw);
  rmSync(dir, { recursive: true, force: true });
  rmSync(`/tmp/portico-loop-${pid}.window.json`, { force: true });
  rmSync(`/tmp/portico-loop-${pid}.json`, { force: true });
  return { n, kb: Buffer.byteLength(base) / 1024, startMs, rssBeforeMb, idle, reloads };
}

const results = [];
for (const n of sizes) {
  const r = await scenario(n);
  results.push(r);
  const worst = (f: (w: Window) => number) => Math.max(...r.reloads.map(f));
  console.error(`${n} routes: request max ${worst((w) => w.requestMaxMs).toFixed(1)} ms, loop max ${worst((w) => w.loopMaxMs).toFixed(1)} ms, live ${worst((w) => w.liveMs).toFixed(0)} ms`);
}
await stop(upstream);

const f = (v: number, w: number, d = 1) => v.toFixed(d).padStart(w);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
console.log(`\nfile reload: one-line edit of an N-route file while a request is sent every ${interval} ms; ${edits} edits per size`);
console.log(`gateway ${values.tsx ? 'from src (tsx)' : 'compiled'} from ${root}${values.aliases ? ', file with aliases (decoded whole)' : ''}, node ${process.version}, ${os.cpus().length} cores; load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log('worst (median) over the edits; idle: a window of the same length without an edit; CPU max: the longest the');
console.log('main thread computed at once (Node >= 23.9), which unlike the delays does not count waiting for a core');
console.log('   routes  file KB | idle: req max  loop max  CPU max | reload: req max        loop max        CPU max         GC max  save->served | RSS MB: before  peak   start s');
for (const r of results) {
  const worst = (fn: (w: Window) => number) => Math.max(...r.reloads.map(fn));
  const both = (fn: (w: Window) => number, w: number) => `${f(worst(fn), w)} (${f(median(r.reloads.map(fn)), 5)})`;
  console.log(
    `${String(r.n).padStart(9)} ${f(r.kb, 8, 0)} | ${f(r.idle.requestMaxMs, 13)} ${f(r.idle.loopMaxMs, 9)} ${f(r.idle.cpuMaxMs, 8)} | ${both((w) => w.requestMaxMs, 15)} ${both((w) => w.loopMaxMs, 7)} ${both((w) => w.cpuMaxMs, 7)} ${f(worst((w) => w.gcMaxMs), 7)} ${f(worst((w) => w.liveMs), 13, 0)} | ${f(r.rssBeforeMb, 14, 0)} ${f(worst((w) => w.rssPeakMb), 5, 0)} ${f(r.startMs / 1000, 9)}` +
      (r.reloads.some((w) => w.errors) ? `  (${r.reloads.reduce((a, w) => a + w.errors, 0)} failed requests)` : ''),
  );
}
