import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Registry, type OpenMetricsContentType } from 'prom-client';
import type { ExchangeRecord, TrafficSnapshot } from '../../src/observability/exchange.ts';
import { exchangeRecord } from '../helpers/exchange-record.ts';
import { DEFAULT_BUCKETS, mergeTraffic, registerTrafficMetrics, TrafficStats } from '../../src/observability/traffic.ts';

const record = exchangeRecord;

const BUCKETS = [0.1, 0.5, 1];

/**
 * A known sequence: route r1 (no service) through upstreams/u1 with a retry, route r2 of service s1
 * then s2 then s1 again through an inline upstream, and one unmatched request.
 */
function knownSequence(): ExchangeRecord[] {
  return [
    // exactly on the 0.1 bound: counted in the le="0.1" bucket
    record({ routeId: 'r1', status: 200, duration: 0.1, upstreamDuration: 0.05, bytesIn: 100, bytesOut: 1000, upstream: 'upstreams/u1', upstreamAddr: '10.0.0.1:80', upstreamStatus: 200 }),
    record({ routeId: 'r1', status: 201, duration: 0.3, upstreamDuration: 0.2, bytesIn: 110, bytesOut: 900, upstream: 'upstreams/u1', upstreamAddr: '10.0.0.2:80', upstreamStatus: 201 }),
    // a retry: 10.0.0.2 failed without a response, then 10.0.0.1 answered 503; 2 s is past every bound
    record({
      time: 1_700_000_000_500,
      routeId: 'r1',
      status: 503,
      duration: 2,
      upstreamDuration: 1,
      bytesIn: 120,
      bytesOut: 300,
      upstream: 'upstreams/u1',
      upstreamAddr: '10.0.0.1:80',
      upstreamStatus: 503,
      failedAttempts: [{ addr: '10.0.0.2:80', status: 0 }],
    }),
    // answered by a plugin: no upstream
    record({ routeId: 'r2', serviceId: 's1', status: 404, duration: 0.5, bytesIn: 50, bytesOut: 60 }),
    // the client left before the response: status 0, and the node gave no answer either
    record({ time: 1_700_000_000_900, routeId: 'r2', serviceId: 's1', status: 0, duration: 1, upstreamDuration: 0.7, bytesIn: 70, bytesOut: 0, upstream: 'routes/r2', upstreamAddr: '10.0.0.3:80', upstreamStatus: 0 }),
    record({ routeId: '', status: 404, duration: 0.001, bytesIn: 30, bytesOut: 40 }),
    // r2 moved to service s2, then back to s1
    record({ routeId: 'r2', serviceId: 's2', status: 200, duration: 0.05, upstreamDuration: 0.04, bytesIn: 10, bytesOut: 20, upstream: 'routes/r2', upstreamAddr: '10.0.0.3:80', upstreamStatus: 200 }),
    record({ routeId: 'r2', serviceId: 's1', status: 302, duration: 0.6, upstreamDuration: 0.55, bytesIn: 5, bytesOut: 6, upstream: 'routes/r2', upstreamAddr: '10.0.0.3:80', upstreamStatus: 302 }),
  ];
}

