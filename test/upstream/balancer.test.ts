import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PorticoError } from '../../src/errors.ts';
import { balancerTypes, createBalancer } from '../../src/upstream/balancer/index.ts';
import { createRoundRobin } from '../../src/upstream/balancer/roundrobin.ts';
import type { UpstreamNode } from '../../src/upstream/types.ts';
import { balancerContract, node } from './balancer-contract.ts';

balancerContract('roundrobin', createRoundRobin, { exactDistribution: true });
balancerContract('roundrobin via registry', (nodes) => createBalancer('roundrobin', nodes), { exactDistribution: true });

describe('roundrobin specifics', () => {
  it('interleaves smoothly like nginx: 5/1/1 gives a a b a c a a', () => {
    const balancer = createRoundRobin([node('a', 5), node('b', 1), node('c', 1)]);
    const sequence = Array.from({ length: 14 }, () => balancer.pick()!.host).join(' ');
    assert.equal(sequence, 'a a b a c a a a a b a c a a');
  });

  it('equal weights alternate in order', () => {
    const balancer = createRoundRobin([node('a', 1), node('b', 1), node('c', 1)]);
    assert.equal(Array.from({ length: 6 }, () => balancer.pick()!.host).join(''), 'abcabc');
  });

  it('tried nodes neither gain nor pay, so the rotation resumes where it was', () => {
    const nodes = [node('a', 1), node('b', 1)];
    const balancer = createRoundRobin(nodes);
    assert.equal(balancer.pick()!.host, 'a');
    assert.equal(balancer.pick(new Set([nodes[1]!]))!.host, 'a');
    assert.equal(balancer.pick()!.host, 'b');
  });
});

describe('balancer registry', () => {
  it('knows roundrobin and rejects unknown types with a PorticoError', () => {
    assert.ok(balancerTypes().includes('roundrobin'));
    assert.throws(() => createBalancer('nope', [node('a', 1)]), PorticoError);
  });

  it('serves lower priorities only after every higher-priority node was tried', () => {
    const primary = [{ ...node('p1', 1), priority: 10 }, { ...node('p2', 1), priority: 10 }];
    const backup: UpstreamNode = { ...node('backup', 100), priority: -1 };
    const balancer = createBalancer('roundrobin', [backup, ...primary]);
    for (let i = 0; i < 20; i++) assert.ok(balancer.pick()!.host.startsWith('p'));
    assert.equal(balancer.pick(new Set([primary[0]!]))!.host, 'p2');
    assert.equal(balancer.pick(new Set(primary)), backup);
    assert.equal(balancer.pick(new Set([...primary, backup])), undefined);
  });
});
