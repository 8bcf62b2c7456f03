import type { Metric, OpenMetricsContentType, PrometheusContentType, Registry } from 'prom-client';
import type {
  DurationHistogram,
  ExchangeObserver,
  ExchangeRecord,
  NodeTraffic,
  RouteTraffic,
  TrafficSnapshot,
} from './exchange.ts';

/** Upper bounds (seconds) of the duration histograms; a last +Inf bucket is implicit. */
export const DEFAULT_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
]);

/** Where requests and node attempts beyond the caps are counted (route '_other' / node '_other'). */
export const OTHER = '_other';

export interface TrafficStatsOptions {
  /** duration histogram bounds, seconds, strictly increasing (default DEFAULT_BUCKETS) */
  buckets?: number[];
  /** (route, service) entries kept before further routes fold into '_other' (default 1000) */
  maxRoutes?: number;
  /** (upstream, node) entries kept before further nodes fold into '<upstream>' / '_other' (default 1000) */
  maxNodes?: number;
}

// Status classes by index: 0 is '000' (no response), 1..5 are '1xx'..'5xx'. Same rule as
// exchange.ts's statusClass(), but as an index so the hot path increments a typed array slot.
const CLASS_LABELS = ['000', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const CLASSES = CLASS_LABELS.length;
function classIndex(status: number): number {
  return status < 100 || status > 599 ? 0 : (status / 100) | 0;
}

/**
 * Counters of one (route, service). Float64Array: exact integers up to 2^53, no boxing, and the
 * increment is a plain store. Entries of the same route with another service (the route was moved
 * to another service) are chained through `next`; the chain is short and the one in use is moved to
 * the front, so the per-request lookup stays one Map.get and one string compare.
 */
class RouteEntry {
  readonly codes = new Float64Array(CLASSES);
  readonly duration: Float64Array;
  durationSum = 0;
  durationCount = 0;
  readonly upstreamDuration: Float64Array;
  upstreamSum = 0;
  upstreamCount = 0;
  bytesIn = 0;
  bytesOut = 0;
  next: RouteEntry | undefined = undefined;
  constructor(
    readonly route: string,
    readonly service: string,
    buckets: number,
  ) {
    this.duration = new Float64Array(buckets + 1);
    this.upstreamDuration = new Float64Array(buckets + 1);
  }
}

/** Counters of one node of one upstream; the last error is kept as fields so recording it allocates nothing. */
class NodeEntry {
  readonly codes = new Float64Array(CLASSES);
  errorAt = 0;
  errorStatus = 0;
  errorRoute = '';
  hasError = false;
  constructor(
    readonly upstream: string,
    readonly node: string,
  ) {}
}

/**
 * Per-route and per-node request counts of this process since it started, fed by the transports
 * through finished() and read as plain JSON by snapshot().
 *
 * Model: an entry per (route, service) and per (upstream, node) seen, created on the first request
 * and never reset — counters only grow, so a scraper or the dashboard derives rates from two
 * snapshots. Cardinality is bounded: past maxRoutes (maxNodes) entries, new routes (nodes) are
 * counted under '_other', and retain() forgets the entries of routes and upstreams the config no
 * longer has, which makes room again. The unmatched entry (route '') and the '_other' entries are
 * never forgotten and never count against the caps.
 */
export class TrafficStats implements ExchangeObserver {
  readonly buckets: readonly number[];
  private readonly bounds: Float64Array;
  private readonly maxRoutes: number;
  private readonly maxNodes: number;
  private readonly routes = new Map<string, RouteEntry>();
  private readonly upstreams = new Map<string, Map<string, NodeEntry>>();
  private routeEntries = 0;
  private nodeEntries = 0;
  private foldedRequests = 0;
  private foldedAttempts = 0;

  constructor(options: TrafficStatsOptions = {}) {
    const buckets = options.buckets ?? DEFAULT_BUCKETS;
    checkBuckets(buckets);
    this.buckets = Object.freeze([...buckets]);
    this.bounds = Float64Array.from(buckets);
    this.maxRoutes = checkCap(options.maxRoutes ?? 1000, 'maxRoutes');
    this.maxNodes = checkCap(options.maxNodes ?? 1000, 'maxNodes');
  }

  /** Requests counted under route '_other' because of maxRoutes. */
  get overflowedRequests(): number {
    return this.foldedRequests;
  }
  /** Node attempts counted under node '_other' because of maxNodes. */
  get overflowedAttempts(): number {
    return this.foldedAttempts;
  }
  /** Everything folded into an '_other' entry: requests plus node attempts. */
  get overflowed(): number {
    return this.foldedRequests + this.foldedAttempts;
  }

  finished(record: ExchangeRecord): void {
    const e = this.routeEntry(record.routeId, record.serviceId);
    e.codes[classIndex(record.status)]!++;
    let d = record.duration;
    if (!(d >= 0)) d = 0; // NaN or a negative clock step would poison the sum
    e.duration[this.bucketOf(d)]!++;
    e.durationSum += d;
    e.durationCount++;
    const u = record.upstreamDuration;
    if (u >= 0) {
      e.upstreamDuration[this.bucketOf(u)]!++;
      e.upstreamSum += u;
      e.upstreamCount++;
    }
    e.bytesIn += record.bytesIn;
    e.bytesOut += record.bytesOut;

    if (record.upstreamAddr !== '') this.attempt(record, record.upstreamAddr, record.upstreamStatus);
    const failed = record.failedAttempts;
    if (failed !== undefined) for (let i = 0; i < failed.length; i++) this.attempt(record, failed[i]!.addr, failed[i]!.status);
  }

  /**
   * Forget the entries of routes (and, when upstreamKeys is given, of upstreams) that are not kept:
   * their series leave /metrics at the next scrape. Called after config changes; the unmatched ('')
   * and '_other' entries stay.
   */
  retain(
    routeIds: ReadonlySet<string> | ((id: string) => boolean),
    upstreamKeys?: ReadonlySet<string> | ((key: string) => boolean),
  ): void {
    const keepRoute = predicate(routeIds);
    for (const [id, head] of this.routes) {
      if (id === '' || id === OTHER || keepRoute(id)) continue;
      for (let e: RouteEntry | undefined = head; e !== undefined; e = e.next) this.routeEntries--;
      this.routes.delete(id);
    }
    if (upstreamKeys === undefined) return;
    const keepUpstream = predicate(upstreamKeys);
    for (const [key, nodes] of this.upstreams) {
      if (keepUpstream(key)) continue;
      this.nodeEntries -= nodes.size - (nodes.has(OTHER) ? 1 : 0);
      this.upstreams.delete(key);
    }
  }

  snapshot(connections: number): TrafficSnapshot {
    const routes: RouteTraffic[] = [];
    for (const head of this.routes.values()) {
      for (let e: RouteEntry | undefined = head; e !== undefined; e = e.next) {
        routes.push({
          route: e.route,
          service: e.service,
          codes: codesRecord(e.codes),
          duration: { counts: Array.from(e.duration), sum: e.durationSum, count: e.durationCount },
          upstreamDuration: { counts: Array.from(e.upstreamDuration), sum: e.upstreamSum, count: e.upstreamCount },
          bytesIn: e.bytesIn,
          bytesOut: e.bytesOut,
        });
      }
    }
    const upstreams: NodeTraffic[] = [];
    for (const nodes of this.upstreams.values()) {
      for (const n of nodes.values()) {
        const t: NodeTraffic = { upstream: n.upstream, node: n.node, codes: codesRecord(n.codes) };
        if (n.hasError) t.lastError = { at: n.errorAt, status: n.errorStatus, route: n.errorRoute };
        upstreams.push(t);
      }
    }
    return { at: Date.now(), buckets: [...this.buckets], routes, upstreams, connections };
  }

  private routeEntry(routeId: string, serviceId: string): RouteEntry {
    const head = this.routes.get(routeId);
    if (head !== undefined) {
      if (head.service === serviceId) return head;
      // the route's service changed (or alternates): find it down the chain and move it to the front
      let prev = head;
      for (let e = head.next; e !== undefined; prev = e, e = e.next) {
        if (e.service === serviceId) {
          prev.next = e.next;
          e.next = head;
          this.routes.set(routeId, e);
          return e;
        }
      }
    }
    if (routeId !== '' && routeId !== OTHER && this.routeEntries >= this.maxRoutes) {
      this.foldedRequests++;
      return this.routeEntry(OTHER, '');
    }
    const e = new RouteEntry(routeId, serviceId, this.bounds.length);
    e.next = head;
    this.routes.set(routeId, e);
    if (routeId !== '' && routeId !== OTHER) this.routeEntries++;
    return e;
  }

  private attempt(record: ExchangeRecord, addr: string, status: number): void {
    const n = this.nodeEntry(record.upstream, addr);
    n.codes[classIndex(status)]!++;
    if (status === 0 || status >= 500) {
      n.hasError = true;
      n.errorAt = record.time;
      n.errorStatus = status;
      n.errorRoute = record.routeId;
    }
  }

  private nodeEntry(upstream: string, addr: string): NodeEntry {
    let nodes = this.upstreams.get(upstream);
    if (nodes === undefined) {
      nodes = new Map();
      this.upstreams.set(upstream, nodes);
    } else {
      const n = nodes.get(addr);
      if (n !== undefined) return n;
    }
    let node = addr;
    if (addr !== OTHER && this.nodeEntries >= this.maxNodes) {
      this.foldedAttempts++;
      node = OTHER;
      const other = nodes.get(OTHER);
      if (other !== undefined) return other;
    }
    const n = new NodeEntry(upstream, node);
    nodes.set(node, n);
    if (node !== OTHER) this.nodeEntries++;
    return n;
  }

  /** Index of the bucket of v: the first bound >= v (Prometheus `le`: a value on a bound is in that bucket), else +Inf. */
  private bucketOf(v: number): number {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    return i;
  }
}

function codesRecord(codes: Float64Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < CLASSES; i++) if (codes[i]! > 0) out[CLASS_LABELS[i]!] = codes[i]!;
  return out;
}

