/**
 * Config propagation through etcd: the time from an etcd put being acknowledged to the gateway
 * serving the change, over --changes changes, with --small and --large routes already loaded.
 * Also the cold start: gateway process spawned -> ready, with those routes in etcd.
 * A real etcd and a real gateway process on loopback; every wait is bounded.
 *
 *   npm run bench:propagation -- [--changes 200] [--small 10] [--large 10000]
 *
 * BENCH_IMPORT=bench/loop-probe.mjs preloads a module into the gateway (event-loop delay and GC
 * pauses, see that file).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { EtcdClient } from '../src/sources/etcd/client.ts';
import { startEtcd } from '../test/helpers/etcd.ts';
import { freePort, ROOT, run, stop, waitPort, servedAt } from './lib.ts';

const { values } = parseArgs({
  options: {
    changes: { type: 'string', default: '200' },
    small: { type: 'string', default: '10' },
    large: { type: 'string', default: '10000' },
  },
});
const changes = Number(values.changes);

const upstreamPort = await freePort();
const upstream = run(process.execPath, ['-e', `require('http').createServer((q,s)=>s.end('ok')).listen(${upstreamPort},'127.0.0.1')`]);
await waitPort(upstreamPort);

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function scenario(routes: number) {
  const etcd = await startEtcd();
  const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
  const prefix = `/portico`;
  await client.put(`${prefix}/upstreams/u`, JSON.stringify({ nodes: { [`127.0.0.1:${upstreamPort}`]: 1 } }));
  // load in transactions of 100 puts (etcd's default max is 128 operations per txn)
  for (let i = 0; i < routes; i += 100) {
    const ops = [];
    for (let j = i; j < Math.min(routes, i + 100); j++) {
      ops.push({ put: { key: `${prefix}/routes/r${j}`, value: JSON.stringify({ uri: `/r/${j}`, host: j % 2 ? 'a.example.com' : undefined, upstream_id: 'u' }) } });
    }
    await client.txn({ success: ops });
  }

  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-bench-prop-'));
  const port = await freePort();
  const statusPort = await freePort();
  writeFileSync(
    path.join(dir, 'portico.yaml'),
    `proxy: { listen: ["127.0.0.1:${port}"] }\nstatus: { listen: "127.0.0.1:${statusPort}" }\n` +
      `config: { source: etcd, etcd: { endpoints: ["${etcd.clientUrl}"], prefix: ${prefix} }, snapshot: snapshot.json }\n`,
  );
  const t0 = performance.now();
  const gw = run(process.execPath, [...(process.env.BENCH_IMPORT ? ['--import', pathToFileURL(path.resolve(process.env.BENCH_IMPORT)).href] : []), path.join(ROOT, 'bin/portico.js'), 'start', '--config', path.join(dir, 'portico.yaml')], { env: { PORTICO_LOG_LEVEL: 'warn' } });
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${statusPort}/status/ready`).catch(() => undefined);
    if (r?.status === 200) break;
    if (performance.now() - t0 > 60_000) throw new Error('gateway not ready after 60 s');
    await new Promise((r) => setTimeout(r, 5));
  }
  const coldStart = performance.now() - t0;

  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 });
  const served = (p: string, want: number) => servedAt(pool, p, want);
  const samples: number[] = [];
  let firstChange: number | undefined;
  const warmup = 20;
  for (let i = 0; i < changes + warmup; i++) {
    // alternate adds and deletes so both kinds of event are measured
    const add = i % 2 === 0;
    const key = `${prefix}/routes/p${i >> 1}`;
    const uri = `/p/${i >> 1}`;
    const start = performance.now();
    if (add) await client.put(key, JSON.stringify({ uri, upstream_id: 'u' }));
    else await client.delete(key);
    const acked = performance.now();
    const seen = await served(uri, add ? 200 : 404);
    // the first changes after start run cold code (JIT): reported separately, not in the percentiles
    if (i < warmup) firstChange ??= seen - acked;
    else samples.push(seen - acked);
    void start;
  }
  await pool.close();
  await stop(gw);
  await client.close();
  await etcd.stop();
  samples.sort((a, b) => a - b);
  return { routes, coldStart, firstChange: firstChange!, p50: pct(samples, 50), p99: pct(samples, 99), max: samples[samples.length - 1]! };
}

const results = [];
for (const n of [Number(values.small), Number(values.large)]) results.push(await scenario(n));
await stop(upstream);

console.log(`\npropagation: etcd put acknowledged -> change served by the gateway, ${changes} changes (half puts, half deletes), node ${process.version}`);
console.log('routes loaded   cold start ms   1st change ms   p50 ms   p99 ms   max ms   (percentiles after 20 warm-up changes)');
for (const r of results) {
  console.log(`${String(r.routes).padStart(13)} ${r.coldStart.toFixed(0).padStart(15)} ${r.firstChange.toFixed(1).padStart(15)} ${r.p50.toFixed(2).padStart(8)} ${r.p99.toFixed(2).padStart(8)} ${r.max.toFixed(2).padStart(8)}`);
}
