import type { DurationHistogram, NodeTraffic, RouteTraffic, TrafficSnapshot } from './types.ts';

/**
 * Rates over the interval between two traffic snapshots. Counters only grow in a running gateway;
 * a counter that went down (a worker restarted, its counts lost) makes the interval unknown rather
 * than negative.
 */
export interface IntervalRates {
  /** requests in the interval */
  requests: number;
  /** requests per second */
  rate: number;
  /** share (0..1) of the interval's requests answered 5xx / 4xx; 0 when none */
  errors5xx: number;
  errors4xx: number;
  /**
   * upper bound (seconds) of the histogram bucket that holds the 99th percentile of the interval's
   * request durations; Infinity: above the last bucket; null: no requests in the interval
   */
  p99: number | null;
}

export const NO_RATES: IntervalRates = { requests: 0, rate: 0, errors5xx: 0, errors4xx: 0, p99: null };

function sumCodes(codes: Record<string, number>): number {
  let n = 0;
  for (const k in codes) n += codes[k]!;
  return n;
}

/** Upper bound of the bucket holding quantile `q` of `counts` (per-bucket counts, last = +Inf). */
export function quantileBound(buckets: readonly number[], counts: readonly number[], q: number): number | null {
  let total = 0;
  for (const c of counts) total += c;
  if (total <= 0) return null;
  const rank = Math.ceil(q * total);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i]!;
    if (seen >= rank) return i < buckets.length ? buckets[i]! : Infinity;
  }
  return Infinity;
}

/** counts of `cur` minus counts of `prev` (undefined when any went down) */
function histogramDelta(prev: DurationHistogram | undefined, cur: DurationHistogram): number[] | undefined {
  if (!prev) return cur.counts.slice();
  if (prev.counts.length !== cur.counts.length) return undefined;
  const out = new Array<number>(cur.counts.length);
  for (let i = 0; i < cur.counts.length; i++) {
    const d = cur.counts[i]! - prev.counts[i]!;
    if (d < 0) return undefined;
    out[i] = d;
  }
  return out;
}

function codesDelta(prev: Record<string, number> | undefined, cur: Record<string, number>): Record<string, number> | undefined {
  const out: Record<string, number> = {};
  for (const k in cur) {
    const d = cur[k]! - (prev?.[k] ?? 0);
    if (d < 0) return undefined;
    out[k] = d;
  }
  return out;
}

/**
 * One route's rates between `prev` and `cur` over `seconds`. A route absent from `prev` counts from
 * zero (it got its first request in the interval).
 */
export function routeRates(prev: RouteTraffic | undefined, cur: RouteTraffic, seconds: number, buckets: readonly number[]): IntervalRates | undefined {
  const codes = codesDelta(prev?.codes, cur.codes);
  const hist = histogramDelta(prev?.duration, cur.duration);
  if (!codes || !hist || !(seconds > 0)) return undefined;
  return ratesOf(codes, hist, seconds, buckets);
}

function ratesOf(codes: Record<string, number>, hist: readonly number[], seconds: number, buckets: readonly number[]): IntervalRates {
  const requests = sumCodes(codes);
  return {
    requests,
    rate: requests / seconds,
    errors5xx: requests ? (codes['5xx'] ?? 0) / requests : 0,
    errors4xx: requests ? (codes['4xx'] ?? 0) / requests : 0,
    p99: requests ? quantileBound(buckets, hist, 0.99) : null,
  };
}

export interface TrafficRates {
  /** seconds between the two snapshots */
  seconds: number;
  /** by route id ('' = requests no route matched) */
  routes: Map<string, IntervalRates>;
  /** every route together */
  total: IntervalRates;
  /** requests per second by "upstream node" key (nodeKey) */
  nodes: Map<string, number>;
}

export const nodeKey = (upstream: string, node: string) => `${upstream} ${node}`;

/** Rates of every route and node between two snapshots; undefined without a previous one. */
export function trafficRates(prev: TrafficSnapshot | undefined, cur: TrafficSnapshot): TrafficRates | undefined {
  if (!prev) return undefined;
  const seconds = (cur.at - prev.at) / 1000;
  if (!(seconds > 0)) return undefined;
  const before = new Map(prev.routes.map((r) => [r.route, r]));
  const routes = new Map<string, IntervalRates>();
  const totalCodes: Record<string, number> = {};
  const totalHist = new Array<number>(cur.buckets.length + 1).fill(0);
  const sameBuckets = prev.buckets.length === cur.buckets.length && prev.buckets.every((b, i) => b === cur.buckets[i]);
  for (const r of cur.routes) {
    const p = sameBuckets ? before.get(r.route) : undefined;
    const codes = codesDelta(p?.codes, r.codes);
    const hist = histogramDelta(p?.duration, r.duration);
    if (!codes || !hist) continue;
    routes.set(r.route, ratesOf(codes, hist, seconds, cur.buckets));
    for (const k in codes) totalCodes[k] = (totalCodes[k] ?? 0) + codes[k]!;
    for (let i = 0; i < hist.length && i < totalHist.length; i++) totalHist[i]! += hist[i]!;
  }
  const prevNodes = new Map(prev.upstreams.map((n) => [nodeKey(n.upstream, n.node), n]));
  const nodes = new Map<string, number>();
  for (const n of cur.upstreams) {
    const key = nodeKey(n.upstream, n.node);
    const d = sumCodes(n.codes) - sumCodes(prevNodes.get(key)?.codes ?? {});
    if (d >= 0) nodes.set(key, d / seconds);
  }
  return { seconds, routes, total: ratesOf(totalCodes, totalHist, seconds, cur.buckets), nodes };
}

/** Requests of one node by status class, and all of them. */
export function nodeTotals(n: NodeTraffic): { total: number; codes: Record<string, number> } {
  return { total: sumCodes(n.codes), codes: n.codes };
}
