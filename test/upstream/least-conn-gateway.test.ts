import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

/*
 * least_conn through the gateway process, on both transports: a request in flight on a node keeps
 * the next ones away from it; with nothing in flight, nodes share by weight.
 */

const SLOW_MS = 800;

async function served(gw: GatewayProcess, path: string): Promise<string> {
  const res = await fetch(`${gw.url}${path}`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { upstream: string }).upstream;
}

for (const transport of ['socket', 'node'] as const) {
  describe(`least_conn through the gateway (${transport} transport)`, () => {
    const ups: Record<string, TestUpstream> = {};
    let gw: GatewayProcess;

    before(async () => {
      // a answers after SLOW_MS, the others at once
      ups.a = await startUpstream('a', (req, res) => {
        req.resume();
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ upstream: 'a' })), SLOW_MS);
      });
      for (const name of ['b', 'heavy', 'light']) ups[name] = await startUpstream(name);
      const node = (name: string, weight: number) => ({ host: '127.0.0.1', port: ups[name]!.port, weight });
      gw = await startGateway({
        proxy: { transport },
        routes: {
          routes: [
            // nodes as a list: their order is the tie-break order (a first on a fresh balancer)
            { id: 'busy', uri: '/busy/*', upstream: { type: 'least_conn', nodes: [node('a', 1), node('b', 1)] } },
            { id: 'weights', uri: '/weights/*', upstream: { type: 'least_conn', nodes: [node('heavy', 3), node('light', 1)] } },
          ],
        },
      });
    });

    after(async () => {
      await gw?.cleanup();
      for (const up of Object.values(ups)) await up.close();
    });

    test('while a slow request is in flight on a, ten quick sequential requests all go to b', async () => {
      const startedAt = performance.now();
      const slow = served(gw, '/busy/slow');
      await waitUntil(() => ups.a!.requests.length === 1, 3000, 'the first request to reach a');
      const quick: string[] = [];
      for (let i = 0; i < 10; i++) quick.push(await served(gw, `/busy/quick${i}`));
      assert.deepEqual(quick, Array(10).fill('b'));
      assert.equal(await slow, 'a');
      assert.ok(performance.now() - startedAt >= SLOW_MS - 50);
      // a is idle again: the next request may go to it (a and b tie, the rotation decides)
      assert.equal(ups.a!.requests.length, 1);
    });

    test('with nothing in flight, sequential requests share by weight (3:1)', async () => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < 40; i++) {
        const upstream = await served(gw, `/weights/${i}`);
        counts[upstream] = (counts[upstream] ?? 0) + 1;
      }
      assert.deepEqual(counts, { heavy: 30, light: 10 });
    });
  });
}
