import assert from 'node:assert/strict';
import http, { type IncomingMessage } from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { ConnectionPools } from '../../src/upstream/pools.ts';
import { closedPort, listen, closeServer, makeTarget, prefixRoutes, startGateway, type Running } from './helpers.ts';

describe('WebSocket proxy', () => {
  const pools = new ConnectionPools();
  const upstreamServer = http.createServer();
  const wss = new WebSocketServer({ server: upstreamServer });
  let upgradeHeaders: IncomingMessage['headers'] | undefined;
  let gateway: Running;
  let silent: net.Server;

  before(async () => {
    wss.on('connection', (socket, req) => {
      upgradeHeaders = req.headers;
      socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
    });
    const port = await listen(upstreamServer);
    // accepts and reads (so it sees the proxy hang up), never answers
    silent = net.createServer((socket) => socket.resume());
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as net.AddressInfo).port;
    const deadPort = await closedPort();
    gateway = await startGateway(
      prefixRoutes({
        '/ws': makeTarget({ [`127.0.0.1:${deadPort}`]: 1, [`127.0.0.1:${port}`]: 1 }),
        '/down': makeTarget({ [`127.0.0.1:${deadPort}`]: 1 }),
        '/slow': makeTarget({ [`127.0.0.1:${silentPort}`]: 1 }, { timeout: { connect: 1000, send: 1000, read: 300 } }),
      }, { websocket: true }),
      pools,
    );
  });

  after(async () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
    await closeServer(upstreamServer);
    await gateway.close();
    await new Promise((resolve) => silent.close(resolve));
    await pools.destroy();
  });

  it('echoes text and binary messages through the proxy (after retrying a dead node)', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gateway.port}/ws/echo?room=1`, { headers: { 'X-Client': 'test' } });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const replies: string[] = [];
    const done = new Promise<void>((resolve) => {
      ws.on('message', (data: Buffer, isBinary) => {
        replies.push(isBinary ? `bin:${data.length}` : data.toString());
        if (replies.length === 3) resolve();
      });
    });
    ws.send('hello');
    ws.send(Buffer.alloc(100_000, 1));
    ws.send('bye');
    await done;
    assert.deepEqual(replies, ['hello', 'bin:100000', 'bye']);
    assert.equal(upgradeHeaders?.['x-client'], 'test');
    assert.equal(upgradeHeaders?.['x-real-ip'], '127.0.0.1');
    assert.equal(upgradeHeaders?.upgrade, 'websocket');
    const closed = new Promise((resolve) => ws.once('close', resolve));
    ws.close();
    await closed;
  });

  it('answers 404 on the raw socket when no route matches', async () => {
    const status = await handshakeStatus(gateway.port, '/nope');
    assert.equal(status, 404);
  });

  it('answers 502 when no node can be connected', async () => {
    assert.equal(await handshakeStatus(gateway.port, '/down'), 502);
  });

  it('answers 504 when the upstream does not answer the handshake within timeout.read', async () => {
    assert.equal(await handshakeStatus(gateway.port, '/slow'), 504);
  });
});

function handshakeStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode!);
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => reject(new Error('handshake unexpectedly succeeded')));
    ws.once('error', (err) => reject(err));
  });
}
