import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { parseResponses } from '../security/helpers.ts';

/*
 * The socket transport reads every plain-HTTP client connection into one buffer they all share
 * (src/proxy/http1/client-connection.ts): whatever must outlive a read — the rest of a pipelined
 * batch behind a paused parser, body bytes that the upstream socket queues, a tunnel's first bytes —
 * is copied out before the next read of any connection lands there. Each test here keeps such bytes
 * waiting (a slow upstream) while other connections ("noise") read 14 KB heads into the same buffer
 * without pause, and checks that every byte arrives as sent. Each fails if its copy is left out.
 */

/** Offset-dependent bytes (no period): a byte from another read shows. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >>> 9) + seed * 7) & 0xff;
  return b;
}

/** what the client sends, slowly, before the upstream starts reading the body */
const STALLED = 6 * 1024 * 1024;
const CRLF = Buffer.from('\r\n');
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Keep-alive GETs with a 14 KB header, one after another (1 ms apart) on `n` connections, until stop(). */
function noise(port: number, n: number): { stop(): void; count(): number } {
  let stopped = false;
  let served = 0;
  const head = `GET /noise HTTP/1.1\r\nHost: noise.test\r\nX-Noise: ${'z'.repeat(14_000)}\r\n\r\n`;
  const sockets: Socket[] = [];
  for (let i = 0; i < n; i++) {
    const socket = connect(port, '127.0.0.1');
    sockets.push(socket);
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (s: string) => {
      got += s;
      if (!got.endsWith('\r\n\r\nok')) return;
      got = '';
      served++;
      // paced: a gateway kept busy would merge the test's small reads into full ones
      if (!stopped) setTimeout(() => stopped || socket.write(head), 1);
    });
    socket.on('error', () => {});
    socket.write(head);
  }
  return {
    stop: () => {
      stopped = true;
      for (const s of sockets) s.destroy();
    },
    count: () => served,
  };
}

/** Runs `body` while 3 noise connections read into the shared buffer; they must have been served meanwhile. */
async function withNoise(port: number, body: () => Promise<void>): Promise<void> {
  const busy = noise(port, 3);
  try {
    await body();
    assert.ok(busy.count() > 20, `noise served ${busy.count()} requests meanwhile`);
  } finally {
    busy.stop();
  }
}

