import assert from 'node:assert/strict';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/*
 * ewma through the gateway process, on both transports: the data plane reports each attempt's
 * latency, so traffic moves to the node that answers fast, and away from one that fails fast.
 */

/** answers `{upstream: name}` after `ms` */
function answerAfter(name: string, ms: number) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ upstream: name })), ms);
  };
}

for (const transport of ['socket', 'node'] as const) {
  describe(`ewma through the gateway (${transport} transport)`, () => {
    const ups: Record<string, TestUpstream> = {};
    let gw: GatewayProcess;

    before(async () => {
      ups.a = await startUpstream('a', answerAfter('a', 150));
      ups.b = await startUpstream('b', answerAfter('b', 5));
      // takes the request, then resets the connection without a byte of answer
      ups.reset = await startUpstream('reset', (req) => req.socket.destroy());
      ups.ok = await startUpstream('ok', answerAfter('ok', 5));
      const node = (name: string) => ({ host: '127.0.0.1', port: ups[name]!.port, weight: 1 });
      gw = await startGateway({
        proxy: { transport },
        routes: {
          routes: [
            { id: 'latency', uri: '/latency/*', upstream: { type: 'ewma', nodes: [node('a'), node('b')] } },
            { id: 'failing', uri: '/failing/*', upstream: { type: 'ewma', nodes: [node('reset'), node('ok')] } },
          ],
        },
      });
    });

    after(async () => {
      await gw?.cleanup();
      for (const up of Object.values(ups)) await up.close();
    });

    test('a answers in 150 ms, b in 5 ms: of 100 sequential requests most go to b', async () => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < 100; i++) {
        const res = await fetch(`${gw.url}/latency/${i}`);
        assert.equal(res.status, 200);
        const { upstream } = (await res.json()) as { upstream: string };
        counts[upstream] = (counts[upstream] ?? 0) + 1;
      }
      assert.ok((counts.b ?? 0) >= 70, `b served ${counts.b ?? 0} of 100 (${JSON.stringify(counts)})`);
      // a, never measured at first, is tried (APISIX: unmeasured nodes score 0)
      assert.ok((counts.a ?? 0) >= 1, JSON.stringify(counts));
    });

    test('a node that resets connections at once is not mistaken for a fast one', async () => {
      for (let i = 0; i < 30; i++) await (await fetch(`${gw.url}/failing/${i}`)).arrayBuffer();
      // its failures end in about a millisecond: counted as latency, they would draw the traffic
      assert.ok(ups.reset!.requests.length <= 3, `the resetting node got ${ups.reset!.requests.length} of 30 requests`);
      assert.ok(ups.ok!.requests.length >= 27, `ok served ${ups.ok!.requests.length}`);
    });
  });
}
