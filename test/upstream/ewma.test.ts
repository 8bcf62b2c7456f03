import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createEwma } from '../../src/upstream/balancer/ewma.ts';
import { createBalancer } from '../../src/upstream/balancer/index.ts';
import type { Balancer, UpstreamNode } from '../../src/upstream/types.ts';
import { balancerContract, node } from './balancer-contract.ts';

// no latency known between picks: every score is 0, the first candidate (smooth round robin) wins ties
balancerContract('ewma', createEwma, { exactDistribution: true });
balancerContract('ewma via registry', (nodes) => createBalancer('ewma', nodes), { exactDistribution: true });

/** A balancer on a clock the test steps (ms). */
function onClock(nodes: UpstreamNode[]): { balancer: Balancer; advance: (ms: number) => void } {
  let now = 1_000;
  return { balancer: createEwma(nodes, undefined, () => now), advance: (ms) => void (now += ms) };
}

function shares(balancer: Balancer, n: number): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const host = balancer.pick()!.host;
    counts[host] = (counts[host] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(counts).map(([host, c]) => [host, c / n]));
}

describe('ewma specifics', () => {
  it('after a reports 200 ms and b 5 ms, most picks go to b', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const balancer = createEwma([a, b]);
    for (let i = 0; i < 20; i++) {
      balancer.done!(a, 200, false);
      balancer.done!(b, 5, false);
    }
    const share = shares(balancer, 1000);
    assert.ok((share.b ?? 0) >= 0.8, `b's share ${share.b}`);
  });

  it('with more nodes than two, the slow one loses every contest it is drawn into', () => {
    const nodes = [node('a', 1), node('b', 1), node('c', 1)];
    const balancer = createEwma(nodes);
    balancer.done!(nodes[0]!, 200, false);
    balancer.done!(nodes[1]!, 5, false);
    balancer.done!(nodes[2]!, 6, false);
    const share = shares(balancer, 3000);
    assert.equal(share.a, undefined, `a picked: ${JSON.stringify(share)}`);
    // b beats c whenever both are drawn; c still wins its draws against a
    assert.ok((share.b ?? 0) > (share.c ?? 0) && (share.c ?? 0) > 0.2, JSON.stringify(share));
  });

  it('a node never measured scores 0 and is tried first', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const balancer = createEwma([a, b]);
    balancer.done!(a, 1, false);
    for (let i = 0; i < 10; i++) assert.equal(balancer.pick(), b);
  });

  it('averages over time, not over samples: a sample 1 s after the last has weight 1 - e^-0.1', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const first = onClock([a, b]);
    first.balancer.done!(a, 100, false);
    first.advance(1_000);
    first.balancer.done!(a, 200, false); // a: 100·e^-0.1 + 200·(1 - e^-0.1) ≈ 109.5
    first.balancer.done!(b, 105, false);
    for (let i = 0; i < 5; i++) assert.equal(first.balancer.pick(), b);

    const second = onClock([a, b]);
    second.balancer.done!(a, 100, false);
    second.advance(1_000);
    second.balancer.done!(a, 200, false);
    second.balancer.done!(b, 115, false);
    for (let i = 0; i < 5; i++) assert.equal(second.balancer.pick(), a);
  });

  it('a slow node left alone decays back toward 0 (10 s decay time) and gets another chance', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const { balancer, advance } = onClock([a, b]);
    balancer.done!(a, 200, false);
    // b keeps answering in 5 ms; a is not measured again. 200·e^(-t/10 s) < 5 once t > 36.9 s
    for (let t = 0; t < 35; t++) {
      advance(1_000);
      balancer.done!(b, 5, false);
      assert.equal(balancer.pick(), b, `at ${t + 1} s`);
    }
    advance(3_000);
    balancer.done!(b, 5, false);
    assert.equal(balancer.pick(), a);
  });

  it('a failed attempt, however fast, makes the node lose to nodes that answer', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const balancer = createEwma([a, b]);
    balancer.done!(a, 5, false);
    balancer.done!(b, 3_000, false); // b is slow but answers
    assert.equal(balancer.pick(), a);
    balancer.done!(a, 1, true); // a refused the connection in 1 ms
    for (let i = 0; i < 10; i++) assert.equal(balancer.pick(), b);
    // the retry after a's failure still goes to b; with both tried, nothing is left
    assert.equal(balancer.pick(new Set([a])), b);
    assert.equal(balancer.pick(new Set([a, b])), undefined);
  });

  it('a failure shows at once even among frequent samples of the same node', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const { balancer, advance } = onClock([a, b]);
    for (let i = 0; i < 100; i++) {
      advance(5);
      balancer.done!(a, 5, false);
      balancer.done!(b, 8, false);
    }
    assert.equal(balancer.pick(), a);
    advance(5);
    balancer.done!(a, 2, true);
    assert.equal(balancer.pick(), b);
  });
});
