import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BalancerFactory } from '../../src/upstream/balancer/index.ts';
import type { UpstreamNode } from '../../src/upstream/types.ts';
import { HealthAwareBalancer, UpstreamHealth } from '../../src/upstream/health/book.ts';
import { compileChecks } from '../../src/upstream/health/checks.ts';

export function node(host: string, weight: number, port = 80): UpstreamNode {
  return { host, port, weight, key: `${host}:${port}`, priority: 0 };
}

function countPicks(pick: () => UpstreamNode | undefined, n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const picked = pick();
    assert.ok(picked, `pick ${i} returned undefined`);
    counts.set(picked.host, (counts.get(picked.host) ?? 0) + 1);
  }
  return counts;
}

export interface ContractOptions {
  /** true: over a multiple of the weight sum, counts equal weights exactly (round robin) */
  exactDistribution: boolean;
}

/**
 * What every balancer in src/upstream/balancer/ must do. A new algorithm's test file calls
 * `balancerContract('chash', createChash, {...})` and adds only its own specifics.
 */
export function balancerContract(name: string, factory: BalancerFactory, options: ContractOptions): void {
  describe(`balancer contract: ${name}`, () => {
    it('distributes picks according to weights', () => {
      const balancer = factory([node('a', 5), node('b', 3), node('c', 2)]);
      const rounds = 1000;
      const counts = countPicks(() => balancer.pick(), 10 * rounds);
      if (options.exactDistribution) {
        assert.deepEqual(Object.fromEntries(counts), { a: 5 * rounds, b: 3 * rounds, c: 2 * rounds });
      } else {
        for (const [host, weight] of [['a', 5], ['b', 3], ['c', 2]] as const) {
          const share = (counts.get(host) ?? 0) / (10 * rounds);
          assert.ok(Math.abs(share - weight / 10) < 0.05, `${host}: share ${share}, want ~${weight / 10}`);
        }
      }
    });

    it('never picks a node of weight 0', () => {
      const balancer = factory([node('a', 1), node('zero', 0), node('b', 2)]);
      const counts = countPicks(() => balancer.pick(), 3000);
      assert.equal(counts.get('zero'), undefined);
      assert.equal((counts.get('a') ?? 0) + (counts.get('b') ?? 0), 3000);
    });

    it('returns undefined when every node has weight 0, or there are no nodes', () => {
      assert.equal(factory([node('a', 0), node('b', 0)]).pick(), undefined);
      assert.equal(factory([]).pick(), undefined);
    });

    it('skips nodes already tried for the request', () => {
      const nodes = [node('a', 5), node('b', 1), node('c', 1)];
      const balancer = factory(nodes);
      const tried = new Set<UpstreamNode>([nodes[0]!]);
      for (let i = 0; i < 100; i++) {
        const picked = balancer.pick(tried);
        assert.ok(picked && picked !== nodes[0], 'picked a tried node');
      }
      tried.add(nodes[1]!);
      for (let i = 0; i < 10; i++) assert.equal(balancer.pick(tried), nodes[2]);
    });

    it('returns undefined when every node was tried', () => {
      const nodes = [node('a', 1), node('b', 2)];
      const balancer = factory(nodes);
      assert.equal(balancer.pick(new Set(nodes)), undefined);
      assert.equal(factory([nodes[0]!]).pick(new Set([nodes[0]!])), undefined);
    });

    it('a balancer built after a node was removed never picks it and keeps the others proportional', () => {
      const before = [node('a', 1), node('b', 1), node('c', 2)];
      factory(before).pick();
      const after = before.filter((n) => n.host !== 'b');
      const balancer = factory(after);
      const counts = countPicks(() => balancer.pick(), 3000);
      assert.equal(counts.get('b'), undefined);
      const ratio = (counts.get('c') ?? 0) / (counts.get('a') ?? 1);
      assert.ok(Math.abs(ratio - 2) < 0.2, `c/a = ${ratio}, want ~2`);
    });

    it('behind the health filter: never picks an unhealthy node while a healthy one is left; all down → picks anyway', () => {
      const nodes = [node('a', 5), node('b', 3), node('c', 2)];
      const health = new UpstreamHealth('upstreams/t', compileChecks({ passive: {} })!, () => undefined);
      const balancer = new HealthAwareBalancer(factory(nodes), health);
      health.set('a:80', false);
      const counts = countPicks(() => balancer.pick(), 1000);
      assert.equal(counts.get('a'), undefined);
      assert.equal((counts.get('b') ?? 0) + (counts.get('c') ?? 0), 1000);
      // a retry skips what was tried and what is down
      assert.equal(balancer.pick(new Set([nodes[1]!])), nodes[2]);
      health.set('b:80', false);
      health.set('c:80', false);
      // APISIX: no healthy node left, the request still goes to the upstream's nodes
      const fallback = countPicks(() => balancer.pick(), 100);
      assert.equal([...fallback.values()].reduce((x, y) => x + y, 0), 100);
      assert.equal(balancer.pick(new Set(nodes)), undefined, 'but never to a node already tried');
      health.set('a:80', true);
      assert.deepEqual([...countPicks(() => balancer.pick(), 50).keys()], ['a']);
    });

    it('works with a single node', () => {
      const only = node('a', 3);
      const balancer = factory([only]);
      for (let i = 0; i < 5; i++) assert.equal(balancer.pick(), only);
      assert.equal(balancer.pick(new Set([only])), undefined);
    });
  });
}
