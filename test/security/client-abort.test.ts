/**
 * A client that sends a whole request and resets the connection at once. The gateway may forward
 * the request or drop it, but what it forwards must name the client: an empty X-Real-IP, or an
 * X-Forwarded-For whose last entry is empty, lets the upstream take a spoofed address for the
 * client's (found by fuzz-requests.test.ts).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { sleep } from '../helpers/wait.ts';
import { catchAllRoutes, startRecordingUpstream, type RecordingUpstream } from './helpers.ts';

describe('a client that resets right after its request', () => {
  let upstream: RecordingUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startRecordingUpstream();
    gw = await startGateway({ routes: catchAllRoutes(upstream) });
  });
  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  // was: forwarded with `X-Real-IP: ` and `X-Forwarded-For: 6.6.6.6, ` (the socket's address was read
  // after the reset, when node no longer had it); now it is read as the connection is accepted
  it('is forwarded with the real client address, or not at all', async () => {
    // timing decides whether the gateway still forwards: many attempts, the reset at once or a little later
    for (let i = 0; i < 60; i++) {
      const socket = connect(gw.port, '127.0.0.1', () => {
        socket.write(`GET /abort/${i} HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n`);
        if (i % 3 === 0) socket.resetAndDestroy();
        else if (i % 3 === 1) setImmediate(() => socket.resetAndDestroy());
        else setTimeout(() => socket.resetAndDestroy(), 1);
      });
      socket.on('error', () => {});
      await sleep(20);
    }
    await sleep(200);
    const forwarded = upstream.seen.map((r) => ({ url: r.url, realIp: r.headers['x-real-ip'], forwardedFor: r.headers['x-forwarded-for'] }));
    const wrong = forwarded.filter((r) => r.realIp !== '127.0.0.1' || r.forwardedFor !== '6.6.6.6, 127.0.0.1');
    assert.deepEqual(wrong, [], `${wrong.length} of ${forwarded.length} forwarded requests do not name the client`);
  });
});
