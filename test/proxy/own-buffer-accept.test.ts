import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { acceptIntoOwnBuffers, type OwnReads } from '../../src/server/own-buffer-accept.ts';

/*
 * server/own-buffer-accept.ts: accepted sockets read through net's `onread` into the buffers their
 * owner gives, and the server still counts them (close() waits for them, as node's own accept).
 */

describe('acceptIntoOwnBuffers', () => {
  test('a server that does not listen has no handle: nothing is changed, false', () => {
    const server = createServer();
    assert.equal(acceptIntoOwnBuffers(server, { allowHalfOpen: false, noDelay: true, firstBuffer: () => Buffer.alloc(16) }, () => assert.fail('no connection')), false);
  });

  test('reads land in the owner’s buffers, one callback per read; stream events and the server’s count stay', async () => {
    const first = Buffer.alloc(8);
    const second = Buffer.alloc(8);
    const buffersUsed = new Set<Buffer>();
    const received: string[] = [];
    const server = createServer(() => assert.fail('the connection event is not used'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    let accepted: Socket | undefined;
    const ok = acceptIntoOwnBuffers(server, { allowHalfOpen: true, noDelay: true, firstBuffer: () => first }, (socket): OwnReads => {
      accepted = socket;
      return {
        // every read after the first goes into `second`
        nextReadBuffer: () => second,
        onRead(n, buf) {
          buffersUsed.add(buf);
          received.push(buf.toString('latin1', 0, n));
          socket.write(`got ${n}\n`);
          return true;
        },
      };
    });
    assert.equal(ok, true);
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    try {
      await once(client, 'connect');
      let answers = '';
      client.setEncoding('latin1');
      client.on('data', (s: string) => (answers += s));
      client.write('hello');
      while (!answers.includes('\n')) await once(client, 'data');
      client.write('0123456789abcdef'); // more than the 8-byte buffer: several reads
      while (received.join('').length < 21) await new Promise((r) => setTimeout(r, 5));
      assert.equal(received.join(''), 'hello0123456789abcdef');
      assert.ok(received.length >= 3, `${received.length} reads`);
      assert.deepEqual([...buffersUsed], [first, second]);
      assert.equal((accepted as unknown as { server: unknown }).server, server);
      // the server counts the connection: close() completes only once it is gone
      let closed = false;
      server.close(() => (closed = true));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(closed, false, 'close() must wait for the open connection');
      // allowHalfOpen: the client's FIN is an 'end' on our side, and we may still write
      const ended = once(accepted!, 'end');
      client.end();
      await ended;
      accepted!.end('bye\n');
      await once(client, 'close');
      assert.match(answers, /bye\n$/);
      // and once it is gone, close() completes
      for (let waited = 0; !closed && waited < 2000; waited += 10) await new Promise((r) => setTimeout(r, 10));
      assert.equal(closed, true);
    } finally {
      client.destroy();
      accepted?.destroy();
      server.close();
    }
  });
});
