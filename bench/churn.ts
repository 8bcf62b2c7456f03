/**
 * Config churn under load: wrk runs against Portico (1 worker) while --rate route changes per
 * second are applied to routes the benchmarked path does not use (a route /churn/<k> added or
 * removed, k cycling over 10 slots), beside a quiet run of the same gateway. Reported side by
 * side: req/s, p99, failed requests (wrk's non-2xx + socket errors), the changes made and the
 * config revisions the gateway applied while wrk ran, and the CPU the churner took (this process
 * writing, plus etcd) — on a 2-core machine that CPU is taken from the gateway, wrk and the upstream.
 * After each churn run the bench makes one more change (route /marker), times it until served, and
 * checks that every churn route then answers as the last change left it (200 or 404).
 *
 * Sources (--sources, default all):
 *   file          one change per file save (temp file + rename, as editors save), every 1000/rate ms
 *   file-batched  --batch changes per save, every batch*1000/rate ms (same changes/s, fewer saves)
 *   etcd          one put or delete per change against a real etcd (test/helpers/etcd.ts)
 *   file-unwatched  control: the saves of `file`, to a directory the gateway does not watch
 * The file source applies an edit after 25 ms without file events, so saves closer than that are
 * coalesced into one reload (the revisions column shows how many were applied).
 *
 *   npm run bench:churn -- [--duration 10] [--connections 50] [--threads 1] [--rate 100]
 *     [--batch 5] [--rounds 1] [--sources file,file-batched,etcd] [--transport node|socket] [--tsx] [--root DIR]
 *
 * --rounds N alternates quiet and churn runs N times on the same gateway (noise on a shared machine
 * shows as spread between rounds); the summary line per source compares all churn requests with
 * all quiet ones.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EtcdClient } from '../src/sources/etcd/client.ts';
import { startEtcd, type EtcdProcess } from '../test/helpers/etcd.ts';
import { buildGateway, freePort, httpGet, ROOT, sleep, startPortico, startUpstream, stop, treeCpuMs, wrk, wrkAsync, type PorticoRun, type WrkResult } from './lib.ts';

const SOURCES = ['file', 'file-batched', 'etcd', 'file-unwatched'] as const;
type Source = (typeof SOURCES)[number];

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    threads: { type: 'string', default: '1' },
    rate: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '1' },
    batch: { type: 'string', default: '5' },
    sources: { type: 'string', default: SOURCES.join(',') },
    tsx: { type: 'boolean', default: false },
    root: { type: 'string' },
    transport: { type: 'string' },
  },
});
const opts = { duration: Number(values.duration), connections: Number(values.connections), threads: Number(values.threads) };
const rate = Number(values.rate);
const batch = Number(values.batch);
const rounds = Number(values.rounds);
const sources = values.sources.split(',').map((s) => s.trim()) as Source[];
for (const s of sources) if (!SOURCES.includes(s)) throw new Error(`unknown source ${s}; one of ${SOURCES.join(', ')}`);
const root = path.resolve(values.root ?? ROOT);
const gatewayMain = values.tsx ? path.join(root, 'bin/portico.js') : buildGateway(path.join(root, '.tmp/bench'), root);

const PATH = '/aa/hello';
const SLOTS = 10;
const upstreamPort = await freePort();
const upstream = await startUpstream(upstreamPort);

/** The routes file: the benchmarked route, the churn routes whose slots are set, and the end marker. */
function routesYaml(present: boolean[], marker?: number): string {
  let s = `upstreams:\n  - id: u\n    nodes: { "127.0.0.1:${upstreamPort}": 1 }\nroutes:\n  - id: r\n    uri: /aa/*\n    upstream_id: u\n`;
  if (marker !== undefined) s += `  - id: marker\n    uri: /marker/${marker}\n    upstream_id: u\n`;
  present.forEach((on, k) => {
    if (on) s += `  - id: churn-${k}\n    uri: /churn/${k}\n    upstream_id: u\n`;
  });
  return s;
}

interface Churner {
  /** applies change number i (toggles slot i % SLOTS); resolves when the source has it */
  change(i: number, present: boolean[]): Promise<void>;
  /** sets route `marker` to uri /marker/<round>, keeping the churn routes as they are */
  marker(present: boolean[], round: number): Promise<void>;
  /** changes applied per call of `change` */
  perCall: number;
  /** extra processes whose CPU counts as the churner's */
  pids: number[];
  close(): Promise<void>;
}

