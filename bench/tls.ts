/**
 * TLS termination and stream proxying, side by side in one run:
 *  - HTTPS through Portico (`tls_listen`, the certificate from an ssls object, chosen by SNI) and
 *    through nginx terminating TLS with the same certificate and key, both proxying to the same
 *    upstream, both one process: wrk -t1 -c50 with keep-alive, then with `Connection: close` (a new
 *    TLS handshake per request);
 *  - TCP: 1 GB sent over one connection to a sink, directly and through a Portico stream route
 *    (MB/s, and Portico's CPU per GB).
 *
 *   npm run bench:tls -- [--duration 5] [--gigabytes 1]
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildGateway, freePort, ROOT, startNginx, startPortico, startUpstream, stop, treeCpuMs, waitPort, which, wrk, type WrkResult } from './lib.ts';

const { values } = parseArgs({ options: { duration: { type: 'string', default: '5' }, gigabytes: { type: 'string', default: '1' } } });
const duration = Number(values.duration);
if (!which('wrk')) throw new Error('wrk is needed: apt-get install wrk');

// one certificate for both terminators (RSA 2048, the common case), named 127.0.0.1 too: wrk sends the URL's host as SNI
const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-bench-tls-'));
const certFile = path.join(dir, 'cert.pem');
const keyFile = path.join(dir, 'key.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=bench.test', '-addext', 'subjectAltName=DNS:bench.test,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile], { stdio: 'pipe' });
const cert = readFileSync(certFile, 'utf8');
const key = readFileSync(keyFile, 'utf8');

const upstreamPort = await freePort();
const upstream = await startUpstream(upstreamPort);
const main = buildGateway(path.join(ROOT, '.tmp/bench-tls'));

const rows: Array<{ name: string; keepalive?: WrkResult; handshake?: WrkResult; skipped?: string }> = [];
const run = (port: number) => ({
  keepalive: wrk(`https://127.0.0.1:${port}/`, { duration, connections: 50, threads: 1 }),
  handshake: wrk(`https://127.0.0.1:${port}/`, { duration, connections: 50, threads: 1, headers: ['Connection: close'] }),
});

{
  const tlsPort = await freePort();
  const routes = [
    'upstreams:',
    `  - { id: u, nodes: { "127.0.0.1:${upstreamPort}": 1 } }`,
    'routes:',
    '  - { id: r, uri: "/*", upstream_id: u }',
    'ssls:',
    `  - ${JSON.stringify({ id: 'bench', cert, key, snis: ['bench.test', '127.0.0.1'] })}`,
  ].join('\n');
  const g = await startPortico({ main, routes: `${routes}\n`, proxyExtra: `tls_listen: ["127.0.0.1:${tlsPort}"], fallback_sni: bench.test` });
  await waitPort(tlsPort);
  rows.push({ name: 'portico (1 process)', ...run(tlsPort) });
  await stop(g.child);
}
{
  const port = await freePort();
  const nginx = startNginx(
    `upstream u { server 127.0.0.1:${upstreamPort}; keepalive 320; }
     server { listen 127.0.0.1:${port} ssl; ssl_certificate ${certFile}; ssl_certificate_key ${keyFile};
       ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
       location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
  );
  if (nginx === undefined) rows.push({ name: 'nginx (1 worker)', skipped: 'apt-get install nginx' });
  else {
    await waitPort(port);
    rows.push({ name: 'nginx (1 worker)', ...run(port) });
    await stop(nginx);
  }
}

/** Sends `bytes` (rounded up to whole 256 KiB writes) over one connection to `port` (a sink); MB/s and bytes sent. */
async function push(port: number, bytes: number): Promise<{ mbps: number; sent: number }> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  await once(socket, 'connect');
  const chunk = Buffer.alloc(256 * 1024, 7);
  const t0 = performance.now();
  let sent = 0;
  while (sent < bytes) {
    sent += chunk.length;
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  socket.end();
  await once(socket, 'close');
  return { mbps: sent / 1e6 / ((performance.now() - t0) / 1000), sent };
}

const gigabytes = Number(values.gigabytes);
const total = gigabytes * 1e9;
// the sink counts bytes and closes after the client's FIN
let received = 0;
const sink = net.createServer((s) => {
  s.on('data', (c: Buffer) => (received += c.length));
  s.on('end', () => s.end());
});
sink.listen(0, '127.0.0.1');
await once(sink, 'listening');
const sinkPort = (sink.address() as net.AddressInfo).port;
const direct = (await push(sinkPort, total)).mbps;
const streamPort = await freePort();
const g = await startPortico({
  main,
  routes: `stream_routes:\n  - { id: s, upstream: { nodes: { "127.0.0.1:${sinkPort}": 1 } } }\n`,
  proxyExtra: `stream_listen: [{ addr: "127.0.0.1:${streamPort}" }]`,
});
await waitPort(streamPort);
received = 0;
const cpu0 = treeCpuMs(g.pid);
const through = await push(streamPort, total);
const viaPortico = through.mbps;
const cpuMs = treeCpuMs(g.pid) - cpu0;
const lost = through.sent - received;
await stop(g.child);
sink.close();
await stop(upstream);

const f = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '-');
console.log(`\nHTTPS (wrk -t1 -c50, ${duration} s; upstream: nginx static), RSA 2048, TLS 1.3`);
console.log('target                 keep-alive req/s  p99 ms   new-handshake req/s  p99 ms  errors');
for (const r of rows) {
  if (r.skipped) console.log(`${r.name.padEnd(22)} skipped: ${r.skipped}`);
  else console.log(`${r.name.padEnd(22)} ${f(r.keepalive!.rps).padStart(17)} ${r.keepalive!.p99ms.toFixed(2).padStart(7)} ${f(r.handshake!.rps).padStart(20)} ${r.handshake!.p99ms.toFixed(2).padStart(7)}  ${r.keepalive!.errors + r.handshake!.errors}`);
}
const [p, n] = rows;
if (p?.keepalive && n?.keepalive) {
  console.log(`portico / nginx: keep-alive ${(p.keepalive.rps / n.keepalive.rps).toFixed(2)}x, new handshake ${(p.handshake!.rps / n.handshake!.rps).toFixed(2)}x`);
}
console.log(`\nTCP, ${gigabytes} GB over one connection to a sink: direct ${direct.toFixed(0)} MB/s, through a Portico stream route ${viaPortico.toFixed(0)} MB/s (${(viaPortico / direct).toFixed(2)}x), Portico CPU ${(cpuMs / gigabytes / 1000).toFixed(2)} s per GB, bytes lost ${lost}`);
