/**
 * Upstream `timeout.send` (nginx's proxy_send_timeout): an upstream that stops taking the request
 * body is given up after `send` seconds of no progress, with 504, even when `read` is long. Socket
 * transport only (undici, behind the node transport, has no send timeout: there `read` bounds it).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';

const socketTransport = (process.env.PORTICO_PROXY_TRANSPORT ?? 'socket') === 'socket';

describe('upstream timeout.send', { skip: socketTransport ? false : 'the node transport has no upstream send timeout' }, () => {
  const held = new Set<Socket>();
  const server = createServer((socket) => {
    // accepts the connection, never reads: its receive buffer fills, then the gateway's writes block
    held.add(socket);
    socket.pause();
    socket.on('error', () => {});
  });
  let gw: GatewayProcess;
  before(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    gw = await startGateway({
      routes: { routes: [{ id: 'up', uri: '/upload', upstream: { nodes: { [`127.0.0.1:${port}`]: 1 }, timeout: { connect: 2, send: 1, read: 30 } } }] },
    });
  });
  after(async () => {
    await gw?.cleanup();
    for (const s of held) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it('an upstream that stops taking the body: 504 after ~1 s, not after read (30 s)', async () => {
    const started = Date.now();
    const chunk = Buffer.alloc(256 * 1024, 'u');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: gw.port, path: '/upload', method: 'POST', headers: { 'content-length': String(256 * chunk.length) } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      // 64 MB, as fast as the gateway takes it: far more than the upstream's buffers hold
      let sent = 0;
      const pump = (): void => {
        while (sent < 256) {
          sent++;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end();
      };
      pump();
    });
    const ms = Date.now() - started;
    assert.equal(status, 504);
    assert.ok(ms < 8000, `answered after ${ms} ms`);
  });
});