function predicate(keep: ReadonlySet<string> | ((id: string) => boolean)): (id: string) => boolean {
  return typeof keep === 'function' ? keep : (id) => keep.has(id);
}

function checkBuckets(buckets: readonly number[]): void {
  if (!Array.isArray(buckets) || buckets.length === 0) throw new TypeError('traffic buckets: at least one bound is needed');
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i]!;
    if (typeof b !== 'number' || !Number.isFinite(b)) throw new TypeError(`traffic buckets: bound ${i} is not a finite number`);
    if (i > 0 && !(b > buckets[i - 1]!)) throw new TypeError(`traffic buckets: bounds must be strictly increasing (bound ${i})`);
  }
}

function checkCap(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 0) throw new TypeError(`traffic ${name}: must be an integer >= 0`);
  return n;
}

/**
 * Sum of the traffic of several processes (the workers): counts of the same (route, service) and
 * (upstream, node) added, histograms bucket by bucket, connections added, `at` the latest, and each
 * node's lastError the latest of any part. Counts are integers well below 2^53, so the sum is exact.
 * The parts are not modified.
 */
export function mergeTraffic(parts: TrafficSnapshot[]): TrafficSnapshot {
  if (parts.length === 0) return { at: 0, buckets: [...DEFAULT_BUCKETS], routes: [], upstreams: [], connections: 0 };
  const buckets = parts[0]!.buckets;
  for (const p of parts) {
    if (!sameBuckets(p.buckets, buckets)) {
      throw new Error(`mergeTraffic: parts have different buckets ([${p.buckets.join(', ')}] vs [${buckets.join(', ')}])`);
    }
  }
  // keyed by route then service (and upstream then node): no separator that an id could contain
  const routes = new Map<string, Map<string, RouteTraffic>>();
  const routeList: RouteTraffic[] = [];
  const nodes = new Map<string, Map<string, NodeTraffic>>();
  const nodeList: NodeTraffic[] = [];
  let at = 0;
  let connections = 0;
  for (const p of parts) {
    if (p.at > at) at = p.at;
    connections += p.connections;
    for (const r of p.routes) {
      let byService = routes.get(r.route);
      if (byService === undefined) routes.set(r.route, (byService = new Map()));
      let m = byService.get(r.service);
      if (m === undefined) {
        m = {
          route: r.route,
          service: r.service,
          codes: {},
          duration: emptyHistogram(buckets.length),
          upstreamDuration: emptyHistogram(buckets.length),
          bytesIn: 0,
          bytesOut: 0,
        };
        byService.set(r.service, m);
        routeList.push(m);
      }
      addCodes(m.codes, r.codes);
      addHistogram(m.duration, r.duration, r.route);
      addHistogram(m.upstreamDuration, r.upstreamDuration, r.route);
      m.bytesIn += r.bytesIn;
      m.bytesOut += r.bytesOut;
    }
    for (const n of p.upstreams) {
      let byNode = nodes.get(n.upstream);
      if (byNode === undefined) nodes.set(n.upstream, (byNode = new Map()));
      let m = byNode.get(n.node);
      if (m === undefined) {
        m = { upstream: n.upstream, node: n.node, codes: {} };
        byNode.set(n.node, m);
        nodeList.push(m);
      }
      addCodes(m.codes, n.codes);
      if (n.lastError !== undefined && (m.lastError === undefined || n.lastError.at > m.lastError.at)) m.lastError = { ...n.lastError };
    }
  }
  return { at, buckets: [...buckets], routes: routeList, upstreams: nodeList, connections };
}

