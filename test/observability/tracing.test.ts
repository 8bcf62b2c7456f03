import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVICE_NAME,
  ATTR_URL_PATH,
} from '@opentelemetry/semantic-conventions';
import type { ExchangeRecord } from '../../src/observability/exchange.ts';
import { exchangeRecord } from '../helpers/exchange-record.ts';
import { log } from '../../src/observability/log.ts';
import { parseTraceparent, Tracer, type RequestTrace } from '../../src/observability/tracing.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.ts';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;
const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

function parts(traceparent: string): { version: string; traceId: string; spanId: string; flags: string } {
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(traceparent);
  assert.ok(m, `well-formed traceparent: ${traceparent}`);
  return { version: m[1]!, traceId: m[2]!, spanId: m[3]!, flags: m[4]! };
}

/** A finished request as the transports would record it; `over` sets what a test cares about. */
function record(trace: RequestTrace, start: number, over: Partial<ExchangeRecord> = {}): ExchangeRecord {
  return exchangeRecord({
    time: Date.now(),
    start,
    duration: 0.0125,
    clientAddress: '127.0.0.7',
    clientPort: 50123,
    host: 'api.example.com:9080',
    uri: '/orders/42?expand=items',
    bytesIn: 120,
    bytesOut: 345,
    routeId: 'orders',
    serviceId: 'shop',
    upstream: 'upstreams/orders',
    upstreamAddr: '127.0.0.1:9081',
    upstreamStatus: 200,
    upstreamDuration: 0.01,
    consumer: 'jack',
    requestId: 'req-1',
    traceId: trace.traceId,
    ...over,
  });
}

describe('traceparent parsing (W3C Trace Context level 1)', () => {
  const cases: Array<[string, string | undefined, boolean]> = [
    ['valid, sampled', VALID, true],
    ['valid, not sampled', `00-${TRACE}-${PARENT}-00`, true],
    ['valid, unknown flag bits', `00-${TRACE}-${PARENT}-09`, true],
    ['absent', undefined, false],
    ['empty', '', false],
    ['upper-case trace id', `00-${TRACE.toUpperCase()}-${PARENT}-01`, false],
    ['upper-case parent id', `00-${TRACE}-00F067AA0BA902B7-01`, false],
    ['upper-case flags', `00-${TRACE}-${PARENT}-0A`, false],
    ['upper-case version', `0A-${TRACE}-${PARENT}-01`, false],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`, false],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`, false],
    ['version ff', `ff-${TRACE}-${PARENT}-01`, false],
    ['future version, exact fields', `01-${TRACE}-${PARENT}-01`, true],
    ['future version with extra fields', `cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like`, true],
    ['future version, extra without a dash', `cc-${TRACE}-${PARENT}-01what`, false],
    ['version 00 with extra fields', `00-${TRACE}-${PARENT}-01-extra`, false],
    ['version 00 with a trailing character', `${VALID}0`, false],
    ['trace id 31 hex', `00-${TRACE.slice(1)}-${PARENT}-01`, false],
    ['trace id 33 hex', `00-${TRACE}0-${PARENT}-01`, false],
    ['parent id 15 hex', `00-${TRACE}-${PARENT.slice(1)}-01`, false],
    ['parent id 17 hex', `00-${TRACE}-${PARENT}0-01`, false],
    ['flags 1 hex', `00-${TRACE}-${PARENT}-1`, false],
    ['flags not hex', `00-${TRACE}-${PARENT}-zz`, false],
    ['wrong separator', `00_${TRACE}_${PARENT}_01`, false],
    ['garbage of the right length', 'x'.repeat(55), false],
    ['garbage', 'hello', false],
    ['leading space', ` ${VALID}`, false],
  ];

  for (const [name, value, valid] of cases) {
    test(`${name} → ${valid ? 'continue the trace' : 'new trace'}`, async () => {
      const parsed = parseTraceparent(value);
      assert.equal(parsed !== undefined, valid, `parseTraceparent(${JSON.stringify(value)})`);
      const tracer = await Tracer.create({ propagate: true });
      const trace = tracer.begin(value, 'vendor=abc,other=1', performance.now());
      const p = parts(trace.traceparent);
      assert.equal(p.version, '00');
      if (valid) {
        assert.equal(trace.traceId, TRACE);
        assert.equal(p.traceId, TRACE);
        assert.equal(trace.tracestate, 'vendor=abc,other=1', 'tracestate passed on unchanged');
      } else {
        assert.notEqual(trace.traceId, TRACE);
        assert.equal(trace.tracestate, undefined, 'tracestate dropped with an invalid traceparent');
        assert.equal(p.flags, '00');
      }
      assert.notEqual(p.spanId, PARENT);
    });
  }

  test('parsed fields', () => {
    assert.deepEqual(parseTraceparent(`cc-${TRACE}-${PARENT}-01-future`), { traceId: TRACE, parentId: PARENT, flags: 1 });
    assert.deepEqual(parseTraceparent(`00-${TRACE}-${PARENT}-ff`), { traceId: TRACE, parentId: PARENT, flags: 0xff });
  });
});

