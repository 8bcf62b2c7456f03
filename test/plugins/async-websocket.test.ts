/**
 * A plugin that decides asynchronously (a Redis counter, a remote lookup) on a WebSocket route: the
 * connection becomes a tunnel once it has decided, on both transports. (On the socket transport the
 * hand-over used to happen only for synchronous chains: an async one left the upgrade hanging.)
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';

const SLOW_PLUGIN = `
export default {
  name: 'slow-gate',
  priority: 1000,
  schema: { type: 'object', properties: { ms: { type: 'integer', default: 30 } } },
  // decides after a timer, as a plugin waiting on Redis would
  access(conf, ctx) {
    return new Promise((resolve) => setTimeout(() => resolve(ctx.request.header('x-pass') === 'yes' ? undefined : { status: 403, body: { message: 'no' } }), conf.ms));
  },
};
`;

describe('an asynchronous plugin in front of a WebSocket route', () => {
  let wss: WebSocketServer;
  let gw: GatewayProcess;
  let dir: string;
  const seenHeaders: Record<string, string | string[] | undefined>[] = [];
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portico-async-ws-'));
    writeFileSync(path.join(dir, 'slow-gate.mjs'), SLOW_PLUGIN);
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    wss.on('connection', (ws, req) => {
      seenHeaders.push(req.headers);
      ws.on('message', (m) => ws.send(`echo:${m.toString()}`));
    });
    const port = (wss.address() as AddressInfo).port;
    gw = await startGateway({
      routes: {
        routes: [
          { id: 'ws', uri: '/ws', enable_websocket: true, upstream: { nodes: { [`127.0.0.1:${port}`]: 1 } }, plugins: { 'slow-gate': {} } },
          {
            id: 'ws-auth',
            uri: '/ws-auth',
            enable_websocket: true,
            upstream: { nodes: { [`127.0.0.1:${port}`]: 1 } },
            plugins: { 'key-auth': {}, 'proxy-rewrite': { headers: { set: { 'X-Via-Plugin': 'yes' } } } },
          },
        ],
        consumers: [{ username: 'ann', plugins: { 'key-auth': { key: 'k-ann' } } }],
      },
      extra: { plugin_dirs: [dir] },
    });
  });
  after(async () => {
    await gw?.cleanup();
    for (const c of wss?.clients ?? []) c.terminate();
    await new Promise((r) => wss?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes: the tunnel opens and carries messages', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`, { headers: { 'x-pass': 'yes' } });
    await once(ws, 'open');
    ws.send('hi');
    const [reply] = (await Promise.race([once(ws, 'message'), new Promise((_, reject) => setTimeout(() => reject(new Error('no echo within 3 s')), 3000))])) as [Buffer];
    assert.equal(reply.toString(), 'echo:hi');
    ws.close();
  });

  it("refused: the plugin's 403 is the answer to the upgrade", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`);
    ws.on('error', () => {}); // terminate() below, before any connection: not a failure
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, { statusCode: number }];
    assert.equal(res.statusCode, 403);
    ws.terminate();
  });

  it('an auth plugin guards the upgrade; the plugins\' upstream edits and the consumer reach the handshake', async () => {
    const refused = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-auth`);
    refused.on('error', () => {});
    const [, res] = (await once(refused, 'unexpected-response')) as [unknown, { statusCode: number }];
    assert.equal(res.statusCode, 401);
    refused.terminate();
    const before = seenHeaders.length;
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-auth`, { headers: { apikey: 'k-ann' } });
    await once(ws, 'open');
    assert.equal(seenHeaders.length, before + 1);
    assert.equal(seenHeaders[before]!['x-consumer-username'], 'ann');
    assert.equal(seenHeaders[before]!['x-via-plugin'], 'yes');
    ws.close();
  });
});
