/**
 * The gateway's GC pauses under the standard load (one route, wrk -t1 -c50 against nginx): node's
 * --trace-gc lines of the measured window, summed per kind, beside the throughput and latency.
 *
 *   node --import tsx bench/gc-pauses.ts [--duration 6] [--root DIR]
 *
 * Young-generation (Scavenge) pauses stop every request in flight: their share of the wall time is
 * a floor under the latency tail, and their rate times the bytes each frees is the allocation per
 * request.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildGateway, freePort, ROOT, startPortico, startUpstream, stop, wrk, wrkAsync } from './lib.ts';

const { values } = parseArgs({ options: { duration: { type: 'string', default: '6' }, root: { type: 'string' } } });
const duration = Number(values.duration);
const root = path.resolve(values.root ?? ROOT);
process.env.PORTICO_BENCH_NODE_FLAGS = `${process.env.PORTICO_BENCH_NODE_FLAGS ?? ''} --trace-gc`;

const main = buildGateway(path.join(root, '.tmp/bench'), root);
const upstreamPort = await freePort();
const upstream = await startUpstream(upstreamPort);
const gateway = await startPortico({ main, routes: `routes:\n  - id: r1\n    uri: /aa/*\n    upstream: { nodes: { "127.0.0.1:${upstreamPort}": 1 } }\n`, workers: 1 });
const url = `http://127.0.0.1:${gateway.port}/aa/hello`;
wrk(url, { duration: 2, connections: 50, threads: 1 });

// the gateway's stdout is read only from here (and without blocking: wrkAsync), so its lines are the window's
const lines: string[] = [];
let partial = '';
let measuring = true;
gateway.child.stdout!.on('data', (d: Buffer) => {
  const text = partial + d.toString();
  const complete = text.split('\n');
  partial = complete.pop()!;
  if (measuring) lines.push(...complete);
});
await new Promise((r) => setTimeout(r, 100));
lines.length = 0;
const result = await wrkAsync(url, { duration, connections: 50, threads: 1 });
measuring = false;
await stop(gateway.child);
await stop(upstream);

interface Pause {
  kind: string;
  ms: number;
  freedMb: number;
}
const pauses: Pause[] = [];
for (const line of lines) {
  const m = /(Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Sweep)[^]*? ([\d.]+) \(([\d.]+)\) -> ([\d.]+) \(([\d.]+)\) MB, ([\d.]+) \/ ([\d.]+) ms/.exec(line);
  if (m !== null) pauses.push({ kind: m[1]!, ms: Number(m[6]), freedMb: Number(m[2]) - Number(m[4]) });
}
console.log(`wrk -t1 -c50 -d${duration}s ${url}: ${Math.round(result.rps)} req/s, p50 ${result.p50ms} ms, p99 ${result.p99ms} ms`);
for (const kind of new Set(pauses.map((p) => p.kind))) {
  const of = pauses.filter((p) => p.kind === kind);
  const total = of.reduce((a, p) => a + p.ms, 0);
  const max = Math.max(...of.map((p) => p.ms));
  console.log(`${kind}: ${of.length} pauses, mean ${(total / of.length).toFixed(2)} ms, max ${max.toFixed(2)} ms, ${((total / (duration * 1000)) * 100).toFixed(1)} % of the time`);
  if (kind === 'Scavenge') {
    const freed = of.reduce((a, p) => a + p.freedMb, 0) * 1024 * 1024;
    console.log(`  young generation freed ${(freed / duration / 1e6).toFixed(0)} MB/s: ~${(freed / result.requests / 1024).toFixed(1)} KiB per request`);
  }
}
