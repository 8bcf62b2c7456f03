/**
 * What an operator sees of traffic, end to end through the gateway process (both transports: the
 * suite runs this folder again with PORTICO_PROXY_TRANSPORT=node): access log lines, /metrics and
 * /status/traffic counts, traceparent to the upstream and spans to an OTLP receiver.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, renameSync, existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Agent, request } from 'undici';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { freePort } from '../helpers/etcd.ts';
import { waitUntil } from '../helpers/wait.ts';
import type { TrafficSnapshot } from '../../src/observability/exchange.ts';

type Line = Record<string, unknown>;

function lines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Line);
}

async function metricsText(gw: GatewayProcess): Promise<string> {
  const res = await fetch(`${gw.statusUrl}/metrics`);
  assert.equal(res.status, 200);
  return res.text();
}

/** The value of one sample line of the exposition text (undefined: no such series). */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1));
  return undefined;
}

describe('access log, metrics and tracing through the gateway', () => {
  let upstream: TestUpstream;
  let slow: TestUpstream;
  let gw: GatewayProcess;
  let logFile: string;
  let deadPort: number;

  before(async () => {
    upstream = await startUpstream('a');
    // answers after 2 s: a client that gives up first is an abort
    slow = await startUpstream('slow', (req, res) => {
      req.resume();
      const t = setTimeout(() => res.end('late'), 2000);
      res.on('close', () => clearTimeout(t));
    });
    deadPort = await freePort();
    gw = await startGateway({
      routes: {
        upstreams: [{ id: 'u1', nodes: { [upstream.address]: 1 } }],
        routes: [
          { id: 'r1', uri: '/ok', upstream_id: 'u1' },
          { id: 'r2', uri: '/dead', upstream: { nodes: { [`127.0.0.1:${deadPort}`]: 1 }, retries: 0 } },
          { id: 'r3', uri: '/slow', upstream: { nodes: { [slow.address]: 1 } } },
          { id: 'r4', uri: '/id', upstream_id: 'u1', plugins: { 'request-id': {} } },
        ],
      },
      extra: { log: { access: { enabled: true, path: 'access.log', format: 'json' } } },
    });
    logFile = path.join(gw.dir, 'access.log');
  });
  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
    await slow?.close();
  });

  test('a line per request: proxied, 404, 502 and a client abort, with their fields', async () => {
    const ok = await fetch(`${gw.url}/ok?q=1`, { headers: { 'user-agent': 'obs-test' } });
    assert.equal(ok.status, 200);
    await ok.text();
    assert.equal((await fetch(`${gw.url}/nowhere`)).status, 404);
    assert.equal((await fetch(`${gw.url}/dead`)).status, 502);
    // a client that leaves before the answer
    await new Promise<void>((resolve) => {
      const socket = net.connect(gw.port, '127.0.0.1', () => {
        socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
        // a reset, not a FIN: a FIN only half-closes (the client may still read its answer)
        setTimeout(() => socket.resetAndDestroy(), 200);
      });
      socket.on('close', () => resolve());
      socket.on('error', () => undefined);
    });
    const got = await waitUntil(() => {
      const l = lines(logFile);
      return l.length >= 4 ? l : undefined;
    }, 5000, 'four access log lines');
    const byUri = new Map(got.map((l) => [l.uri as string, l]));

    const a = byUri.get('/ok?q=1')!;
    assert.ok(a, JSON.stringify(got));
    assert.equal(a.method, 'GET');
    assert.equal(a.status, 200);
    assert.equal(a.route_id, 'r1');
    assert.equal(a.upstream, 'upstreams/u1');
    assert.equal(a.upstream_addr, upstream.address);
    assert.equal(a.upstream_status, 200);
    assert.equal(a.client_addr, '127.0.0.1');
    assert.equal(a.protocol, 'HTTP/1.1');
    assert.equal(a.aborted, false);
    assert.ok((a.bytes_in as number) > 20 && (a.bytes_out as number) > 50, JSON.stringify(a));
    assert.equal(typeof a.request_time, 'number');
    assert.equal(typeof a.upstream_time, 'number');
    assert.match(a.trace_id as string, /^[0-9a-f]{32}$/);
    assert.match(a.time as string, /^\d{4}-\d\d-\d\dT/);

    const notFound = byUri.get('/nowhere')!;
    assert.equal(notFound.status, 404);
    assert.equal(notFound.route_id, '');
    assert.equal(notFound.upstream_time, null);
    assert.equal(notFound.upstream_addr, '');

    const dead = byUri.get('/dead')!;
    assert.equal(dead.status, 502);
    assert.equal(dead.route_id, 'r2');
    assert.equal(dead.upstream, 'routes/r2');
    assert.equal(dead.upstream_addr, `127.0.0.1:${deadPort}`);
    assert.equal(dead.upstream_status, 0);

    const aborted = byUri.get('/slow')!;
    assert.equal(aborted.aborted, true);
    assert.equal(aborted.status, 0);
    assert.equal(aborted.route_id, 'r3');
  });

  test('a request the gateway refuses at its head (two Host headers: 400) has its line too', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      let got = '';
      const socket = net.connect(gw.port, '127.0.0.1', () => socket.write('GET /dup-host HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n'));
      socket.on('data', (d) => (got += d.toString('latin1')));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 /);
    const line = await waitUntil(() => lines(logFile).find((l) => l.uri === '/dup-host'), 5000, 'the refused request\'s line');
    assert.equal(line.status, 400);
    assert.equal(line.route_id, '');
  });

  test('the request-id plugin\'s id is the line\'s request_id', async () => {
    const res = await fetch(`${gw.url}/id`);
    const seen = (await res.json()) as { headers: Record<string, string> };
    const id = seen.headers['x-request-id'];
    assert.ok(id);
    const line = await waitUntil(() => lines(logFile).find((l) => l.uri === '/id'), 5000, 'the /id line');
    assert.equal(line.request_id, id);
  });

  test('a traceparent goes upstream: the client\'s trace continued, or a new one', async () => {
    const client = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const res = await fetch(`${gw.url}/ok?trace=1`, { headers: { traceparent: client, tracestate: 'vendor=1' } });
    const seen = (await res.json()) as { headers: Record<string, string> };
    const [version, traceId, parent, flags] = seen.headers.traceparent!.split('-');
    assert.equal(version, '00');
    assert.equal(traceId, '0af7651916cd43dd8448eb211c80319c');
    assert.notEqual(parent, 'b7ad6b7169203331', 'the gateway\'s own span is the upstream\'s parent');
    assert.equal(flags, '01');
    assert.equal(seen.headers.tracestate, 'vendor=1');
    const fresh = (await (await fetch(`${gw.url}/ok?trace=2`)).json()) as { headers: Record<string, string> };
    assert.match(fresh.headers.traceparent!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    assert.notEqual(fresh.headers.traceparent!.split('-')[1], traceId);
    const line = await waitUntil(() => lines(logFile).find((l) => l.uri === '/ok?trace=1'), 5000, 'the traced line');
    assert.equal(line.trace_id, traceId);
  });
});