function sameBuckets(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function emptyHistogram(bounds: number): DurationHistogram {
  return { counts: new Array<number>(bounds + 1).fill(0), sum: 0, count: 0 };
}

function addHistogram(into: DurationHistogram, h: DurationHistogram, route: string): void {
  if (h.counts.length !== into.counts.length) {
    throw new Error(`mergeTraffic: route '${route}' has ${h.counts.length} bucket counts, expected ${into.counts.length}`);
  }
  for (let i = 0; i < h.counts.length; i++) into.counts[i]! += h.counts[i]!;
  into.sum += h.sum;
  into.count += h.count;
}

function addCodes(into: Record<string, number>, codes: Record<string, number>): void {
  for (const k in codes) into[k] = (into[k] ?? 0) + codes[k]!;
}

// ---- Prometheus exposition ----

type Labels = Record<string, string>;
interface Sample {
  labels: Labels;
  value: number;
  /** for a histogram's _bucket/_sum/_count lines; counters and gauges use the family name */
  metricName?: string;
}

/**
 * A metric family whose samples are computed from a TrafficSnapshot at scrape time. prom-client's
 * Counter and Histogram keep their own running values and have no way to set a histogram to an
 * absolute state, while our counts are already totals (and merged across workers). So each family
 * is a plain object with the shape the Registry reads — name, help, type, aggregator, get() — and
 * the Registry does the formatting and label escaping. Because the samples come only from the
 * snapshot, series of routes that retain() forgot are simply absent from the next scrape.
 */
class SnapshotFamily {
  readonly aggregator = 'sum';
  constructor(
    // not readonly: in OpenMetrics mode the Registry strips a counter's _total from `name` itself
    public name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly current: () => Promise<TrafficSnapshot>,
    private readonly samples: (s: TrafficSnapshot) => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    const s = await this.current();
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.samples(s) };
  }

  /** Registry.resetMetrics(): nothing to reset here, the values live in the TrafficStats */
  reset(): void {}
}

