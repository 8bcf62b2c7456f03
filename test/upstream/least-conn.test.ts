import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createBalancer } from '../../src/upstream/balancer/index.ts';
import { createLeastConn } from '../../src/upstream/balancer/least-conn.ts';
import type { UpstreamNode } from '../../src/upstream/types.ts';
import { balancerContract, node } from './balancer-contract.ts';

// nothing in flight between picks: every node ties at 0, the smooth round robin shares exactly by weight
balancerContract('least_conn', createLeastConn, { exactDistribution: true });
balancerContract('least_conn via registry', (nodes) => createBalancer('least_conn', nodes), { exactDistribution: true });

/** pick and send: what the data plane does for one attempt */
function send(balancer: ReturnType<typeof createLeastConn>, tried?: ReadonlySet<UpstreamNode>): UpstreamNode {
  const picked = balancer.pick(tried);
  assert.ok(picked);
  balancer.started!(picked);
  return picked;
}

describe('least_conn specifics', () => {
  it('while a request is in flight on a, the next ones go to b', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const balancer = createLeastConn([a, b]);
    const first = send(balancer);
    const other = first === a ? b : a;
    for (let i = 0; i < 10; i++) {
      const picked = send(balancer);
      assert.equal(picked, other, `quick request ${i} went to the busy node`);
      balancer.done!(picked, 1, false);
    }
    balancer.done!(first, 800, false);
    // both idle again: they share
    const hosts = new Set(Array.from({ length: 4 }, () => balancer.pick()!.host));
    assert.deepEqual([...hosts].sort(), ['a', 'b']);
  });

  it('compares requests in flight per unit of weight', () => {
    const [a, b] = [node('a', 3), node('b', 1)];
    const balancer = createLeastConn([a, b]);
    // four concurrent requests: a (weight 3) takes three of them, b one
    const counts = { a: 0, b: 0 };
    for (let i = 0; i < 4; i++) counts[send(balancer).host as 'a' | 'b']++;
    assert.deepEqual(counts, { a: 3, b: 1 });
    // a at 3/3, b at 1/1: tied; a's done makes it the least loaded
    balancer.done!(a, 10, false);
    assert.equal(balancer.pick(), a);
  });

  it('equal nodes with the same load alternate', () => {
    const nodes = [node('a', 1), node('b', 1), node('c', 1)];
    const balancer = createLeastConn(nodes);
    for (const n of nodes) balancer.started!(n);
    assert.equal(Array.from({ length: 6 }, () => balancer.pick()!.host).join(''), 'abcabc');
  });

  it('done() never takes a count below 0, and ignores nodes it does not know', () => {
    const [a, b] = [node('a', 1), node('b', 1)];
    const balancer = createLeastConn([a, b]);
    balancer.done!(a, 1, true);
    balancer.done!(a, 1, true);
    balancer.done!(node('stranger', 1), 1, false);
    // a is at 0, not -2: one request on b then one on a → tied again, they alternate
    balancer.started!(a);
    assert.equal(balancer.pick(), b);
    balancer.started!(b);
    const hosts = new Set(Array.from({ length: 2 }, () => balancer.pick()!.host));
    assert.equal(hosts.size, 2);
  });

  it('a failed attempt ends like any other: the retry goes to the least loaded node not tried', () => {
    const [a, b, c] = [node('a', 1), node('b', 1), node('c', 1)];
    const balancer = createLeastConn([a, b, c]);
    balancer.started!(a);
    balancer.started!(a);
    balancer.started!(b);
    assert.equal(send(balancer), c);
    balancer.done!(c, 2, true);
    assert.equal(balancer.pick(new Set([c])), b);
    assert.equal(balancer.pick(new Set([b, c])), a);
  });

  it('counts per priority level through the registry', () => {
    const high = [{ ...node('h1', 1), priority: 1 }, { ...node('h2', 1), priority: 1 }];
    const low = { ...node('low', 1), priority: 0 };
    const balancer = createBalancer('least_conn', [low, ...high]);
    const p1 = balancer.pick()!;
    balancer.started!(p1);
    const p2 = balancer.pick()!;
    assert.ok(p1.host.startsWith('h') && p2.host.startsWith('h') && p1 !== p2);
    balancer.started!(p2);
    balancer.done!(p1, 5, false);
    assert.equal(balancer.pick(), p1);
  });
});
