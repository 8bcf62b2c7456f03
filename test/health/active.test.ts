import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { hit, Node } from './nodes.ts';
import type { NodeHealthReport } from '../../src/upstream/health/supervisor.ts';

/*
 * Active health checks through the gateway process: one of three nodes killed under a steady
 * request loop, then brought back; a config-change storm that must not reset health; a changed
 * checks block that must. Upstreams have `retries: 0` so that every request sent to a dead node is
 * an error the client sees: the health check alone keeps them away.
 */

// addresses of their own: while a node is killed, no test running alongside can take its port
const nodes = [new Node('a', '127.0.0.11'), new Node('b', '127.0.0.12'), new Node('c', '127.0.0.13')];
const checks = (successes = 2) => ({
  active: {
    http_path: '/health',
    timeout: 1,
    healthy: { interval: 1, successes },
    unhealthy: { interval: 1, tcp_failures: 2, http_failures: 2 },
  },
});
const routes = (extra: Array<Record<string, unknown>> = [], successes = 2) => ({
  upstreams: [{ id: 'three', type: 'roundrobin', retries: 0, nodes: nodes.map((n) => ({ host: n.host, port: n.port, weight: 1 })), checks: checks(successes) }],
  routes: [{ id: 'r', uri: '/*', upstream_id: 'three' }, ...extra],
});

async function nodeHealth(gw: GatewayProcess, node: Node): Promise<NodeHealthReport | undefined> {
  const report = (await gw.status()).upstream_health?.find((u) => u.upstream === 'upstreams/three');
  return report?.nodes.find((n) => n.node === node.address);
}

/** Sends requests one after another until stopped; each with its start time and result. */
function requestLoop(gw: GatewayProcess) {
  const results: Array<{ at: number; result: string }> = [];
  let running = true;
  const done = (async () => {
    for (let i = 0; running; i++) {
      const at = performance.now();
      results.push({ at, result: await hit(`${gw.url}/loop/${i}`) });
    }
  })();
  return { results, stop: async () => ((running = false), await done) };
}

describe('active health checks', () => {
  let gw: GatewayProcess;

  before(async () => {
    for (const n of nodes) await n.start();
    gw = await startGateway({ routes: routes() });
  });
  after(async () => {
    await gw?.cleanup();
    for (const n of nodes) await n.kill();
  });

  test('/status lists the checked upstream; probes reach every node at the healthy interval', async () => {
    await waitUntil(async () => (await nodeHealth(gw, nodes[2]!))?.last_probe, 5000, 'a first probe of c');
    const report = (await gw.status()).upstream_health!.find((u) => u.upstream === 'upstreams/three')!;
    assert.deepEqual(report.checks, ['active']);
    assert.deepEqual(report.nodes.map((n) => [n.node, n.healthy, n.by]), nodes.map((n) => [n.address, true, 'start']));
    for (const n of nodes) assert.ok(n.probes >= 1, `${n.name} probed`);
    const metrics = await (await fetch(`${gw.statusUrl}/metrics`)).text();
    assert.match(metrics, new RegExp(`portico_upstream_node_healthy\\{upstream="upstreams/three",node="${nodes[0]!.address}"\\} 1`));
  });

  test('a killed node: after the unhealthy threshold, no client sees an error; it returns after healthy.successes probes', async () => {
    const c = nodes[2]!;
    const loop = requestLoop(gw);
    await sleep(300);
    const killedAt = performance.now();
    await c.kill();
    const down = await waitUntil(async () => {
      const h = await nodeHealth(gw, c);
      return h && !h.healthy ? h : undefined;
    }, 6000, 'c to be marked unhealthy');
    const markedAt = performance.now();
    assert.equal(down.by, 'active');
    // 2 tcp failures 1 s apart: about 1-2 s after the kill
    assert.ok(markedAt - killedAt < 4000, `marked after ${Math.round(markedAt - killedAt)} ms`);
    const servedBefore = c.served;

    // storm: 30 config changes (routes added, changed, removed) while c is down
    for (let i = 0; i < 30; i++) {
      writeRoutes(gw.routesPath, routes([{ id: `extra${i % 3}`, uri: `/extra/${i}`, desc: `change ${i}`, upstream_id: 'three' }]));
      await sleep(40);
    }
    await sleep(600);
    const still = await nodeHealth(gw, c);
    assert.equal(still?.healthy, false, 'a config change storm keeps the verdict');
    assert.equal(still?.since, down.since, 'and its time');

    const sinceMarked = loop.results.filter((r) => r.at > markedAt + 50);
    assert.ok(sinceMarked.length > 20, `${sinceMarked.length} requests after the verdict`);
    assert.deepEqual(sinceMarked.filter((r) => !['a', 'b'].includes(r.result)), [], 'no errors once c is out');
    assert.equal(c.served, servedBefore);

    const probesBefore = c.probes;
    await c.start();
    const backAt = performance.now();
    await waitUntil(async () => (await nodeHealth(gw, c))?.healthy, 6000, 'c to be healthy again');
    const healthyAt = performance.now();
    // two successful probes at the unhealthy interval (1 s)
    assert.ok(c.probes - probesBefore >= 2, `${c.probes - probesBefore} probes before it returned`);
    assert.ok(healthyAt - backAt < 4000, `healthy after ${Math.round(healthyAt - backAt)} ms`);
    await waitUntil(() => c.served > servedBefore, 3000, 'traffic to reach c again');
    await loop.stop();
  });

  test('a changed checks block starts that upstream over (nodes healthy until probes decide)', async () => {
    const c = nodes[2]!;
    await c.kill();
    const down = await waitUntil(async () => {
      const h = await nodeHealth(gw, c);
      return h && !h.healthy ? h : undefined;
    }, 6000, 'c unhealthy');
    writeRoutes(gw.routesPath, routes([], 3));
    const restarted = await waitUntil(async () => {
      const h = await nodeHealth(gw, c);
      return h && h.by === 'start' ? h : undefined;
    }, 3000, 'c restarted with the new checks');
    assert.equal(restarted.healthy, true);
    assert.notEqual(restarted.since, down.since);
    await waitUntil(async () => (await nodeHealth(gw, c))?.healthy === false, 6000, 'the new checker to find c down');
    await c.start();
  });

  test('a node removed from the upstream is no longer probed', async () => {
    const b = nodes[1]!;
    writeRoutes(gw.routesPath, {
      upstreams: [{ id: 'three', retries: 0, nodes: [nodes[0]!, nodes[2]!].map((n) => ({ host: n.host, port: n.port, weight: 1 })), checks: checks(3) }],
      routes: [{ id: 'r', uri: '/*', upstream_id: 'three' }],
    });
    await waitUntil(async () => (await nodeHealth(gw, b)) === undefined, 3000, 'b to leave /status');
    await sleep(300); // a probe in flight when b was removed may still land
    const probes = b.probes;
    await sleep(2200);
    assert.equal(b.probes, probes, 'no probe after removal');
  });
});
