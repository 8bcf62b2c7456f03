/**
 * Issue 6, items 6 and 7 (client half): every client connection is bounded in time by
 * proxy.timeouts, and a connection that times out is destroyed — not half-closed and left to a
 * client that never closes its side. Run with 1-second timeouts through the gateway process:
 * - header (total, from the first byte): silent, partial and trickled heads → 408 and closed;
 * - request_body (idle between reads): a stalled body → 408 and closed, a slow one that keeps
 *   moving goes through;
 * - keepalive: an idle kept-alive connection is closed;
 * - send: a client that never reads a large response is cut off and the upstream connection
 *   serving it is closed (a slow reader that keeps reading is not);
 * - 200 silent connections leave no file descriptor behind.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { finalResponses, headerValue, parseResponses, startRecordingUpstream, type RecordingUpstream } from './helpers.ts';

const BIG_BODY = 50 * 1024 * 1024;

/**
 * A client connection that watches how the gateway ends it. `allowHalfOpen`: like a hostile client,
 * it does not answer the gateway's FIN with its own, so only the gateway can free the connection.
 */
class Client {
  readonly socket: Socket;
  readonly started = Date.now();
  private readonly chunks: Buffer[] = [];
  /** ms after connect when the gateway's FIN arrived */
  endedAfter: number | undefined;
  /** ms after connect when the socket closed (FIN both ways, or reset) */
  closedAfter: number | undefined;
  reset = false;
  /** the connection's two ports, kept: a socket that closed no longer reports them */
  private ports: { local: number; remote: number } | undefined;

