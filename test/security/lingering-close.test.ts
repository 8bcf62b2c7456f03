/**
 * Lingering close: when the gateway answers and closes while the client is still sending (a body the
 * gateway refused, bad bytes followed by more), the client must get the answer, not a reset. Before
 * the fix the gateway closed its socket with bytes unread, the kernel answered them with RST, and
 * the client's 405/400 was often lost (the request fuzz found it: "0 answers ... reset after 1 ms").
 * Both transports.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { catchAllRoutes, parseResponses, startRecordingUpstream, type RecordingUpstream } from './helpers.ts';

interface TrickleResult {
  text: string;
  /** an error (ECONNRESET, EPIPE) while we were still sending or reading */
  error: string | undefined;
  /** the gateway's FIN came */
  ended: boolean;
}

/**
 * Writes `head`, then `pieces` chunks of `pieceBytes` every `everyMs` whatever comes back, then
 * ends; collects what the gateway sends until the socket closes.
 */
function trickle(port: number, head: string, pieces: number, pieceBytes: number, everyMs: number): Promise<TrickleResult> {
  return new Promise((resolve) => {
    const received: Buffer[] = [];
    let error: string | undefined;
    let ended = false;
    // allowHalfOpen: like an uploading client, we go on sending after the gateway's FIN
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const deadline = setTimeout(() => socket.destroy(), 10_000);
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('end', () => (ended = true));
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
    socket.on('close', () => {
      clearTimeout(deadline);
      resolve({ text: Buffer.concat(received).toString('latin1'), error, ended });
    });
    socket.once('connect', async () => {
      // the head and the body's first bytes in one write, the rest right behind
      socket.write(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.alloc(pieceBytes, 0x61)]));
      for (let i = 1; i < pieces && !socket.destroyed; i++) {
        if (everyMs > 0) await new Promise((r) => setTimeout(r, everyMs));
        if (!socket.destroyed) socket.write(Buffer.alloc(pieceBytes, 0x61));
      }
      if (!socket.destroyed) socket.end();
    });
  });
}

for (const transport of ['socket', 'node'] as const) {
  describe(`lingering close (${transport} transport)`, () => {
    let upstream: RecordingUpstream;
    let gw: GatewayProcess;

    before(async () => {
      upstream = await startRecordingUpstream();
      gw = await startGateway({ routes: catchAllRoutes(upstream), proxy: { transport } });
    });
    after(async () => {
      await gw?.cleanup();
      await upstream?.close();
    });

    it('a refused request whose body is still coming: the client gets the 405, then a FIN, never a reset', async () => {
      for (let round = 0; round < 10; round++) {
        const head = 'TRACE /fz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 40000\r\n\r\n';
        const r = await trickle(gw.port, head, 10, 4000, round % 2);
        assert.equal(r.error, undefined, `round ${round}: the connection was reset (${r.error}); got ${JSON.stringify(r.text)}`);
        const answers = parseResponses(Buffer.from(r.text, 'latin1'), { ended: true }).responses;
        assert.equal(answers.length, 1, `round ${round}: ${JSON.stringify(r.text)}`);
        assert.equal(answers[0]!.status, 405);
        assert.ok(r.ended, 'the gateway closes its side after the answer');
      }
      assert.equal(upstream.seen.length, 0, 'a refused request never reaches the upstream');
    });

    it('bad bytes answered 400 while more bytes follow: the 400 arrives, then a FIN', async () => {
      for (let round = 0; round < 10; round++) {
        // a NUL in a header value: refused at once, the connection closes after the answer
        const head = 'POST /fz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\nContent-Length: 30000\r\n\r\n';
        const r = await trickle(gw.port, head, 10, 3000, round % 2);
        assert.equal(r.error, undefined, `round ${round}: the connection was reset (${r.error}); got ${JSON.stringify(r.text)}`);
        const answers = parseResponses(Buffer.from(r.text, 'latin1'), { ended: true }).responses;
        assert.equal(answers.length, 1, `round ${round}: ${JSON.stringify(r.text)}`);
        assert.equal(answers[0]!.status, 400);
        assert.ok(r.ended);
      }
    });

    it('a client that stops sending after the answer is closed after the linger idle time, not kept', async () => {
      const started = Date.now();
      // a 405 with Connection: close, the body never sent, our side never closed
      const r = await new Promise<{ closedAfter: number; text: string }>((resolve) => {
        // allowHalfOpen: we keep our side open after the gateway's FIN, as a silent client would
        const socket = connect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true });
        const received: Buffer[] = [];
        socket.on('data', (d: Buffer) => received.push(d));
        socket.on('error', () => {});
        socket.on('close', () => resolve({ closedAfter: Date.now() - started, text: Buffer.concat(received).toString('latin1') }));
        socket.on('end', () => {
          // our side stays open: only the gateway's timer can end this. A byte sent after the gateway
          // let go is answered with a reset, which the next write reports
          setTimeout(() => socket.write('x'), 6_500).unref();
          setTimeout(() => socket.write('y'), 7_000).unref();
        });
        socket.write('TRACE /fz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n');
        setTimeout(() => socket.destroy(), 9_000).unref();
      });
      assert.match(r.text, /^HTTP\/1\.1 405 /);
      // the writes at 6.5 s and 7 s find the socket gone (reset): the gateway let go after ~5 s of silence
      assert.ok(r.closedAfter < 8_500, `the connection lived ${r.closedAfter} ms`);
    });
  });
}
