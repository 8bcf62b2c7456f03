import assert from 'node:assert/strict';
import { Agent, get } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { hit, hitFresh, Node } from './nodes.ts';

/*
 * Passive health checks (no probes) through the gateway process, on both transports: real
 * requests that fail take a node out after the threshold, and `readmit_after` brings it back.
 * `retries: 0`: each request sent to a failing node is an answer the client sees.
 */

for (const transport of ['socket', 'node'] as const) {
  describe(`passive health checks (${transport} transport)`, () => {
    // addresses of their own: while b is killed, no test running alongside can take its port
    const base = transport === 'socket' ? 21 : 23;
    const a = new Node('a', `127.0.0.${base}`);
    const b = new Node('b', `127.0.0.${base + 1}`);
    let gw: GatewayProcess;
    const upstream = (id: string, checks: Record<string, unknown>) => ({ id, type: 'roundrobin', retries: 0, nodes: [a, b].map((n) => ({ host: n.host, port: n.port, weight: 1 })), checks });

    before(async () => {
      await a.start();
      await b.start();
      gw = await startGateway({
        proxy: { transport },
        routes: {
          upstreams: [
            upstream('tcp', { passive: { unhealthy: { tcp_failures: 2 }, readmit_after: 2 } }),
            upstream('http', { passive: { unhealthy: { http_failures: 3 }, readmit_after: 30 } }),
            // one node: it still gets the requests while unhealthy (no healthy node left), so its
            // successes can bring it back
            { id: 'lone', retries: 0, nodes: [{ host: b.host, port: b.port, weight: 1 }], checks: { passive: { healthy: { successes: 3 }, unhealthy: { http_failures: 2 }, readmit_after: 60 } } },
          ],
          routes: [
            { id: 'tcp', uri: '/tcp/*', upstream_id: 'tcp' },
            { id: 'http', uri: '/http/*', upstream_id: 'http' },
            { id: 'lone', uri: '/lone/*', upstream_id: 'lone' },
          ],
        },
      });
    });
    after(async () => {
      await gw?.cleanup();
      await a.kill();
      await b.kill();
    });

    test('500s from a node: exactly http_failures of them reach clients, then the node is out', async () => {
      b.status = 500;
      const results: string[] = [];
      for (let i = 0; i < 30; i++) results.push(await hit(`${gw.url}/http/${i}`));
      b.status = 200;
      assert.equal(results.filter((r) => r === 'status 500').length, 3, results.join(','));
      // round robin alternates: the third 500 is the sixth request at the latest; after it, only a
      const lastFailure = results.lastIndexOf('status 500');
      assert.ok(lastFailure <= 5, results.join(','));
      assert.deepEqual(new Set(results.slice(lastFailure + 1)), new Set(['a']));
      const report = (await gw.status()).upstream_health!.find((u) => u.upstream === 'upstreams/http')!;
      assert.deepEqual(report.checks, ['passive']);
      assert.deepEqual(report.nodes.find((n) => n.node === b.address)?.healthy, false);
      assert.equal(report.nodes.find((n) => n.node === b.address)?.by, 'passive');
    });

    test('healthy again by passive successes: the counter of successes brings a node back', async () => {
      const lone = async () => (await gw.status()).upstream_health!.find((u) => u.upstream === 'upstreams/lone')!.nodes[0]!;
      b.status = 500;
      for (let i = 0; i < 2; i++) assert.equal(await hit(`${gw.url}/lone/${i}`), 'status 500');
      await waitUntil(async () => (await lone()).healthy === false, 3000, 'lone node unhealthy');
      b.status = 200;
      // no healthy node left: requests still go to it (APISIX), and each success counts
      for (let i = 0; i < 2; i++) assert.equal(await hit(`${gw.url}/lone/ok${i}`), 'b');
      await sleep(300);
      assert.equal((await lone()).healthy, false, 'two successes are not three');
      assert.equal(await hit(`${gw.url}/lone/ok2`), 'b');
      const back = await waitUntil(async () => {
        const n = await lone();
        return n.healthy ? n : undefined;
      }, 3000, 'healthy again');
      assert.equal(back.by, 'passive');
    });

    test('a killed node: tcp_failures errors, then none; readmit_after brings it back', async () => {
      await b.kill();
      const results: string[] = [];
      for (let i = 0; i < 20; i++) results.push(await hit(`${gw.url}/tcp/${i}`));
      assert.equal(results.filter((r) => r !== 'a').length, 2, results.join(','));
      assert.ok(results.slice(4).every((r) => r === 'a'), results.join(','));
      await b.start();
      const servedBefore = b.served;
      // readmitted 2 s after the verdict
      await waitUntil(async () => (await hit(`${gw.url}/tcp/back`)) === 'b', 5000, 'b to get traffic again', 100);
      assert.ok(b.served > servedBefore);
      const node = (await gw.status()).upstream_health!.find((u) => u.upstream === 'upstreams/tcp')!.nodes.find((n) => n.node === b.address)!;
      assert.deepEqual([node.healthy, node.by], [true, 'readmit']);
    });
  });
}

