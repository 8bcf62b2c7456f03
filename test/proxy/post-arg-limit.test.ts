import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/*
 * proxy.max_post_args_readable_size: a body up to the limit is matched on its post args; a larger
 * one is not (APISIX's rule), and still reaches the plain route whole. Both transports.
 */

function post(gw: GatewayProcess, body: string, chunked = false): Promise<{ status: number; upstream?: string; length?: number }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (!chunked) headers['content-length'] = String(Buffer.byteLength(body));
    const req = http.request(`${gw.url}/hello`, { method: 'POST', headers, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        if (res.statusCode !== 200) return resolve({ status: res.statusCode! });
        const j = JSON.parse(text) as { upstream: string; headers: Record<string, string> };
        resolve({ status: 200, upstream: j.upstream });
      });
    });
    req.on('error', reject);
    if (chunked) {
      req.write(body.slice(0, 10));
      req.end(body.slice(10));
    } else req.end(body);
  });
}

for (const transport of ['socket', 'node'] as const) {
  describe(`proxy.max_post_args_readable_size (${transport} transport)`, () => {
    let gw: GatewayProcess;
    let matched: TestUpstream;
    let plain: TestUpstream;

    before(async () => {
      matched = await startUpstream('matched');
      plain = await startUpstream('plain');
      gw = await startGateway({
        proxy: { transport, max_post_args_readable_size: 100 },
        routes: {
          routes: [
            { id: 'by-body', uri: '/hello', priority: 1, vars: [['post_arg.model', '==', 'openai']], upstream: { nodes: { [matched.address]: 1 } } },
            { id: 'plain', uri: '/hello', upstream: { nodes: { [plain.address]: 1 } } },
          ],
        },
      });
    });
    after(async () => {
      await gw?.cleanup();
      await matched?.close();
      await plain?.close();
    });

    test('a body within the limit is matched by its post args', async () => {
      const body = JSON.stringify({ model: 'openai', pad: 'x'.repeat(40) });
      assert.ok(body.length <= 100);
      assert.deepEqual(await post(gw, body), { status: 200, upstream: 'matched' });
      assert.deepEqual(await post(gw, body, true), { status: 200, upstream: 'matched' });
    });

    test('a larger body is not (declared or chunked) and reaches the plain route', async () => {
      const body = JSON.stringify({ model: 'openai', pad: 'x'.repeat(200) });
      assert.deepEqual(await post(gw, body), { status: 200, upstream: 'plain' });
      assert.deepEqual(await post(gw, body, true), { status: 200, upstream: 'plain' });
    });
  });
}