describe('propagate-only tracer', () => {
  test('a new trace per request: 32-hex trace id, 16-hex span id, flags 00', async () => {
    const tracer = await Tracer.create({ propagate: true });
    assert.equal(tracer.propagate, true);
    const traceIds = new Set<string>();
    const spanIds = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const trace = tracer.begin(undefined, undefined, performance.now());
      const p = parts(trace.traceparent);
      assert.match(trace.traceId, HEX32);
      assert.match(p.spanId, HEX16);
      assert.equal(p.traceId, trace.traceId);
      assert.equal(p.flags, '00');
      assert.equal(trace.tracestate, undefined);
      traceIds.add(trace.traceId);
      spanIds.add(p.spanId);
    }
    // 500 × (16 + 8) bytes crosses the 4 KiB pool refill several times
    assert.equal(traceIds.size, 500);
    assert.equal(spanIds.size, 500);
  });

  test("the client's trace continues with the gateway's own span id; sampled and random flags kept, others zeroed", async () => {
    const tracer = await Tracer.create({ propagate: false });
    assert.equal(tracer.propagate, false);
    const seen = new Set<string>();
    for (const [flags, sent] of [['01', '01'], ['00', '00'], ['03', '03'], ['09', '01'], ['ff', '03']]) {
      const trace = tracer.begin(`00-${TRACE}-${PARENT}-${flags}`, undefined, performance.now());
      const p = parts(trace.traceparent);
      assert.equal(p.traceId, TRACE);
      assert.notEqual(p.spanId, PARENT, "the upstream's parent is the gateway, not the client");
      assert.equal(p.flags, sent, `client flags ${flags}`);
      seen.add(p.spanId);
    }
    assert.equal(seen.size, 5, 'a new span id per request');
  });

  test('does not load the OpenTelemetry SDK (checked in a fresh process; the same check sees it once exporting)', async () => {
    const tracingUrl = new URL('../../src/observability/tracing.ts', import.meta.url).href;
    const script = `
      import { createRequire } from 'node:module';
      const { Tracer } = await import(${JSON.stringify(tracingUrl)});
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('@opentelemetry')).length;
      const t = await Tracer.create({ propagate: true });
      t.begin(undefined, undefined, performance.now());
      const before = loaded();
      const e = await Tracer.create({ propagate: true, otlp: { endpoint: 'http://127.0.0.1:9/v1/traces', service_name: 's', sample_ratio: 0 } });
      await e.shutdown();
      console.log(JSON.stringify({ before, after: loaded() }));
    `;
    const cwd = fileURLToPath(new URL('../..', import.meta.url));
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        { cwd, timeout: 60_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)),
      );
    });
    const { before: loadedBefore, after: loadedAfter } = JSON.parse(out.trim().split('\n').pop()!) as { before: number; after: number };
    assert.equal(loadedBefore, 0, 'no @opentelemetry module loaded in propagate-only mode');
    assert.ok(loadedAfter > 0, 'the check does see the SDK once an exporting tracer is created');
  });

  test('rejects a bad otlp config at create', async () => {
    await assert.rejects(
      Tracer.create({ propagate: true, otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces', service_name: 's', sample_ratio: 1.5 } }),
      /sample_ratio/,
    );
    await assert.rejects(
      Tracer.create({ propagate: true, otlp: { endpoint: 'not a url', service_name: 's', sample_ratio: 1 } }),
      /endpoint/,
    );
  });
});