describe('request metrics', () => {
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('m', (req, res) => {
      req.resume();
      const status = Number(new URL(req.url!, 'http://x').searchParams.get('status') ?? 200);
      res.writeHead(status, { 'content-type': 'text/plain' }).end('x'.repeat(100));
    });
    gw = await startGateway({
      routes: {
        services: [{ id: 's1', upstream: { nodes: { [upstream.address]: 1 } } }],
        routes: [
          { id: 'm1', uri: '/m1', service_id: 's1' },
          { id: 'm2', uri: '/m2', upstream: { nodes: { [upstream.address]: 1 } } },
        ],
      },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  test('counts are exact after a known sequence of requests', async () => {
    for (let i = 0; i < 7; i++) await (await fetch(`${gw.url}/m1`)).text();
    for (let i = 0; i < 3; i++) await (await fetch(`${gw.url}/m1?status=503`)).text();
    for (let i = 0; i < 2; i++) await (await fetch(`${gw.url}/m2?status=404`)).text();
    for (let i = 0; i < 4; i++) await (await fetch(`${gw.url}/unrouted`)).text();
    // the access to each response is complete before the next request: counted by then
    const text = await metricsText(gw);
    assert.equal(sample(text, 'portico_http_requests_total{route="m1",service="s1",code="2xx"}'), 7);
    assert.equal(sample(text, 'portico_http_requests_total{route="m1",service="s1",code="5xx"}'), 3);
    assert.equal(sample(text, 'portico_http_requests_total{route="m2",service="",code="4xx"}'), 2);
    assert.equal(sample(text, 'portico_http_requests_total{route="",service="",code="4xx"}'), 4);
    assert.equal(sample(text, 'portico_http_request_duration_seconds_count{route="m1",service="s1",type="request"}'), 10);
    assert.equal(sample(text, 'portico_http_request_duration_seconds_count{route="m1",service="s1",type="upstream"}'), 10);
    assert.equal(sample(text, 'portico_http_request_duration_seconds_bucket{route="m1",service="s1",type="request",le="+Inf"}'), 10);
    assert.equal(sample(text, 'portico_upstream_status_total{upstream="services/s1",node="' + upstream.address + '",code="2xx"}'), 7);
    assert.equal(sample(text, 'portico_upstream_status_total{upstream="services/s1",node="' + upstream.address + '",code="5xx"}'), 3);
    assert.equal(sample(text, 'portico_upstream_status_total{upstream="routes/m2",node="' + upstream.address + '",code="4xx"}'), 2);
    const egress = sample(text, 'portico_bandwidth_bytes_total{type="egress",route="m1",service="s1"}')!;
    assert.ok(egress >= 10 * 100, `egress ${egress}`);
    // no raw paths as labels: the unrouted requests are one series
    assert.ok(!text.includes('/unrouted'));

    const traffic = (await (await fetch(`${gw.statusUrl}/status/traffic`)).json()) as TrafficSnapshot;
    const m1 = traffic.routes.find((r) => r.route === 'm1')!;
    assert.deepEqual(m1.codes, { '2xx': 7, '5xx': 3 });
    assert.equal(m1.duration.count, 10);
    const node = traffic.upstreams.find((u) => u.upstream === 'services/s1')!;
    assert.equal(node.lastError?.status, 503);
  });

  test('a route deleted from the config leaves the metrics', async () => {
    const { writeRoutes } = await import('../helpers/gateway.ts');
    writeRoutes(gw.routesPath, { services: [{ id: 's1', upstream: { nodes: { [upstream.address]: 1 } } }], routes: [{ id: 'm1', uri: '/m1', service_id: 's1' }] });
    await waitUntil(async () => (await fetch(`${gw.url}/m2`)).status === 404 || undefined, 5000, 'm2 deleted');
    // statistics are pruned a second after a change (coalesced)
    await waitUntil(async () => !(await metricsText(gw)).includes('route="m2"') || undefined, 5000, 'm2 series gone');
    assert.ok((await metricsText(gw)).includes('route="m1"'));
  });
});

describe('tracing to an OTLP receiver', () => {
  let upstream: TestUpstream;
  let receiver: OtlpReceiver;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('t');
    receiver = await startOtlpReceiver();
    gw = await startGateway({
      routes: { routes: [{ id: 't1', uri: '/t', upstream: { nodes: { [upstream.address]: 1 } } }] },
      extra: { tracing: { otlp: { endpoint: receiver.url, service_name: 'portico-test' } } },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
    await receiver?.close();
  });

  test('the upstream gets a traceparent with the trace id the receiver gets, under the gateway\'s span', async () => {
    const client = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const seen = (await (await fetch(`${gw.url}/t`, { headers: { traceparent: client } })).json()) as { headers: Record<string, string> };
    const fresh = (await (await fetch(`${gw.url}/t?new`)).json()) as { headers: Record<string, string> };
    const [, traceId, spanId] = seen.headers.traceparent!.split('-');
    const [, freshTrace, freshSpan] = fresh.headers.traceparent!.split('-');
    // the batch processor exports within its delay; a drain flushes at once
    await gw.stop();
    const spans = await receiver.waitForSpans(2, 10_000);
    const continued = spans.find((s) => s.traceId === traceId);
    assert.ok(continued, `spans: ${JSON.stringify(spans.map((s) => s.traceId))}`);
    assert.equal(traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(continued.spanId, spanId);
    assert.equal(continued.parentSpanId, '00f067aa0ba902b7');
    assert.equal(continued.kind, 2);
    assert.equal(continued.attributes['http.request.method'], 'GET');
    assert.equal(continued.attributes['http.response.status_code'], 200);
    assert.equal(continued.attributes['portico.route.id'], 't1');
    assert.equal(continued.resource['service.name'], 'portico-test');
    const root = spans.find((s) => s.traceId === freshTrace);
    assert.ok(root);
    assert.equal(root.spanId, freshSpan);
    assert.equal(root.parentSpanId, '');
  });
});

describe('access log rotation', () => {
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('r');
    gw = await startGateway({
      routes: { routes: [{ id: 'r', uri: '/r/*', upstream: { nodes: { [upstream.address]: 1 } } }] },
      extra: { log: { access: { enabled: true, path: 'access.log' } } },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  test('SIGUSR1 under load: every request in exactly one file, none lost', async () => {
    const file = path.join(gw.dir, 'access.log');
    const dispatcher = new Agent({ connections: 8 });
    let sent = 0;
    let running = true;
    const load = Promise.all(
      Array.from({ length: 8 }, async () => {
        while (running) {
          const n = sent++;
          const res = await request(`${gw.url}/r/${n}`, { dispatcher });
          assert.equal(res.statusCode, 200);
          await res.body.dump();
        }
      }),
    );
    for (let i = 1; i <= 3; i++) {
      await new Promise((r) => setTimeout(r, 300));
      renameSync(file, `${file}.${i}`);
      process.kill(gw.pid, 'SIGUSR1');
    }
    await new Promise((r) => setTimeout(r, 300));
    running = false;
    await load;
    await dispatcher.close();
    // a drain flushes what is buffered
    await gw.stop();
    const files = readdirSync(gw.dir).filter((f) => f.startsWith('access.log'));
    assert.equal(files.length, 4, files.join(','));
    const seen = new Map<string, number>();
    for (const f of files) {
      const got = lines(path.join(gw.dir, f));
      assert.ok(got.length > 0, `${f} got lines after the reopen before it`);
      for (const l of got) seen.set(l.uri as string, (seen.get(l.uri as string) ?? 0) + 1);
    }
    assert.ok(sent > 100, `only ${sent} requests`);
    for (let n = 0; n < sent; n++) assert.equal(seen.get(`/r/${n}`), 1, `/r/${n} logged once`);
    assert.equal(seen.size, sent);
  });
});

describe('request metrics with proxy.workers: 2', () => {
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('w');
    gw = await startGateway({ workers: 2, routes: { routes: [{ id: 'w1', uri: '/w', upstream: { nodes: { [upstream.address]: 1 } } }] } });
  });
  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  test('one /metrics for the instance: both workers\' counts, exact', async () => {
    // a new connection per request: the primary hands connections to the workers in turn
    const N = 40;
    for (let i = 0; i < N; i++) {
      const res = await request(`${gw.url}/w`, { reset: true });
      assert.equal(res.statusCode, 200);
      await res.body.dump();
    }
    const text = await metricsText(gw);
    assert.equal(sample(text, 'portico_http_requests_total{route="w1",service="",code="2xx"}'), N);
    assert.equal(sample(text, 'portico_upstream_status_total{upstream="routes/w1",node="' + upstream.address + '",code="2xx"}'), N);
    // each worker counted only its own: the sum is N only if both were asked
    const workers = (await gw.status()).workers ?? [];
    assert.equal(workers.length, 2);
    const traffic = (await (await fetch(`${gw.statusUrl}/status/traffic`)).json()) as TrafficSnapshot;
    assert.equal(traffic.routes.find((r) => r.route === 'w1')?.codes['2xx'], N);
  });
});

describe('access log in nginx combined format', () => {
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('c');
    gw = await startGateway({
      routes: { routes: [{ id: 'c1', uri: '/c', upstream: { nodes: { [upstream.address]: 1 } } }] },
      extra: { log: { access: { enabled: true, path: 'combined.log', format: 'combined' } }, tracing: { propagate: false } },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  test('a line as nginx writes it, Referer and User-Agent included; no traceparent with propagate: false', async () => {
    const seen = (await (await fetch(`${gw.url}/c?x="y"`, { headers: { referer: 'https://ref.example/', 'user-agent': 'curl/8.0' } })).json()) as { headers: Record<string, string> };
    assert.equal(seen.headers.traceparent, undefined);
    const file = path.join(gw.dir, 'combined.log');
    const line = await waitUntil(() => (existsSync(file) ? readFileSync(file, 'utf8').split('\n')[0] || undefined : undefined), 5000, 'a combined line');
    assert.match(line, /^127\.0\.0\.1 - - \[\d\d\/[A-Z][a-z]{2}\/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET \/c\?x=(%22y%22|\\x22y\\x22) HTTP\/1\.1" 200 \d+ "https:\/\/ref\.example\/" "curl\/8\.0"$/);
  });
});
