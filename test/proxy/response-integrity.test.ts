import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { parseResponses, type ParsedResponse } from '../security/helpers.ts';

/*
 * Every byte of a response arrives as the upstream sent it, whatever the pace of either side. The
 * socket transport reads a plain-TCP upstream into one buffer of its own, again and again; a view of
 * it that a slow client's socket still has queued must never be overwritten by the next read. The
 * bodies here depend on each byte's offset (no period), so a byte from another read shows.
 */

const SIZE = 6 * 1024 * 1024 + 12_345;

function byteAt(i: number): number {
  return (i * 31 + (i >>> 11) + (i >>> 19) * 7) & 0xff;
}

function pattern(from: number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let k = 0; k < n; k++) b[k] = byteAt(from + k);
  return b;
}

const expected = createHash('sha256').update(pattern(0, SIZE)).digest('hex');

/** Writes the body in pieces of varying size (1 B to ~70 KB), honouring backpressure. */
function sendPattern(res: ServerResponse): void {
  let sent = 0;
  let seed = 7;
  const pump = (): void => {
    while (sent < SIZE) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const n = Math.min(SIZE - sent, seed % 5 === 0 ? 1 + (seed % 300) : 1 + (seed % 70_000));
      const ok = res.write(pattern(sent, n));
      sent += n;
      if (!ok) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

/**
 * A raw client that reads slowly: it stops reading for `stallMs` after every `every` bytes, so the
 * gateway's writes to it queue (and its reads from the upstream pause and resume). Resolves with the
 * response, parsed strictly (chunked bodies decoded).
 */
function slowGet(port: number, path: string, every: number, stallMs: number): Promise<ParsedResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let sinceStall = 0;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      sinceStall += c.length;
      if (sinceStall >= every) {
        sinceStall = 0;
        socket.pause();
        setTimeout(() => socket.resume(), stallMs);
      }
    });
    socket.on('end', () => {
      const parsed = parseResponses(Buffer.concat(chunks), { ended: true });
      if (parsed.error !== undefined || parsed.responses.length !== 1) reject(new Error(`${parsed.responses.length} responses, ${parsed.error ?? 'no error'}`));
      else resolve(parsed.responses[0]!);
    });
    socket.on('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: integrity.test\r\nConnection: close\r\n\r\n`);
  });
}

describe('response bodies arrive intact (slow clients, uneven upstream writes)', () => {
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('pattern', (req, res) => {
      if (req.url === '/length') res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(SIZE) });
      else res.writeHead(200, { 'content-type': 'application/octet-stream' }); // chunked
      sendPattern(res);
    });
    gw = await startGateway({ routes: { routes: [{ id: 'p', uri: '/*', upstream: { nodes: { [upstream.address]: 1 } } }] } });
  });

  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  for (const [path, framing] of [
    ['/length', 'content-length'],
    ['/chunked', 'chunked'],
  ] as const) {
    test(`${framing}: a client that stalls 40 ms every 256 KiB gets every byte`, async () => {
      const response = await slowGet(gw.port, path, 256 * 1024, 40);
      assert.equal(response.status, 200);
      assert.equal(response.framing, framing);
      assert.equal(response.body.length, SIZE);
      assert.equal(createHash('sha256').update(response.body).digest('hex'), expected);
    });
  }

  test('three slow clients at once, each gets every byte', async () => {
    const responses = await Promise.all([
      slowGet(gw.port, '/length', 64 * 1024, 15),
      slowGet(gw.port, '/chunked', 512 * 1024, 60),
      slowGet(gw.port, '/length', 1024 * 1024, 100),
    ]);
    for (const [i, { body }] of responses.entries()) {
      assert.equal(createHash('sha256').update(body).digest('hex'), expected, `client ${i}`);
    }
  });
});
