import { performance } from 'node:perf_hooks';
import type { Balancer, BalancerOptions, UpstreamNode, NodeSet } from '../types.ts';

/** APISIX's DECAY_TIME (10 s): how fast old latencies fade, in ms */
const DECAY_TIME_MS = 10_000;

/**
 * A failed attempt (refused, reset, timed out) often ends fast; fed in as is, its latency would
 * make a dead node look like the best one. It counts as at least this long, and at least twice the
 * slowest node's score, so it loses to every node that answers, then fades back in like any score.
 */
const FAILURE_PENALTY_MS = 1000;

/**
 * Latency-aware balancing (APISIX upstream `type: ewma`, after Finagle's PeakEwma by way of
 * ingress-nginx): per node an exponentially weighted moving average of its attempts' latency, and
 * "power of two choices" — take two distinct eligible nodes, send to the one with the lower score.
 *
 * Model, as APISIX's ewma.lua:
 * - the average decays with time, not with sample count: a sample taken `td` ms after the previous
 *   one has weight `1 - exp(-td / DECAY_TIME)`. The first sample of a node is its average.
 * - a node's score is its average decayed toward 0 by the time since it was last measured, so a node
 *   that lost every contest for a while (slow once) is given another chance; a node never measured
 *   scores 0 and is tried first.
 * - state is per process (per worker); APISIX shares it across workers in a shared dict.
 *
 * Where we differ, and why:
 * - APISIX ignores weights (both candidates uniformly random). The balancer contract wants weights
 *   honoured, and weight 0 to mean "never": the first candidate comes from a smooth weighted round
 *   robin (roundrobin.ts), the second is drawn at random by weight among the others, and a tie (both
 *   unmeasured, say) goes to the first — so with no latency known, picks follow weights exactly.
 * - APISIX feeds only the final attempt's time and has no notion of failure; here every attempt
 *   counts (done() on each retry) and a failed one is penalised (FAILURE_PENALTY_MS).
 */
export function createEwma(nodes: UpstreamNode[], _options?: BalancerOptions, clock: () => number = () => performance.now()): Balancer {
  const eligible = nodes.filter((node) => node.weight > 0);
  if (eligible.length === 0) return { pick: () => undefined };
  return new Ewma(eligible, clock);
}

class Ewma implements Balancer {
  private readonly nodes: UpstreamNode[];
  private readonly index = new Map<UpstreamNode, number>();
  private readonly weights: Float64Array;
  /** smooth round robin running totals, for the first candidate */
  private readonly current: Float64Array;
  /** average latency (ms) as of `touchedAt` */
  private readonly ewma: Float64Array;
  /** clock() of the last sample; -1: never measured */
  private readonly touchedAt: Float64Array;

  constructor(
    nodes: UpstreamNode[],
    /** milliseconds, monotonic; a test passes its own to step time */
    private readonly clock: () => number,
  ) {
    this.nodes = nodes;
    nodes.forEach((node, i) => this.index.set(node, i));
    this.weights = Float64Array.from(nodes, (node) => node.weight);
    this.current = new Float64Array(nodes.length);
    this.ewma = new Float64Array(nodes.length);
    this.touchedAt = new Float64Array(nodes.length).fill(-1);
  }

  pick(tried?: NodeSet): UpstreamNode | undefined {
    const { nodes, weights, current } = this;
    const skip = tried !== undefined && tried.size > 0;
    // first candidate: smooth weighted round robin over the eligible (tried ones neither gain nor pay)
    let first = -1;
    let total = 0;
    for (let i = 0; i < nodes.length; i++) {
      if (skip && tried.has(nodes[i]!)) continue;
      current[i]! += weights[i]!;
      total += weights[i]!;
      if (first === -1 || current[i]! > current[first]!) first = i;
    }
    if (first === -1) return undefined;
    current[first]! -= total;
    // second candidate: weighted random among the other eligible nodes
    const rest = total - weights[first]!;
    if (rest <= 0) return nodes[first];
    let r = Math.random() * rest;
    let second = -1;
    for (let i = 0; i < nodes.length; i++) {
      if (i === first || (skip && tried.has(nodes[i]!))) continue;
      second = i;
      r -= weights[i]!;
      if (r < 0) break;
    }
    const now = this.clock();
    return this.score(second, now) < this.score(first, now) ? nodes[second] : nodes[first];
  }

  done(node: UpstreamNode, latencyMs: number, failed: boolean): void {
    const i = this.index.get(node);
    if (i === undefined) return;
    const now = this.clock();
    let sample = latencyMs;
    if (failed) {
      let slowest = 0;
      for (let k = 0; k < this.nodes.length; k++) if (k !== i) slowest = Math.max(slowest, this.score(k, now));
      sample = Math.max(latencyMs, FAILURE_PENALTY_MS, 2 * slowest);
    }
    const last = this.touchedAt[i]!;
    if (last < 0) {
      this.ewma[i] = sample;
    } else {
      const keep = Math.exp(-Math.max(now - last, 0) / DECAY_TIME_MS);
      this.ewma[i] = this.ewma[i]! * keep + sample * (1 - keep);
      // a failure must show at once: at request rates the time-weighted sample would barely move it
      if (failed && this.ewma[i]! < sample) this.ewma[i] = sample;
    }
    this.touchedAt[i] = now;
  }

  /** the node's average, decayed toward 0 by the time since it was last measured */
  private score(i: number, now: number): number {
    const last = this.touchedAt[i]!;
    if (last < 0) return 0;
    return this.ewma[i]! * Math.exp(-Math.max(now - last, 0) / DECAY_TIME_MS);
  }
}