describe('OTLP export', () => {
  let receiver: OtlpReceiver;
  before(async () => {
    receiver = await startOtlpReceiver();
  });
  after(async () => {
    await receiver.close();
  });

  test('one SERVER span per request, in the trace sent upstream, parented on the client; shutdown flushes', async () => {
    receiver.spans.length = 0;
    const tracer = await Tracer.create(
      { propagate: true, otlp: { endpoint: receiver.url, service_name: 'portico-test', sample_ratio: 1, timeout_ms: 5000 } },
      { instanceId: 'worker-1' },
    );
    const t0 = performance.now();
    const a = tracer.begin(VALID, 'vendor=abc', t0);
    const b = tracer.begin(undefined, undefined, t0 + 1);
    const c = tracer.begin(`00-${TRACE}-${'1'.repeat(16)}-01`, undefined, t0 + 2);
    tracer.end(a, record(a, t0));
    tracer.end(b, record(b, t0 + 1, { method: 'POST', routeId: '', serviceId: '', upstream: '', upstreamAddr: '', upstreamStatus: 0, upstreamDuration: -1, status: 404, consumer: '', uri: '/nowhere' }));
    tracer.end(c, record(c, t0 + 2, { status: 502, upstreamStatus: 0, failedAttempts: [{ addr: '127.0.0.1:9082', status: 0 }] }));
    assert.equal(receiver.spans.length, 0, 'batched, not sent per span');
    await tracer.shutdown();
    assert.equal(receiver.spans.length, 3, 'shutdown() flushed all three');

    const byId = new Map(receiver.spans.map((s) => [s.spanId, s]));
    for (const trace of [a, b, c]) {
      const p = parts(trace.traceparent);
      assert.equal(p.flags, '01');
      const span = byId.get(p.spanId);
      assert.ok(span, "the span's id is the parent id sent upstream");
      assert.equal(span.traceId, trace.traceId);
      assert.equal(span.kind, 2, 'SERVER');
      assert.equal(span.resource[ATTR_SERVICE_NAME], 'portico-test');
      assert.equal(span.resource['service.instance.id'], 'worker-1');
    }

    const sa = byId.get(parts(a.traceparent).spanId)!;
    assert.equal(sa.traceId, TRACE);
    assert.equal(sa.parentSpanId, PARENT);
    assert.equal(sa.traceState, 'vendor=abc');
    assert.equal(sa.name, 'GET orders');
    assert.deepEqual(sa.status, { code: 0 });
    assert.deepEqual(sa.attributes, {
      [ATTR_HTTP_REQUEST_METHOD]: 'GET',
      [ATTR_URL_PATH]: '/orders/42',
      [ATTR_SERVER_ADDRESS]: 'api.example.com',
      [ATTR_CLIENT_ADDRESS]: '127.0.0.7',
      [ATTR_NETWORK_PROTOCOL_VERSION]: '1.1',
      [ATTR_HTTP_RESPONSE_STATUS_CODE]: 200,
      'http.request.size': 120,
      'http.response.size': 345,
      'portico.route.id': 'orders',
      'portico.service.id': 'shop',
      'portico.upstream': 'upstreams/orders',
      'portico.upstream.address': '127.0.0.1:9081',
      'portico.upstream.status': 200,
      'portico.upstream.duration': 0.01,
      'portico.consumer': 'jack',
      'portico.request_id': 'req-1',
    });
    // start = the request head (performance.now() mapped to wall time), end = start + duration
    const startMs = Number(BigInt(sa.startTimeUnixNano) / 1000n) / 1000;
    assert.ok(Math.abs(startMs - (performance.timeOrigin + t0)) < 50, `start ${startMs} vs head ${performance.timeOrigin + t0}`);
    const durationNs = Number(BigInt(sa.endTimeUnixNano) - BigInt(sa.startTimeUnixNano));
    assert.ok(Math.abs(durationNs - 12_500_000) < 2_000, `duration ${durationNs} ns`);

    const sb = byId.get(parts(b.traceparent).spanId)!;
    assert.equal(sb.parentSpanId, '', 'a new trace: the gateway span is the root');
    assert.notEqual(sb.traceId, TRACE);
    assert.equal(sb.name, 'POST');
    assert.equal(sb.attributes[ATTR_HTTP_RESPONSE_STATUS_CODE], 404);
    assert.equal(sb.attributes['portico.route.id'], undefined);
    assert.equal(sb.attributes['portico.upstream.status'], undefined, 'no upstream was tried');
    assert.deepEqual(sb.status, { code: 0 }, '4xx is not a server error');

    const sc = byId.get(parts(c.traceparent).spanId)!;
    assert.equal(sc.parentSpanId, '1'.repeat(16));
    assert.equal(sc.status.code, 2, '5xx: ERROR');
    assert.equal(sc.attributes['error.type'], '502');
    assert.equal(sc.attributes['portico.upstream.attempts'], 2);
  });

  test('exports on its own schedule, without shutdown', async () => {
    receiver.spans.length = 0;
    const tracer = await Tracer.create({ propagate: true, otlp: { endpoint: receiver.url, service_name: 'portico-test', sample_ratio: 1 } });
    try {
      const t0 = performance.now();
      const trace = tracer.begin(undefined, undefined, t0);
      tracer.end(trace, record(trace, t0, { status: 0, aborted: true, upstreamStatus: 0 }));
      const [span] = await receiver.waitForSpans(1, 10_000);
      assert.equal(span!.traceId, trace.traceId);
      assert.equal(span!.status.code, 2, 'no response sent: ERROR');
      assert.equal(span!.attributes['error.type'], 'client_aborted');
      assert.equal(span!.attributes[ATTR_HTTP_RESPONSE_STATUS_CODE], undefined);
    } finally {
      await tracer.shutdown();
    }
  });

  test("sampling: ratio 0 exports no new trace but follows a client's sampled flag; a client's 00 is not exported at ratio 1", async () => {
    receiver.spans.length = 0;
    const never = await Tracer.create({ propagate: true, otlp: { endpoint: receiver.url, service_name: 'portico-test', sample_ratio: 0 } });
    const t0 = performance.now();
    const unsampled: RequestTrace[] = [];
    for (let i = 0; i < 20; i++) {
      const trace = never.begin(undefined, undefined, t0);
      assert.equal(parts(trace.traceparent).flags, '00', 'the upstream is told the gateway did not record');
      assert.match(trace.traceId, HEX32);
      never.end(trace, record(trace, t0));
      unsampled.push(trace);
    }
    const followed = never.begin(VALID, undefined, t0);
    assert.equal(parts(followed.traceparent).flags, '01');
    never.end(followed, record(followed, t0));
    await never.shutdown();

    const always = await Tracer.create({ propagate: true, otlp: { endpoint: receiver.url, service_name: 'portico-test', sample_ratio: 1 } });
    const declined = always.begin(`00-${TRACE}-${PARENT}-00`, undefined, t0);
    const dp = parts(declined.traceparent);
    assert.equal(dp.flags, '00');
    assert.equal(dp.traceId, TRACE);
    assert.notEqual(dp.spanId, PARENT);
    always.end(declined, record(declined, t0));
    await always.shutdown();

    assert.equal(receiver.spans.length, 1, 'only the span of the sampled client trace');
    assert.equal(receiver.spans[0]!.spanId, parts(followed.traceparent).spanId);
    assert.equal(receiver.spans[0]!.parentSpanId, PARENT);
  });

  test('receiver down: end() does not throw, shutdown() resolves in bounded time, the failure is logged once per 30 s', async () => {
    // a port that was just free: connections are refused
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));

    const warnings: unknown[][] = [];
    const originalWarn = log.warn;
    log.warn = ((...args: unknown[]) => {
      warnings.push(args);
    }) as typeof log.warn;
    try {
      const tracer = await Tracer.create({
        propagate: true,
        otlp: { endpoint: `http://127.0.0.1:${port}/v1/traces`, service_name: 'portico-test', sample_ratio: 1, timeout_ms: 1000 },
      });
      const t0 = performance.now();
      for (let i = 0; i < 5; i++) {
        const trace = tracer.begin(undefined, undefined, t0);
        assert.doesNotThrow(() => tracer.end(trace, record(trace, t0)));
      }
      // the scheduled export (1 s) fails after its 1 s timeout: the first warning
      const deadline = Date.now() + 8000;
      while (warnings.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(warnings.length, 1, 'the first failed export is logged');
      for (let i = 0; i < 5; i++) {
        const trace = tracer.begin(VALID, undefined, t0);
        tracer.end(trace, record(trace, t0));
      }
      const started = performance.now();
      await tracer.shutdown();
      const took = performance.now() - started;
      assert.ok(took < 4000, `shutdown took ${took} ms`);
      assert.equal(warnings.length, 1, 'the second failure within 30 s is counted, not logged: ' + JSON.stringify(warnings));
      const [fields, message] = warnings[0]! as [Record<string, unknown>, string];
      assert.match(message, /OTLP export failed/);
      assert.equal(fields.lostSpans, 5);
      assert.equal(fields.endpoint, `http://127.0.0.1:${port}/v1/traces`);
    } finally {
      log.warn = originalWarn;
    }
  });
  test('receiver that never answers: shutdown() resolves within about timeout_ms', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => {
      sockets.add(socket);
      socket.resume(); // read the export, answer nothing
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const port = (silent.address() as AddressInfo).port;
    const originalWarn = log.warn;
    let warned = 0;
    log.warn = (() => {
      warned++;
    }) as typeof log.warn;
    try {
      const tracer = await Tracer.create({
        propagate: true,
        otlp: { endpoint: `http://127.0.0.1:${port}/v1/traces`, service_name: 'portico-test', sample_ratio: 1, timeout_ms: 500 },
      });
      const t0 = performance.now();
      const trace = tracer.begin(undefined, undefined, t0);
      tracer.end(trace, record(trace, t0));
      const started = performance.now();
      await tracer.shutdown();
      const took = performance.now() - started;
      assert.ok(took < 3000, `shutdown took ${took} ms`);
      assert.ok(sockets.size >= 1, 'the export did reach the silent receiver');
    } finally {
      log.warn = originalWarn;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
    assert.ok(warned <= 1);
  });
});