  constructor(port: number, options: { read?: boolean; allowHalfOpen?: boolean } = {}) {
    this.socket = connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? true });
    this.socket.once('connect', () => (this.ports = { local: this.socket.localPort!, remote: this.socket.remotePort! }));
    if (options.read !== false) this.socket.on('data', (d: Buffer) => this.chunks.push(d));
    else this.socket.pause();
    this.socket.on('end', () => (this.endedAfter ??= Date.now() - this.started));
    this.socket.on('error', () => (this.reset = true));
    this.socket.on('close', () => (this.closedAfter ??= Date.now() - this.started));
  }

  async connected(): Promise<this> {
    if (!this.socket.connecting) return this;
    await new Promise((r) => this.socket.once('connect', r));
    return this;
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }

  /**
   * Whether the gateway let go of its side of this connection within `withinMs`: its socket is gone
   * from /proc/net/tcp, or is left to the kernel (inode 0: no process holds it) — rather than
   * half-closed and kept open, waiting for a FIN this client never sends.
   */
  async gatewayReleased(withinMs: number): Promise<boolean> {
    if (this.ports === undefined) throw new Error('gatewayReleased() before the connection was made');
    const gatewaySide = `${tcpAddress(this.ports.remote)} ${tcpAddress(this.ports.local)}`;
    const deadline = Date.now() + withinMs;
    for (;;) {
      const row = readFileSync('/proc/net/tcp', 'latin1')
        .split('\n')
        .map((line) => line.trim().split(/\s+/))
        .find((f) => `${f[1]} ${f[2]}` === gatewaySide);
      if (row === undefined || row[9] === '0') return true;
      if (Date.now() > deadline) return false;
      await sleep(50);
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** 127.0.0.1:port as /proc/net/tcp writes it */
function tcpAddress(port: number): string {
  return `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
}

function socketCount(pid: number): number {
  let count = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) count++;
    } catch {
      /* closed while listing */
    }
  }
  return count;
}

/** Asserts a 408 APISIX-style answer that says the connection closes. */
function assert408(text: string): void {
  const [response] = finalResponses(parseResponses(Buffer.from(text, 'latin1'), { ended: true }));
  assert.ok(response, `no response: ${JSON.stringify(text)}`);
  assert.equal(response.status, 408);
  assert.deepEqual(JSON.parse(response.body.toString()), { error_msg: '408 Request Timeout' });
  assert.equal(headerValue(response, 'connection'), 'close');
}

describe('client timeouts (proxy.timeouts, 1 s each)', () => {
  let echo: RecordingUpstream;
  let big: TestUpstream;
  /** when the gateway's connections to `big` closed, by remote port */
  const bigConnections = new Map<number, { closedAt?: number; bytesSent: number }>();
  let gw: GatewayProcess;

  before(async () => {
    echo = await startRecordingUpstream('echo');
    big = await startUpstream('big', (req, res: ServerResponse) => {
      const record = { bytesSent: 0 } as { closedAt?: number; bytesSent: number };
      bigConnections.set(req.socket.remotePort!, record);
      req.socket.once('close', () => (record.closedAt = Date.now()));
      // /big?mb=N for a smaller body
      const size = /mb=(\d+)/.test(req.url!) ? Number(/mb=(\d+)/.exec(req.url!)![1]) * 1024 * 1024 : BIG_BODY;
      res.writeHead(200, { 'content-length': size, 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = () => {
        while (record.bytesSent < size && !res.destroyed) {
          record.bytesSent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        if (!res.destroyed) res.end();
      };
      pump();
    });
    gw = await startGateway({
      routes: {
        routes: [
          { id: 'big', uri: '/big', upstream: { nodes: { [big.address]: 1 }, timeout: { connect: 5, send: 5, read: 5 } } },
          { id: 'echo', uri: '/*', upstream: { nodes: { [echo.address]: 1 } } },
        ],
      },
      proxy: { timeouts: { header: 1, keepalive: 1, request_body: 1, send: 1 } },
    });
  });

  after(async () => {
    await gw?.cleanup();
    await echo?.close();
    await big?.close();
  });

  describe('header', () => {
    test('a silent connection: 408 after ~1 s, then the connection is released', async () => {
      const client = await new Client(gw.port).connected();
      // and an ordinary client, which answers FIN with FIN: it sees the socket close
      const plain = await new Client(gw.port, { allowHalfOpen: false }).connected();
      await waitUntil(() => client.endedAfter !== undefined, 4000, "the gateway's FIN");
      assert408(client.text);
      assert.ok(client.endedAfter! >= 900 && client.endedAfter! < 2000, `FIN after ${client.endedAfter} ms`);
      assert.ok(await client.gatewayReleased(1000), 'the gateway kept its half-closed socket');
      await waitUntil(() => plain.closedAfter !== undefined, 1000, "the plain client's 'close'");
      assert408(plain.text);
      assert.ok(plain.closedAfter! < 2000, `closed after ${plain.closedAfter} ms`);
      client.destroy();
    });

    test('a partial head: 408 and released', async () => {
      const client = await new Client(gw.port).connected();
      client.socket.write('GET /x HTTP/1.1\r\nHost: a.test\r\nX-Part');
      await waitUntil(() => client.endedAfter !== undefined, 4000, "the gateway's FIN");
      assert408(client.text);
      assert.ok(client.endedAfter! < 2000, `FIN after ${client.endedAfter} ms`);
      assert.ok(await client.gatewayReleased(1000), 'the gateway kept its half-closed socket');
      assert.equal(echo.seen.filter((r) => r.url === '/x').length, 0);
      client.destroy();
    });

    test('a head trickled one byte per 300 ms is cut by the total, not reset by each byte', async () => {
      const client = await new Client(gw.port).connected();
      const head = 'GET /trickle HTTP/1.1\r\nHost: a.test\r\nX-Slow: ' + 'a'.repeat(100);
      let i = 0;
      const trickle = setInterval(() => {
        if (client.endedAfter === undefined && !client.socket.destroyed && i < head.length) client.socket.write(head[i++]!);
      }, 300);
      try {
        await waitUntil(() => client.endedAfter !== undefined, 5000, "the gateway's FIN");
      } finally {
        clearInterval(trickle);
      }
      assert408(client.text);
      assert.ok(client.endedAfter! < 2000, `FIN after ${client.endedAfter} ms (${i} bytes sent)`);
      assert.ok(await client.gatewayReleased(1000), 'the gateway kept its half-closed socket');
      client.destroy();
    });

    test('on a kept-alive connection, the next head has its own ~1 s from its first byte', async () => {
      // the deadline is restarted per request without re-arming a timer (LazyTimer): the timer armed
      // for the first head fires ~1 s after the connection, and must then wait for this head's own end
      const client = await new Client(gw.port).connected();
      client.socket.write('GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n');
      await waitUntil(() => finalResponses(parseResponses(Buffer.from(client.text, 'latin1'))).length === 1, 3000, 'the first response');
      await sleep(600);
      const partialAt = Date.now() - client.started;
      client.socket.write('GET /second HTTP/1.1\r\nHost: a.test\r\nX-Part');
      await waitUntil(() => client.endedAfter !== undefined, 4000, "the gateway's FIN");
      const after = client.endedAfter! - partialAt;
      assert.ok(after >= 900 && after < 2000, `FIN ${after} ms after the second head began (${partialAt} ms into the connection)`);
      assert.match(client.text, /HTTP\/1\.1 408 /);
      client.destroy();
    });
  });

  describe('request_body', () => {
    test('a body that stops: 408, released, and the upstream request is aborted', async () => {
      echo.reset();
      const client = await new Client(gw.port).connected();
      client.socket.write('POST /stall HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n0123456789');
      await waitUntil(() => client.endedAfter !== undefined, 4000, "the gateway's FIN");
      assert408(client.text);
      assert.ok(client.endedAfter! >= 900 && client.endedAfter! < 2500, `FIN after ${client.endedAfter} ms`);
      assert.ok(await client.gatewayReleased(1000), 'the gateway kept its half-closed socket');
      client.destroy();
      const seen = echo.seen.find((r) => r.url === '/stall');
      assert.ok(seen, 'the request was forwarded while its body came');
      await waitUntil(() => seen.body.length === 10, 2000, `the upstream to see the cut body (${seen.body.length} bytes, complete: ${seen.complete})`);
      assert.equal(seen.complete, false);
    });

    test('a body that keeps moving (a byte per 300 ms, 2.4 s in all) goes through: the timeout is idle, not total', async () => {
      echo.reset();
      const client = await new Client(gw.port).connected();
      client.socket.write('POST /slow-body HTTP/1.1\r\nHost: a.test\r\nContent-Length: 8\r\n\r\n');
      for (const byte of 'abcdefgh') {
        await sleep(300);
        client.socket.write(byte);
      }
      await waitUntil(() => /\r\n\r\n\{.*\}$/s.test(client.text), 3000, 'the response');
      const [response] = finalResponses(parseResponses(Buffer.from(client.text, 'latin1')));
      assert.equal(response?.status, 200);
      assert.equal(echo.seen.find((r) => r.url === '/slow-body')?.body.toString(), 'abcdefgh');
      client.destroy();
    });
  });

  test('keepalive: an idle kept-alive connection is closed after ~1 s', async () => {
    const client = await new Client(gw.port).connected();
    client.socket.write('GET /ka HTTP/1.1\r\nHost: a.test\r\n\r\n');
    await waitUntil(() => finalResponses(parseResponses(Buffer.from(client.text, 'latin1'))).length === 1, 3000, 'the response');
    const answeredAfter = Date.now() - client.started;
    await waitUntil(() => client.endedAfter !== undefined, 4000, "the gateway's FIN");
    const idle = client.endedAfter! - answeredAfter;
    assert.ok(idle >= 800 && idle < 2500, `closed after ${idle} ms idle`);
    assert.ok(await client.gatewayReleased(1000), 'the gateway kept its half-closed socket');
    client.destroy();
  });

  test('keepalive: counted from the last response, not from the connection', async () => {
    const client = await new Client(gw.port).connected();
    // four requests 500 ms apart: 1.5 s in all, longer than the 1 s keep-alive timeout
    for (let i = 1; i <= 4; i++) {
      client.socket.write(`GET /ka${i} HTTP/1.1\r\nHost: a.test\r\n\r\n`);
      await waitUntil(() => finalResponses(parseResponses(Buffer.from(client.text, 'latin1'))).length === i, 3000, `response ${i}`);
      if (i < 4) await sleep(500);
    }
    assert.equal(client.endedAfter, undefined, 'closed while in use');
    const answeredAfter = Date.now() - client.started;
    await waitUntil(() => client.endedAfter !== undefined, 4000, "the gateway's FIN");
    const idle = client.endedAfter! - answeredAfter;
    assert.ok(idle >= 800 && idle < 2500, `closed after ${idle} ms idle`);
    client.destroy();
  });

  describe('send', () => {
    test('clients that never read a 50 MB response are cut off, and the upstream connections freed', async () => {
      bigConnections.clear();
      const clients = await Promise.all(Array.from({ length: 5 }, () => new Client(gw.port, { read: false }).connected()));
      const sentAt = Date.now();
      for (const client of clients) client.socket.write('GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n');
      await waitUntil(() => bigConnections.size === 5, 5000, 'five upstream requests');
      // stall (buffers full) + 1 s without progress; with node's and the kernel's buffers that is a few s
      await waitUntil(() => [...bigConnections.values()].every((c) => c.closedAt !== undefined), 8000, 'every upstream connection to close');
      const slowest = Math.max(...[...bigConnections.values()].map((c) => c.closedAt! - sentAt));
      for (const c of bigConnections.values()) assert.ok(c.bytesSent < BIG_BODY, `an upstream sent its whole body (${c.bytesSent})`);
      // the clients were cut too — not left holding a stalled response (they read nothing, so a
      // write is what notices the gateway's reset)
      for (const client of clients) assert.ok(await client.gatewayReleased(2000), 'a client connection was left open');
      for (const client of clients) client.destroy();
      console.log(`# upstream connections closed within ${slowest} ms of the requests`);
    });

    test('a client that pipelines requests and never reads the answers is cut off too', async () => {
      // 405s to TRACE: answers of the gateway's own, no upstream involved
      const client = await new Client(gw.port, { read: false }).connected();
      const requests = Buffer.from('TRACE /t HTTP/1.1\r\nHost: a.test\r\n\r\n'.repeat(1000));
      let writing = true;
      const flood = async () => {
        while (writing && !client.socket.destroyed) {
          if (!client.socket.write(requests)) await new Promise((r) => client.socket.once('drain', r).once('close', r));
        }
      };
      void flood();
      try {
        // once both sides' buffers are full nothing moves: 1 s later the gateway lets go
        assert.ok(await client.gatewayReleased(6000), 'the gateway kept the connection of a client that reads nothing');
      } finally {
        writing = false;
        client.destroy();
      }
    });

    test('a slow reader that keeps reading gets the whole body', async () => {
      // 8 MB read in bursts with 300 ms pauses (each shorter than send: 1 s)
      const size = 8 * 1024 * 1024;
      const client = await new Client(gw.port, { read: false }).connected();
      let received = 0;
      client.socket.on('data', (d: Buffer) => (received += d.length));
      client.socket.pause();
      client.socket.write('GET /big?mb=8 HTTP/1.1\r\nHost: a.test\r\n\r\n');
      const deadline = Date.now() + 60_000;
      let pauses = 0;
      // more than `size` in all: the head and the whole body (stopping at `size` could stop short by the head)
      while (received <= size && client.closedAfter === undefined && Date.now() < deadline) {
        await sleep(300);
        pauses++;
        client.socket.resume();
        await sleep(pauses % 10 === 0 ? 100 : 2);
        client.socket.pause();
      }
      assert.equal(client.closedAfter, undefined, `cut after ${received} bytes`);
      assert.ok(received > size, `got ${received} bytes after ${pauses} pauses`); // body + head
      client.destroy();
    });
  });

  test('200 silent connections time out and leave no socket behind', async () => {
    await sleep(1500); // earlier tests' connections are gone
    const before = socketCount(gw.pid);
    const clients = await Promise.all(Array.from({ length: 200 }, () => new Client(gw.port).connected()));
    await waitUntil(() => socketCount(gw.pid) >= before + 200, 3000, 'the gateway to hold 200 more sockets');
    // header: 1 s, checked every 250 ms, then the 408 is flushed and the socket destroyed
    await waitUntil(() => socketCount(gw.pid) <= before + 2, 4000, `the gateway's socket count back to ${before}`);
    // the gateway has let go; under load this process may not have read every answer yet
    await waitUntil(() => clients.every((c) => c.endedAfter !== undefined || c.reset), 4000, 'every client to read the end of its connection');
    const answered = clients.filter((c) => c.text.includes(' 408 ')).length;
    for (const client of clients) client.destroy();
    assert.equal(answered, 200);
    console.log(`# sockets before ${before}, after ${socketCount(gw.pid)}`);
  });
});