describe('the shared client read buffer: bytes kept beyond a read are never overwritten', () => {
  let upstream: TestUpstream;
  let noiseUpstream: TestUpstream;
  let wsUpstream: Server;
  let gw: GatewayProcess;
  let releaseUpload: (() => void) | undefined;

  before(async () => {
    upstream = await startUpstream('slow', (req, res) => {
      if (req.url!.startsWith('/upload')) {
        // reads nothing until the client has sent STALLED bytes: the gateway's writes of the body
        // queue once the kernel's buffers between them are full (~4 MB on loopback)
        req.pause();
        const hash = createHash('sha256');
        req.on('data', (c: Buffer) => hash.update(c));
        req.on('end', () => res.end(hash.digest('hex')));
        releaseUpload = () => req.resume();
        return;
      }
      // /pipelined/<n>: answers late, with the request's target and header
      req.resume();
      setTimeout(() => res.end(`${req.url} ${String(req.headers['x-tag'])}`), 40);
    });
    noiseUpstream = await startUpstream('noise', (req, res) => {
      req.resume();
      res.end('ok');
    });
    // a WebSocket-like upstream: 101 after 150 ms, then echoes what it receives
    wsUpstream = createServer();
    wsUpstream.on('upgrade', (_req, socket: Socket) => {
      setTimeout(() => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
        socket.pipe(socket);
      }, 150);
    });
    wsUpstream.listen(0, '127.0.0.1');
    await once(wsUpstream, 'listening');
    const wsAddress = `127.0.0.1:${(wsUpstream.address() as AddressInfo).port}`;
    gw = await startGateway({
      routes: {
        routes: [
          { id: 'noise', uri: '/noise', upstream: { nodes: { [noiseUpstream.address]: 1 } } },
          { id: 'ws', uri: '/ws', enable_websocket: true, upstream: { nodes: { [wsAddress]: 1 } } },
          { id: 'slow', uri: '/*', upstream: { nodes: { [upstream.address]: 1 } } },
        ],
      },
    });
  });

  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
    await noiseUpstream?.close();
    wsUpstream?.closeAllConnections();
    await new Promise((r) => wsUpstream?.close(r));
  });

  for (const framing of ['content-length', 'chunked'] as const) {
    test(`${framing} request body written to an upstream that stalls, in small pieces, with noise: arrives intact`, async () => {
      const body = pattern(STALLED + 1024 * 1024 + 333, framing.length);
      await withNoise(gw.port, async () => {
        const socket = connect(gw.port, '127.0.0.1');
        await once(socket, 'connect');
        const received: Buffer[] = [];
        socket.on('data', (c: Buffer) => received.push(c));
        const ended = once(socket, 'end');
        const framingHeader = framing === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${body.length}`;
        socket.write(`POST /upload HTTP/1.1\r\nHost: upload.test\r\nConnection: close\r\n${framingHeader}\r\n\r\n`);
        // 8 KB pieces 1 ms apart: the gateway reads each alone (into the shared buffer, which they
        // do not fill) and writes it upstream, until a write is queued; then the rest, at full speed
        const send = async (from: number, to: number, piece: number, pace: boolean): Promise<void> => {
          for (let at = from; at < to; ) {
            const n = Math.min(to - at, piece);
            const bytes = body.subarray(at, at + n);
            const ok = socket.write(framing === 'chunked' ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), bytes, CRLF]) : bytes);
            at += n;
            if (pace) await sleep(1);
            else if (!ok) await once(socket, 'drain');
          }
        };
        await send(0, STALLED, 8 * 1024, true);
        releaseUpload!();
        await send(STALLED, body.length, 64 * 1024, false);
        if (framing === 'chunked') socket.write('0\r\n\r\n');
        await ended;
        const parsed = parseResponses(Buffer.concat(received), { ended: true });
        assert.equal(parsed.error, undefined);
        assert.equal(parsed.responses.length, 1);
        assert.equal(parsed.responses[0]!.status, 200);
        assert.equal(parsed.responses[0]!.body.toString(), sha(body), 'the upstream received other bytes than were sent');
      });
    });
  }

  test('pipelined requests behind a slow one, with noise: each answered for itself, in order', async () => {
    await withNoise(gw.port, async () => {
      const socket = connect(gw.port, '127.0.0.1');
      const received: Buffer[] = [];
      socket.on('data', (c: Buffer) => received.push(c));
      const ended = once(socket, 'end');
      const n = 6;
      let batch = '';
      for (let i = 1; i <= n; i++) {
        batch += `GET /pipelined/${i}?pad=${String(i).repeat(300)} HTTP/1.1\r\nHost: pipe.test\r\nX-Tag: tag-${i}-${'t'.repeat(200)}\r\n${i === n ? 'Connection: close\r\n' : ''}\r\n`;
      }
      // one write: the parser keeps requests 2..n while the first is served (40 ms each)
      socket.write(batch);
      await ended;
      const parsed = parseResponses(Buffer.concat(received), { ended: true });
      assert.equal(parsed.error, undefined);
      assert.deepEqual(
        parsed.responses.map((r) => `${r.status} ${r.body.toString()}`),
        Array.from({ length: n }, (_, k) => `200 /pipelined/${k + 1}?pad=${String(k + 1).repeat(300)} tag-${k + 1}-${'t'.repeat(200)}`),
      );
    });
  });

  test('the bytes sent with an upgrade request, before the 101, reach the upstream as sent, with noise', async () => {
    await withNoise(gw.port, async () => {
      const payload = pattern(3000, 5);
      const socket = connect(gw.port, '127.0.0.1');
      const received: Buffer[] = [];
      socket.on('data', (c: Buffer) => received.push(c));
      socket.write(Buffer.concat([Buffer.from('GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n'), payload]));
      const deadline = Date.now() + 5000;
      const marker = Buffer.from('\r\n\r\n');
      let echoed = Buffer.alloc(0);
      while (Date.now() < deadline) {
        const all = Buffer.concat(received);
        const headEnd = all.indexOf(marker);
        if (headEnd >= 0) {
          assert.match(all.subarray(0, headEnd).toString('latin1'), /^HTTP\/1\.1 101 /);
          echoed = all.subarray(headEnd + 4);
          if (echoed.length >= payload.length) break;
        }
        await sleep(10);
      }
      socket.destroy();
      assert.equal(echoed.length, payload.length);
      assert.equal(sha(echoed), sha(payload), 'the tunnel carried other bytes than were sent');
    });
  });
});