describe('health checks with proxy.workers: 2', () => {
  const a = new Node('a', '127.0.0.25');
  const b = new Node('b', '127.0.0.26');
  let gw: GatewayProcess;

  before(async () => {
    await a.start();
    await b.start();
    const nodes = [a, b].map((n) => ({ host: n.host, port: n.port, weight: 1 }));
    gw = await startGateway({
      workers: 2,
      routes: {
        upstreams: [
          { id: 'probed', retries: 0, nodes, checks: { active: { http_path: '/health', healthy: { interval: 1 }, unhealthy: { interval: 1, http_failures: 2 } } } },
          { id: 'passive', retries: 0, nodes, checks: { passive: { unhealthy: { http_failures: 3 }, readmit_after: 60 } } },
        ],
        routes: [
          { id: 'probed', uri: '/probed/*', upstream_id: 'probed' },
          { id: 'passive', uri: '/passive/*', upstream_id: 'passive' },
        ],
      },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await a.kill();
    await b.kill();
  });

  test('one prober per instance, not one per worker; its verdict applies in both workers', async () => {
    const start = b.probes;
    await sleep(4000);
    const probes = b.probes - start;
    // one checker at a 1 s interval: 3-5 probes in 4 s (two would make 7-9)
    assert.ok(probes >= 3 && probes <= 5, `${probes} probes in 4 s`);

    b.healthStatus = 503;
    await waitUntil(async () => (await gw.status()).upstream_health!.find((u) => u.upstream === 'upstreams/probed')!.nodes.find((n) => n.node === b.address)?.healthy === false, 6000, 'b unhealthy');
    const served = b.served;
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => hitFresh(`${gw.url}/probed/${i}`)));
    assert.deepEqual(new Set(results), new Set(['a']));
    assert.equal(b.served, served);
    b.healthStatus = 200;
  });

  test('a passive verdict reached in one worker applies in the other', async () => {
    b.status = 500;
    // one keep-alive connection: every request goes to the same worker
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const one = (path: string) =>
      new Promise<number>((resolve, reject) => get(`${gw.url}${path}`, { agent }, (res) => (res.resume(), res.on('end', () => resolve(res.statusCode!)))).on('error', reject));
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push(await one(`/passive/${i}`));
    agent.destroy();
    b.status = 200;
    assert.equal(statuses.filter((s) => s === 500).length, 3, statuses.join(','));
    await waitUntil(async () => (await gw.status()).upstream_health!.find((u) => u.upstream === 'upstreams/passive')!.nodes.find((n) => n.node === b.address)?.healthy === false, 3000, 'the verdict in /status');
    const served = b.served;
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => hitFresh(`${gw.url}/passive/${i}`)));
    assert.deepEqual(new Set(results), new Set(['a']));
    assert.equal(b.served, served);
  });
});