function byKey<T extends { route?: string; service?: string; upstream?: string; node?: string }>(list: T[]): T[] {
  const key = (t: T) => JSON.stringify([t.route ?? t.upstream, t.service ?? t.node]);
  return [...list].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

describe('TrafficStats', () => {
  it('counts a known sequence exactly: codes, histograms (le semantics), bytes, nodes, retries, last errors', () => {
    const stats = new TrafficStats({ buckets: BUCKETS });
    for (const r of knownSequence()) stats.finished(r);
    const s = stats.snapshot(3);
    assert.deepEqual(s.buckets, BUCKETS);
    assert.equal(s.connections, 3);
    assert.ok(Math.abs(s.at - Date.now()) < 5000);
    assert.deepEqual(
      byKey(s.routes).map((r) => ({ ...r, duration: { ...r.duration, sum: round(r.duration.sum) }, upstreamDuration: { ...r.upstreamDuration, sum: round(r.upstreamDuration.sum) } })),
      [
        { route: '', service: '', codes: { '4xx': 1 }, duration: { counts: [1, 0, 0, 0], sum: 0.001, count: 1 }, upstreamDuration: { counts: [0, 0, 0, 0], sum: 0, count: 0 }, bytesIn: 30, bytesOut: 40 },
        {
          route: 'r1',
          service: '',
          codes: { '2xx': 2, '5xx': 1 },
          duration: { counts: [1, 1, 0, 1], sum: 2.4, count: 3 },
          upstreamDuration: { counts: [1, 1, 1, 0], sum: 1.25, count: 3 },
          bytesIn: 330,
          bytesOut: 2200,
        },
        {
          route: 'r2',
          service: 's1',
          codes: { '000': 1, '3xx': 1, '4xx': 1 },
          duration: { counts: [0, 1, 2, 0], sum: 2.1, count: 3 },
          upstreamDuration: { counts: [0, 0, 2, 0], sum: 1.25, count: 2 },
          bytesIn: 125,
          bytesOut: 66,
        },
        { route: 'r2', service: 's2', codes: { '2xx': 1 }, duration: { counts: [1, 0, 0, 0], sum: 0.05, count: 1 }, upstreamDuration: { counts: [1, 0, 0, 0], sum: 0.04, count: 1 }, bytesIn: 10, bytesOut: 20 },
      ],
    );
    assert.deepEqual(byKey(s.upstreams), [
      { upstream: 'routes/r2', node: '10.0.0.3:80', codes: { '000': 1, '2xx': 1, '3xx': 1 }, lastError: { at: 1_700_000_000_900, status: 0, route: 'r2' } },
      { upstream: 'upstreams/u1', node: '10.0.0.1:80', codes: { '2xx': 1, '5xx': 1 }, lastError: { at: 1_700_000_000_500, status: 503, route: 'r1' } },
      { upstream: 'upstreams/u1', node: '10.0.0.2:80', codes: { '000': 1, '2xx': 1 }, lastError: { at: 1_700_000_000_500, status: 0, route: 'r1' } },
    ]);
    assert.equal(stats.overflowed, 0);
    // a snapshot is plain JSON
    assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
  });

  it('uses the default buckets, and a value on each bound lands in that bound\'s bucket', () => {
    const stats = new TrafficStats();
    assert.deepEqual(stats.buckets, [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
    assert.deepEqual([...DEFAULT_BUCKETS], stats.buckets);
    for (const b of DEFAULT_BUCKETS) stats.finished(record({ routeId: 'r', duration: b }));
    stats.finished(record({ routeId: 'r', duration: 61 }));
    stats.finished(record({ routeId: 'r', duration: 60.000001 }));
    const [r] = stats.snapshot(0).routes;
    assert.deepEqual(r!.duration.counts, [...DEFAULT_BUCKETS.map(() => 1), 2]);
    assert.equal(r!.duration.count, DEFAULT_BUCKETS.length + 2);
  });

  it('rejects bad buckets and caps', () => {
    assert.throws(() => new TrafficStats({ buckets: [] }), TypeError);
    assert.throws(() => new TrafficStats({ buckets: [0.5, 0.1] }), TypeError);
    assert.throws(() => new TrafficStats({ buckets: [0.1, 0.1] }), TypeError);
    assert.throws(() => new TrafficStats({ buckets: [0.1, Infinity] }), TypeError);
    assert.throws(() => new TrafficStats({ maxRoutes: -1 }), TypeError);
    assert.throws(() => new TrafficStats({ maxNodes: 1.5 }), TypeError);
  });

  it('folds routes past maxRoutes into _other and nodes past maxNodes into _other of their upstream', () => {
    const stats = new TrafficStats({ buckets: BUCKETS, maxRoutes: 2, maxNodes: 2 });
    const up = (routeId: string, upstream: string, addr: string, status = 200) =>
      stats.finished(record({ routeId, status, upstream, upstreamAddr: addr, upstreamStatus: status, upstreamDuration: 0.01, bytesIn: 1, bytesOut: 2 }));
    up('a', 'upstreams/1', 'n1:80');
    up('b', 'upstreams/1', 'n2:80');
    up('c', 'upstreams/1', 'n3:80', 502); // route and node over the caps
    up('d', 'upstreams/2', 'n1:80'); // another upstream: its node is over the cap too
    up('a', 'upstreams/1', 'n1:80'); // existing entries still count as themselves
    up('b', 'upstreams/1', 'n3:80', 500);
    stats.finished(record({ routeId: '', status: 404 })); // unmatched: never folded
    stats.finished(record({ routeId: 'a', serviceId: 's9', status: 200 })); // a new (route, service) entry is over the cap
    const s = stats.snapshot(0);
    assert.deepEqual(
      byKey(s.routes).map((r) => [r.route, r.service, r.codes, r.bytesIn]),
      [
        ['', '', { '4xx': 1 }, 0],
        ['_other', '', { '2xx': 2, '5xx': 1 }, 2],
        ['a', '', { '2xx': 2 }, 2],
        ['b', '', { '2xx': 1, '5xx': 1 }, 2],
      ],
    );
    assert.deepEqual(
      byKey(s.upstreams).map((n) => [n.upstream, n.node, n.codes, n.lastError?.status]),
      [
        ['upstreams/1', '_other', { '5xx': 2 }, 500],
        ['upstreams/1', 'n1:80', { '2xx': 2 }, undefined],
        ['upstreams/1', 'n2:80', { '2xx': 1 }, undefined],
        ['upstreams/2', '_other', { '2xx': 1 }, undefined],
      ],
    );
    assert.equal(stats.overflowedRequests, 3);
    assert.equal(stats.overflowedAttempts, 3);
    assert.equal(stats.overflowed, 6);
  });

  it('retain() forgets removed routes and upstreams (not the unmatched or _other entries) and makes room under the caps', () => {
    const stats = new TrafficStats({ buckets: BUCKETS, maxRoutes: 2, maxNodes: 2 });
    const up = (routeId: string, upstream: string, addr: string) =>
      stats.finished(record({ routeId, status: 200, upstream, upstreamAddr: addr, upstreamStatus: 200, upstreamDuration: 0.01 }));
    up('a', 'upstreams/1', 'n1:80');
    up('b', 'upstreams/2', 'n1:80');
    up('c', 'upstreams/2', 'n2:80'); // folded: route _other, node _other of upstreams/2
    stats.finished(record({ routeId: 'b', serviceId: 's1' })); // folded too (a third entry)
    stats.finished(record({ routeId: '', status: 404 }));
    stats.retain(new Set(['a', 'c']), (key) => key !== 'upstreams/2');
    let s = stats.snapshot(0);
    assert.deepEqual(byKey(s.routes).map((r) => r.route), ['', '_other', 'a']);
    assert.deepEqual(byKey(s.upstreams).map((n) => [n.upstream, n.node]), [['upstreams/1', 'n1:80']]);
    // room again: c and another node get their own entries
    up('c', 'upstreams/1', 'n2:80');
    up('d', 'upstreams/1', 'n3:80'); // over the caps again
    s = stats.snapshot(0);
    assert.deepEqual(byKey(s.routes).map((r) => [r.route, r.codes]), [
      ['', { '4xx': 1 }],
      ['_other', { '2xx': 3 }],
      ['a', { '2xx': 1 }],
      ['c', { '2xx': 1 }],
    ]);
    assert.deepEqual(byKey(s.upstreams).map((n) => [n.upstream, n.node, n.codes]), [
      ['upstreams/1', '_other', { '2xx': 1 }],
      ['upstreams/1', 'n1:80', { '2xx': 1 }],
      ['upstreams/1', 'n2:80', { '2xx': 1 }],
    ]);
    // routes only: upstreams untouched; a predicate works as well as a set
    stats.retain(() => false);
    s = stats.snapshot(0);
    assert.deepEqual(byKey(s.routes).map((r) => r.route), ['', '_other']);
    assert.equal(s.upstreams.length, 3);
  });
});

describe('mergeTraffic', () => {
  it('sums two workers exactly: the same as one process that saw every request', () => {
    const all = knownSequence();
    const w1 = new TrafficStats({ buckets: BUCKETS });
    const w2 = new TrafficStats({ buckets: BUCKETS });
    const one = new TrafficStats({ buckets: BUCKETS });
    all.forEach((r, i) => {
      (i % 2 === 0 ? w1 : w2).finished(r);
      one.finished(r);
    });
    // both workers serve r1 through 10.0.0.1 later; w1's error is the latest of that node
    const late = record({ time: 1_700_000_009_000, routeId: 'r1', status: 502, duration: 0.2, upstreamDuration: 0.1, upstream: 'upstreams/u1', upstreamAddr: '10.0.0.1:80', upstreamStatus: 502 });
    const earlier = record({ ...late, time: 1_700_000_008_000, status: 500, upstreamStatus: 500 });
    w2.finished(earlier);
    one.finished(earlier);
    w1.finished(late);
    one.finished(late);

    const p1 = w1.snapshot(2);
    const p2 = w2.snapshot(5);
    p1.at = 1000;
    p2.at = 2000;
    const p1Copy = structuredClone(p1);
    const merged = mergeTraffic([p1, p2]);
    assert.deepEqual(p1, p1Copy, 'the parts are not modified');
    const expected = one.snapshot(7);
    assert.equal(merged.at, 2000);
    assert.equal(merged.connections, 7);
    assert.deepEqual(merged.buckets, BUCKETS);
    const noSums = (s: TrafficSnapshot) =>
      byKey(s.routes).map((r) => ({ ...r, duration: { ...r.duration, sum: round(r.duration.sum) }, upstreamDuration: { ...r.upstreamDuration, sum: round(r.upstreamDuration.sum) } }));
    assert.deepEqual(noSums(merged), noSums(expected));
    assert.deepEqual(byKey(merged.upstreams), byKey(expected.upstreams));
    assert.deepEqual(merged.upstreams.find((n) => n.node === '10.0.0.1:80')!.lastError, { at: 1_700_000_009_000, status: 502, route: 'r1' });
    // merging a merge with nothing changes nothing
    assert.deepEqual(mergeTraffic([merged]), merged);
  });

  it('refuses parts with different buckets; no parts is an empty snapshot', () => {
    const a = new TrafficStats({ buckets: [0.1, 1] }).snapshot(0);
    const b = new TrafficStats({ buckets: [0.1, 2] }).snapshot(0);
    assert.throws(() => mergeTraffic([a, b]), /different buckets/);
    const empty = mergeTraffic([]);
    assert.deepEqual([empty.routes, empty.upstreams, empty.connections], [[], [], 0]);
  });
});

/** name{labels} value, labels as Prometheus text format 0.0.4 writes them (escaped \\ \" \n) */
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})? (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g;

interface Line {
  name: string;
  labels: Record<string, string>;
  value: number;
}
function parseExposition(text: string): Line[] {
  const lines: Line[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      assert.match(line, /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$/);
      continue;
    }
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a valid sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    lines.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return lines;
}

/** For every histogram series: buckets cumulative in le order, le="+Inf" equal to _count. */
function checkHistograms(lines: Line[], name: string): number {
  const series = new Map<string, Array<{ le: number; value: number }>>();
  const counts = new Map<string, number>();
  const key = (labels: Record<string, string>) => JSON.stringify(Object.entries(labels).filter(([k]) => k !== 'le').sort());
  for (const l of lines) {
    if (l.name === `${name}_bucket`) {
      const k = key(l.labels);
      if (!series.has(k)) series.set(k, []);
      series.get(k)!.push({ le: l.labels.le === '+Inf' ? Infinity : Number(l.labels.le), value: l.value });
    } else if (l.name === `${name}_count`) counts.set(key(l.labels), l.value);
  }
  for (const [k, buckets] of series) {
    for (let i = 1; i < buckets.length; i++) {
      assert.ok(buckets[i]!.le > buckets[i - 1]!.le, `le increasing in ${k}`);
      assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, `cumulative buckets in ${k}`);
    }
    assert.equal(buckets.at(-1)!.le, Infinity, `last bucket of ${k} is +Inf`);
    assert.equal(buckets.at(-1)!.value, counts.get(k), `+Inf bucket of ${k} equals _count`);
  }
  assert.equal(series.size, counts.size);
  return series.size;
}

describe('registerTrafficMetrics', () => {
  it('exposes a known sequence as valid Prometheus text, one snapshot per scrape; retained-away routes leave the next scrape', async () => {
    const stats = new TrafficStats({ buckets: BUCKETS });
    for (const r of knownSequence()) stats.finished(r);
    stats.finished(record({ routeId: 'we"ird\\id', status: 200, duration: 0.2 }));
    let calls = 0;
    const registry = new Registry();
    registerTrafficMetrics(registry, () => {
      calls++;
      return stats.snapshot(4);
    });

    const text = await registry.metrics();
    assert.equal(calls, 1, 'one snapshot for the whole scrape');
    const has = (line: string) => assert.ok(text.split('\n').includes(line), `missing line: ${line}\n${text}`);
    has('# TYPE portico_http_requests_total counter');
    has('portico_http_requests_total{route="r1",service="",code="2xx"} 2');
    has('portico_http_requests_total{route="r1",service="",code="5xx"} 1');
    has('portico_http_requests_total{route="r2",service="s1",code="000"} 1');
    has('portico_http_requests_total{route="r2",service="s1",code="3xx"} 1');
    has('portico_http_requests_total{route="r2",service="s1",code="4xx"} 1');
    has('portico_http_requests_total{route="r2",service="s2",code="2xx"} 1');
    has('portico_http_requests_total{route="",service="",code="4xx"} 1');
    has('portico_http_requests_total{route="we\\"ird\\\\id",service="",code="2xx"} 1');
    has('# TYPE portico_http_request_duration_seconds histogram');
    has('portico_http_request_duration_seconds_bucket{route="r1",service="",type="request",le="0.1"} 1');
    has('portico_http_request_duration_seconds_bucket{route="r1",service="",type="request",le="0.5"} 2');
    has('portico_http_request_duration_seconds_bucket{route="r1",service="",type="request",le="1"} 2');
    has('portico_http_request_duration_seconds_bucket{route="r1",service="",type="request",le="+Inf"} 3');
    has('portico_http_request_duration_seconds_count{route="r1",service="",type="request"} 3');
    has('portico_http_request_duration_seconds_sum{route="r1",service="",type="request"} 2.4');
    has('portico_http_request_duration_seconds_bucket{route="r1",service="",type="upstream",le="0.1"} 1');
    has('portico_http_request_duration_seconds_bucket{route="r1",service="",type="upstream",le="0.5"} 2');
    has('portico_http_request_duration_seconds_bucket{route="r1",service="",type="upstream",le="1"} 3');
    has('portico_http_request_duration_seconds_count{route="r1",service="",type="upstream"} 3');
    has('portico_http_request_duration_seconds_count{route="r2",service="s1",type="upstream"} 2');
    has('# TYPE portico_bandwidth_bytes_total counter');
    has('portico_bandwidth_bytes_total{type="ingress",route="r1",service=""} 330');
    has('portico_bandwidth_bytes_total{type="egress",route="r1",service=""} 2200');
    has('portico_bandwidth_bytes_total{type="egress",route="r2",service="s1"} 66');
    has('# TYPE portico_upstream_status_total counter');
    has('portico_upstream_status_total{upstream="upstreams/u1",node="10.0.0.1:80",code="2xx"} 1');
    has('portico_upstream_status_total{upstream="upstreams/u1",node="10.0.0.1:80",code="5xx"} 1');
    has('portico_upstream_status_total{upstream="upstreams/u1",node="10.0.0.2:80",code="000"} 1');
    has('portico_upstream_status_total{upstream="routes/r2",node="10.0.0.3:80",code="3xx"} 1');
    has('# TYPE portico_http_connections gauge');
    has('portico_http_connections 4');

    const lines = parseExposition(text);
    // type=request for all 5 (route, service); type=upstream only for the 3 that reached an upstream
    assert.equal(checkHistograms(lines, 'portico_http_request_duration_seconds'), 8);
    assert.ok(lines.some((l) => l.labels.route === 'we"ird\\id'), 'label values are escaped and read back');
    assert.equal(lines.filter((l) => l.name === 'portico_http_requests_total').length, 8);

    stats.retain(new Set(['r1']));
    const after = await registry.metrics();
    assert.equal(calls, 2);
    const afterLines = parseExposition(after);
    assert.ok(!after.includes('route="r2"'), 'no series of a retained-away route');
    assert.ok(!after.includes('we\\"ird'));
    assert.ok(afterLines.some((l) => l.name === 'portico_http_requests_total' && l.labels.route === 'r1'));
    assert.ok(afterLines.some((l) => l.name === 'portico_http_requests_total' && l.labels.route === ''));
    assert.equal(checkHistograms(afterLines, 'portico_http_request_duration_seconds'), 3);
  });

  it('takes an async snapshot source (merged worker snapshots), also in OpenMetrics format', async () => {
    const w1 = new TrafficStats({ buckets: BUCKETS });
    const w2 = new TrafficStats({ buckets: BUCKETS });
    w1.finished(record({ routeId: 'r1', status: 200, bytesIn: 1, bytesOut: 10 }));
    w2.finished(record({ routeId: 'r1', status: 200, bytesIn: 2, bytesOut: 20 }));
    let calls = 0;
    const get = async () => {
      calls++;
      await new Promise((resolve) => setTimeout(resolve, 5));
      return mergeTraffic([w1.snapshot(1), w2.snapshot(2)]);
    };
    const registry = new Registry();
    registerTrafficMetrics(registry, get);
    const [a, b] = await Promise.all([registry.metrics(), registry.metrics()]);
    assert.ok(calls >= 1 && calls <= 2);
    for (const text of [a, b]) {
      assert.ok(text.includes('portico_http_requests_total{route="r1",service="",code="2xx"} 2\n'));
      assert.ok(text.includes('portico_bandwidth_bytes_total{type="egress",route="r1",service=""} 30\n'));
      assert.ok(text.includes('portico_http_connections 3\n'));
    }

    // prom-client's types declare no constructor argument; setContentType is the typed way
    const om = new Registry() as unknown as Registry<OpenMetricsContentType>;
    om.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    registerTrafficMetrics(om, get);
    const text = await om.metrics();
    assert.ok(text.includes('# TYPE portico_http_requests counter\n'), text);
    assert.ok(text.includes('portico_http_requests_total{route="r1",service="",code="2xx"} 2\n'), text);
    assert.ok(text.endsWith('# EOF\n'));
  });

  it('fails the scrape when the snapshot source fails, and asks again at the next', async () => {
    let fail = true;
    const registry = new Registry();
    registerTrafficMetrics(registry, () => {
      if (fail) throw new Error('workers did not answer');
      return new TrafficStats().snapshot(0);
    });
    await assert.rejects(registry.metrics(), /workers did not answer/);
    fail = false;
    assert.ok((await registry.metrics()).includes('portico_http_connections 0\n'));
  });
});

function round(n: number): number {
  return Math.round(n * 1e9) / 1e9;
}