/**
 * Saves of the routes file; `unwatched` makes the same saves to a copy in another directory (the
 * gateway's routes stay as they are): a control for what the saves cost the machine itself.
 */
function fileChurner(g: PorticoRun, perCall: number, unwatched = false): Churner {
  const tmp = `${g.routesFile}.tmp`;
  const elsewhere = unwatched ? path.join(mkdtempSync(path.join(os.tmpdir(), 'portico-bench-unwatched-')), 'routes.yaml') : undefined;
  const shadow = new Array<boolean>(SLOTS).fill(false);
  return {
    perCall,
    pids: [],
    async change(i, present) {
      const slots = elsewhere ? shadow : present;
      for (let j = 0; j < perCall; j++) slots[(i * perCall + j) % SLOTS] = !slots[(i * perCall + j) % SLOTS];
      writeFileSync(`${elsewhere ?? g.routesFile}.tmp`, routesYaml(slots));
      renameSync(`${elsewhere ?? g.routesFile}.tmp`, elsewhere ?? g.routesFile);
    },
    async marker(present, round) {
      writeFileSync(tmp, routesYaml(present, round));
      renameSync(tmp, g.routesFile);
    },
    async close() {
      if (elsewhere) rmSync(path.dirname(elsewhere), { recursive: true, force: true });
    },
  };
}

function etcdChurner(etcd: EtcdProcess, client: EtcdClient): Churner {
  return {
    perCall: 1,
    pids: [etcd.pid],
    async change(i, present) {
      const k = i % SLOTS;
      present[k] = !present[k];
      if (present[k]) await client.put(`/portico/routes/churn-${k}`, JSON.stringify({ uri: `/churn/${k}`, upstream_id: 'u' }));
      else await client.delete(`/portico/routes/churn-${k}`);
    },
    async marker(_present, round) {
      await client.put('/portico/routes/marker', JSON.stringify({ uri: `/marker/${round}`, upstream_id: 'u' }));
    },
    async close() {
      await client.close();
      await etcd.stop();
    },
  };
}

interface Result {
  source: Source;
  round: number;
  quiet: WrkResult;
  churn: WrkResult;
  changes: number;
  changesPerSec: number;
  revisions: number;
  churnerCpuPct: number;
  gatewayCpuQuiet: number;
  gatewayCpuChurn: number;
  /** ms from the end of the churn to a marker change made then being served; NaN if not within 5 s */
  settleMs: number;
  /** once the marker is served, every churn route answers as the last change left it (200 present, 404 removed) */
  finalOk: boolean;
}

async function scenario(source: Source): Promise<Result[]> {
  const present = new Array<boolean>(SLOTS).fill(false);
  let g: PorticoRun;
  let churner: Churner;
  if (source === 'etcd') {
    const etcd = await startEtcd();
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    await client.put('/portico/upstreams/u', JSON.stringify({ nodes: { [`127.0.0.1:${upstreamPort}`]: 1 } }));
    await client.put('/portico/routes/r', JSON.stringify({ uri: '/aa/*', upstream_id: 'u' }));
    g = await startPortico({ main: gatewayMain, transport: values.transport, etcd: { endpoint: etcd.endpoint, prefix: '/portico' } });
    churner = etcdChurner(etcd, client);
  } else {
    g = await startPortico({ main: gatewayMain, transport: values.transport, routes: routesYaml(present) });
    churner = fileChurner(g, source === 'file-batched' ? batch : 1, source === 'file-unwatched');
  }
  try {
    const url = `http://127.0.0.1:${g.port}${PATH}`;
    wrk(url, { ...opts, duration: Math.min(2, opts.duration) }); // warm-up: JIT, pools
    const results: Result[] = [];
    let calls = 0;
    for (let round = 1; round <= rounds; round++) {
      let cpu0 = treeCpuMs(g.pid);
      const quiet = await wrkAsync(url, opts);
      const gatewayCpuQuiet = (treeCpuMs(g.pid) - cpu0) / (opts.duration * 10);

      const rev0 = Number((await g.status()).revision);
      cpu0 = treeCpuMs(g.pid);
      const churnCpu0 = churner.pids.reduce((a, p) => a + treeCpuMs(p), 0);
      const self0 = process.cpuUsage();
      const running = wrkAsync(url, opts);
      let done = false;
      void running.finally(() => (done = true));
      const interval = (1000 / rate) * churner.perCall;
      const t0 = performance.now();
      const calls0 = calls;
      // paced by the clock: a late change is not followed by a burst, the rate achieved is reported
      while (!done) {
        await churner.change(calls++, present);
        const next = t0 + (calls - calls0) * interval;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
      }
      const elapsed = (performance.now() - t0) / 1000;
      const churn = await running;
      const gatewayCpuChurn = (treeCpuMs(g.pid) - cpu0) / (opts.duration * 10);
      const self = process.cpuUsage(self0);
      const churnerCpuPct = ((self.user + self.system) / 1000 + churner.pids.reduce((a, p) => a + treeCpuMs(p), 0) - churnCpu0) / (elapsed * 10);
      const revisions = Number((await g.status()).revision) - rev0;

      // the churn's end state must be served: a marker change made after the last one (the file
      // source reloads the whole file, etcd's watch is ordered), then every churn route as left
      const markedAt = performance.now();
      await churner.marker(present, round);
      let settleMs = NaN;
      while (performance.now() - markedAt < 5000) {
        if ((await httpGet(g.port, `/marker/${round}`)).status === 200) {
          settleMs = performance.now() - markedAt;
          break;
        }
        await sleep(5);
      }
      let finalOk = !Number.isNaN(settleMs);
      for (let k = 0; k < SLOTS; k++) if ((await httpGet(g.port, `/churn/${k}`)).status !== (present[k] ? 200 : 404)) finalOk = false;
      const changes = (calls - calls0) * churner.perCall;
      results.push({ source, round, quiet, churn, changes, changesPerSec: changes / elapsed, revisions, churnerCpuPct, gatewayCpuQuiet, gatewayCpuChurn, settleMs, finalOk });
    }
    return results;
  } finally {
    await stop(g.child);
    await churner.close();
  }
}