/**
 * Registers the request metrics on `registry`, read from `get()` at scrape time: one snapshot per
 * scrape, shared by every family, so the families of one scrape agree with each other.
 *
 *   portico_http_requests_total{route,service,code}                 counter, code = status class
 *   portico_http_request_duration_seconds{route,service,type}       histogram, type = request | upstream
 *   portico_bandwidth_bytes_total{type,route,service}               counter, type = ingress | egress
 *   portico_upstream_status_total{upstream,node,code}               counter
 *   portico_http_connections                                        gauge
 */
export function registerTrafficMetrics(
  registry: Registry<PrometheusContentType> | Registry<OpenMetricsContentType>,
  get: () => TrafficSnapshot | Promise<TrafficSnapshot>,
): void {
  // The Registry calls every family's get() synchronously in one loop before awaiting any, so all
  // families of a scrape find this promise; it is dropped once settled, so the next scrape asks again.
  let pending: Promise<TrafficSnapshot> | undefined;
  const current = (): Promise<TrafficSnapshot> => {
    if (pending === undefined) {
      const p = (async () => get())();
      pending = p;
      const drop = () => {
        if (pending === p) pending = undefined;
      };
      p.then(drop, drop);
    }
    return pending;
  };

  const families = [
    new SnapshotFamily('portico_http_requests_total', 'HTTP requests by route, service and status class (000: no response sent)', 'counter', current, (s) => {
      const out: Sample[] = [];
      for (const r of s.routes) for (const code in r.codes) out.push({ labels: { route: r.route, service: r.service, code }, value: r.codes[code]! });
      return out;
    }),
    new SnapshotFamily(
      'portico_http_request_duration_seconds',
      'Request time (type=request: head read to last byte sent) and upstream time (type=upstream: first attempt to upstream response end)',
      'histogram',
      current,
      (s) => {
        const name = 'portico_http_request_duration_seconds';
        const le = s.buckets.map(String);
        le.push('+Inf');
        const out: Sample[] = [];
        const add = (r: RouteTraffic, type: string, h: DurationHistogram) => {
          let acc = 0;
          for (let i = 0; i < le.length; i++) {
            acc += h.counts[i]!;
            out.push({ labels: { route: r.route, service: r.service, type, le: le[i]! }, value: acc, metricName: `${name}_bucket` });
          }
          const labels = { route: r.route, service: r.service, type };
          out.push({ labels, value: h.sum, metricName: `${name}_sum` });
          out.push({ labels, value: h.count, metricName: `${name}_count` });
        };
        for (const r of s.routes) {
          add(r, 'request', r.duration);
          // routes answered without an upstream (no route matched, a plugin answered) have no upstream series
          if (r.upstreamDuration.count > 0) add(r, 'upstream', r.upstreamDuration);
        }
        return out;
      },
    ),
    new SnapshotFamily('portico_bandwidth_bytes_total', 'Bytes by route: ingress read from clients, egress written to clients', 'counter', current, (s) => {
      const out: Sample[] = [];
      for (const r of s.routes) {
        out.push({ labels: { type: 'ingress', route: r.route, service: r.service }, value: r.bytesIn });
        out.push({ labels: { type: 'egress', route: r.route, service: r.service }, value: r.bytesOut });
      }
      return out;
    }),
    new SnapshotFamily('portico_upstream_status_total', 'Upstream attempts by node and status class of its answer (000: no response)', 'counter', current, (s) => {
      const out: Sample[] = [];
      for (const n of s.upstreams) for (const code in n.codes) out.push({ labels: { upstream: n.upstream, node: n.node, code }, value: n.codes[code]! });
      return out;
    }),
    new SnapshotFamily('portico_http_connections', 'Client connections open now (HTTP listeners)', 'gauge', current, (s) => [{ labels: {}, value: s.connections }]),
  ];
  // The Registry's type names its own metric classes; at run time it only reads the members above.
  for (const f of families) registry.registerMetric(f as unknown as Metric);
}
