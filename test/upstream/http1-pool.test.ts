/**
 * The socket transport's upstream connections (src/upstream/http1-pool.ts) against a real upstream:
 * what a connection is like when it goes back to the idle list decides whether the next request
 * sent on it is answered.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ResponseHead } from '../../src/proxy/http1/response-parser.ts';
import { Http1Pools, type UpstreamConnection, type UpstreamUser } from '../../src/upstream/http1-pool.ts';
import { makeTarget } from '../proxy/helpers.ts';

/** A user that sends GET `path` and collects the answer; `onBodyChunk` runs on each body slice. */
function fetchOn(path: string, onBodyChunk?: (uc: UpstreamConnection) => void): { user: UpstreamUser; done: Promise<{ status: number; body: string; conn: UpstreamConnection }> } {
  let conn: UpstreamConnection | undefined;
  let status = 0;
  let body = '';
  let resolve!: (v: { status: number; body: string; conn: UpstreamConnection }) => void;
  let reject!: (err: Error) => void;
  const done = new Promise<{ status: number; body: string; conn: UpstreamConnection }>((res, rej) => ((resolve = res), (reject = rej)));
  const timer = setTimeout(() => reject(new Error(`no answer to GET ${path} within 2 s`)), 2000);
  const user: UpstreamUser = {
    upstreamReady(uc) {
      conn = uc;
      uc.expect('GET', 5000);
      uc.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, 'latin1');
    },
    upstreamDrained() {},
    upstreamFailed(event) {
      clearTimeout(timer);
      reject(new Error(`upstream failed: event ${event}`));
    },
    onInterim() {},
    onHead(head: ResponseHead) {
      status = head.status;
    },
    onBody(chunk: Buffer) {
      body += chunk.toString('latin1');
      onBodyChunk?.(conn!);
    },
    onEnd() {
      clearTimeout(timer);
      conn!.release(true);
      resolve({ status, body, conn: conn! });
    },
  };
  return { user, done };
}

describe('socket transport upstream connections (Http1Pools)', () => {
  let upstream: http.Server;
  let port = 0;
  const pools = new Http1Pools();

  before(async () => {
    upstream = http.createServer((req, res) => res.end(`answer to ${req.url}`));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    port = (upstream.address() as AddressInfo).port;
  });
  after(async () => {
    pools.close();
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });

  it('a connection paused for a slow client on the response\'s last chunk is kept reading: the next request on it is answered', async () => {
    const target = makeTarget({ [`127.0.0.1:${port}`]: 1 });
    const pool = pools.nodePool(target, target.nodes[0]!, undefined);
    // the client refuses bytes (write() false: slow, or already gone) while the chunk that ends the response is parsed
    const first = fetchOn('/one', (uc) => uc.pauseReading());
    pool.acquire(first.user);
    const one = await first.done;
    assert.deepEqual([one.status, one.body], [200, 'answer to /one']);
    await new Promise((r) => setImmediate(r));
    const second = fetchOn('/two');
    pool.acquire(second.user);
    const two = await second.done;
    assert.equal(two.conn, one.conn, 'the kept connection was reused');
    assert.deepEqual([two.status, two.body], [200, 'answer to /two']);
  });
});