const results: Result[] = [];
for (const s of sources) results.push(...(await scenario(s)));
await stop(upstream);

const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(
  `\nconfig churn under load: wrk -t${opts.threads} -c${opts.connections} -d${opts.duration}s ${PATH} on Portico (1 worker, ${values.transport ? `transport ${values.transport}, ` : ''}` +
    `${values.tsx ? 'tsx' : 'compiled'}), ${rate} route changes/s on unrelated routes, node ${process.version}, ${os.cpus().length} cores, load average ${load}`,
);
console.log('source         run       req/s   p99 ms  failed  non-2xx  socket  changes  changes/s  revisions  gw cpu %');
for (const r of results) {
  const line = (run: string, w: WrkResult, cpu: number, extra: string) =>
    console.log(
      `${r.source.padEnd(14)} ${(rounds > 1 ? `${run} ${r.round}` : run).padEnd(8)} ${w.rps.toFixed(0).padStart(7)} ${w.p99ms.toFixed(2).padStart(8)} ${String(w.errors).padStart(7)} ${String(w.non2xx).padStart(8)} ${String(w.socketErrors).padStart(7)} ${extra} ${cpu.toFixed(0).padStart(9)}`,
    );
  line('quiet', r.quiet, r.gatewayCpuQuiet, `${'-'.padStart(8)} ${'-'.padStart(10)} ${'-'.padStart(10)}`);
  line('churn', r.churn, r.gatewayCpuChurn, `${String(r.changes).padStart(8)} ${r.changesPerSec.toFixed(0).padStart(10)} ${String(r.revisions).padStart(10)}`);
  console.log(
    `${''.padEnd(14)} churn/quiet throughput ${(r.churn.rps / r.quiet.rps).toFixed(3)}x; churner cpu ${r.churnerCpuPct.toFixed(0)}%; ` +
      `end state served ${Number.isNaN(r.settleMs) ? 'NOT within 5 s' : `${r.settleMs.toFixed(0)} ms after the churn stopped`}` +
      `${r.finalOk ? ', every churn route as last changed' : ', churn routes NOT as last changed'}`,
  );
}
console.log('');
for (const source of sources) {
  const rs = results.filter((r) => r.source === source);
  const sum = (f: (r: Result) => number) => rs.reduce((a, r) => a + f(r), 0);
  const failed = sum((r) => r.churn.errors);
  console.log(
    `${source.padEnd(14)} churn/quiet ${(sum((r) => r.churn.requests) / sum((r) => r.quiet.requests)).toFixed(3)}x requests over ${rs.length} round${rs.length > 1 ? 's' : ''}, ` +
      `${failed} failed under churn (goal: >= 0.9x, 0 failed)${rs.every((r) => r.finalOk) ? '' : '; END STATE WRONG'}`,
  );
}
