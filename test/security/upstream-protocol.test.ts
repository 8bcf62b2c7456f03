/**
 * Issue 6, item 10: what the client gets when the upstream does not speak clean HTTP/1.1. The
 * upstream here is a TCP server writing exact bytes, chosen by the request path.
 * - An upstream that breaks HTTP before any byte reached the client (a 204 with a body, a bad chunk
 *   size) → 502 with APISIX's JSON body, never an empty reply.
 * - Once body bytes went out, the only honest signal is a cut connection (never a complete-looking
 *   response).
 * - 1xx before the final response (100 Continue unasked for, 102, 103) are skipped and the final
 *   response forwarded (RFC 9110 §15.2: a client must parse 1xx it did not expect).
 * - A 304 with Content-Length (RFC 9110 §8.6 allows it) is forwarded.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { sleep } from '../helpers/wait.ts';
import { finalResponses, headerValue, parseResponses, rawExchange, responsesReceived } from './helpers.ts';

const ok = (body = 'ok') => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

/** What the upstream writes for a path: bytes, or parts written 20 ms apart (separate TCP segments). */
const script: Record<string, string | string[]> = {
  '/no-content-with-body': 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello',
  '/bad-chunk-size': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
  '/bad-chunk-later': ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', 'zz\r\nworld\r\n0\r\n\r\n'],
  '/continue': `HTTP/1.1 100 Continue\r\n\r\n${ok()}`,
  '/continue-twice-with-headers': `HTTP/1.1 100 Continue\r\nX-A: 1\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n${ok()}`,
  '/continue-split': ['HTTP/1.1 1', '00 Continue\r', '\n\r', '\n', ok()],
  '/continue-bare-lf': `HTTP/1.1 100 Continue\n\n${ok()}`,
  '/processing': `HTTP/1.1 102 Processing\r\n\r\n${ok()}`,
  '/early-hints': `HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n${ok()}`,
  // a final response whose body starts like an interim one: passed as it is
  '/body-like-continue': ok('HTTP/1.1 100 Continue\r\n\r\n'),
  '/not-modified-with-length': 'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "v1"\r\n\r\n',
};

interface ScriptedUpstream {
  address: string;
  /** [connection index, path] per request received */
  requests: [number, string][];
  close(): Promise<void>;
}

async function startScriptedUpstream(): Promise<ScriptedUpstream> {
  const requests: [number, string][] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    const connection = connections++;
    sockets.add(socket);
    socket.setNoDelay(true);
    let pending = '';
    socket.on('data', async (d: Buffer) => {
      pending += d.toString('latin1');
      // the gateway sends heads without bodies here (GET): one answer per head
      let end: number;
      while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        const path = head.split(' ')[1]!;
        requests.push([connection, path]);
        const answer = script[path] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n';
        for (const [i, part] of (Array.isArray(answer) ? answer : [answer]).entries()) {
          if (i > 0) await sleep(20);
          if (!socket.destroyed) socket.write(part, 'latin1');
        }
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('upstream protocol errors and 1xx (issue 6 item 10)', () => {
  let gw: GatewayProcess;
  let upstream: ScriptedUpstream;

  before(async () => {
    upstream = await startScriptedUpstream();
    gw = await startGateway({ routes: { routes: [{ id: 'all', uri: '/*', upstream: { nodes: { [upstream.address]: 1 }, retries: 0 } }] } });
  });

  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  async function get(path: string): Promise<{ status: number; body: string; headers: [string, string][]; text: string; closed: boolean }> {
    const result = await rawExchange(gw.port, `GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`, { timeoutMs: 3000, until: responsesReceived(1) });
    const stream = parseResponses(result.received, { ended: result.closedByGateway });
    assert.equal(stream.error, undefined, result.text);
    const [answer] = finalResponses(stream);
    assert.ok(answer, `no response: ${JSON.stringify(result.text)} (${result.closed})`);
    return { status: answer.status, body: answer.body.toString('latin1'), headers: answer.headers, text: result.text, closed: result.closedByGateway };
  }

  for (const path of ['/no-content-with-body', '/bad-chunk-size']) {
    it(`${path}: broken before anything was sent → 502 with the APISIX JSON body, not an empty reply`, async () => {
      const answer = await get(path);
      assert.equal(answer.status, 502, answer.text);
      assert.equal(answer.body, '{"error_msg":"502 Bad Gateway"}\n');
    });
  }

  it('/bad-chunk-later: broken after body bytes went out → the client connection is cut, the response left incomplete', async () => {
    const result = await rawExchange(gw.port, 'GET /bad-chunk-later HTTP/1.1\r\nHost: x\r\n\r\n', { timeoutMs: 3000 });
    assert.equal(result.closedByGateway, true);
    assert.match(result.text, /^HTTP\/1\.1 200 /);
    const stream = parseResponses(result.received, { ended: true });
    assert.equal(finalResponses(stream).length, 0, 'no complete response');
    assert.match(stream.error ?? '', /truncated/);
  });

  for (const path of ['/continue', '/continue-twice-with-headers', '/continue-split', '/continue-bare-lf']) {
    it(`${path}: the upstream's 100 skipped (the client's Expect handshake is the gateway's), the final 200 forwarded`, async () => {
      const answer = await get(path);
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.body, 'ok');
      assert.doesNotMatch(answer.text, /HTTP\/1\.1 1\d\d/, 'no interim response reaches the client');
    });
  }

  // the socket transport passes 102/103 on to HTTP/1.1 clients; node:http has no way to (skipped there)
  const forwardsInterim = (process.env.PORTICO_PROXY_TRANSPORT ?? 'socket') === 'socket';
  for (const [path, interim] of [['/processing', /^HTTP\/1\.1 102 Processing\r\n\r\n/], ['/early-hints', /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/style\.css>; rel=preload\r\n\r\n/]] as const) {
    it(`${path}: the interim response ${forwardsInterim ? 'forwarded before' : 'skipped, then'} the final 200`, async () => {
      const answer = await get(path);
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.body, 'ok');
      if (forwardsInterim) assert.match(answer.text, interim);
      else assert.doesNotMatch(answer.text, /HTTP\/1\.1 1\d\d/, 'no interim response reaches the client');
    });
  }

  it('/early-hints: never to an HTTP/1.0 client (RFC 9110 §15.2)', async () => {
    const result = await rawExchange(gw.port, 'GET /early-hints HTTP/1.0\r\nHost: x\r\n\r\n', { timeoutMs: 3000 });
    assert.match(result.text, /^HTTP\/1\.1 200 /, result.text);
    assert.doesNotMatch(result.text, /HTTP\/1\.1 1\d\d/);
  });

  it('a response without Date gets one (RFC 9110 §6.6.1)', async () => {
    const answer = await get('/processing');
    const date = /\r\nDate: ([^\r]+)\r\n/i.exec(answer.text)?.[1];
    assert.ok(date !== undefined, answer.text);
    assert.ok(Math.abs(Date.parse(date) - Date.now()) < 5000, date);
  });

  it('100 Continue on a kept-alive upstream connection (not its first response) is skipped too', async () => {
    const first = upstream.requests.length;
    assert.equal((await get('/continue')).status, 200);
    // undici frees the connection just after the response: the next request reuses it
    await sleep(50);
    assert.equal((await get('/continue')).status, 200);
    const connections = upstream.requests.slice(first).map(([c]) => c);
    assert.equal(connections.length, 2);
    assert.equal(connections[0], connections[1], 'the second request reused the upstream connection');
  });

  it('100 Continue before the final answer to a POST with a body (IIS sends it to every POST)', async () => {
    const result = await rawExchange(gw.port, 'POST /continue HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello', {
      timeoutMs: 3000,
      until: responsesReceived(1),
    });
    const answers = finalResponses(parseResponses(result.received));
    assert.deepEqual(answers.map((a) => [a.status, a.body.toString()]), [[200, 'ok']], result.text);
  });

  it('a body that looks like an interim response is forwarded untouched', async () => {
    const answer = await get('/body-like-continue');
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'HTTP/1.1 100 Continue\r\n\r\n');
  });

  it('304 with a Content-Length (the representation size) is forwarded', async () => {
    const answer = await get('/not-modified-with-length');
    assert.equal(answer.status, 304, answer.text);
    assert.equal(answer.headers.find(([n]) => n.toLowerCase() === 'etag')?.[1], '"v1"');
  });

  it('the connection of a 502 stays usable: the next request on it is answered', async () => {
    const result = await rawExchange(gw.port, 'GET /bad-chunk-size HTTP/1.1\r\nHost: x\r\n\r\nGET /continue HTTP/1.1\r\nHost: x\r\n\r\n', {
      timeoutMs: 3000,
      until: responsesReceived(2),
    });
    const answers = finalResponses(parseResponses(result.received));
    assert.deepEqual(answers.map((a) => a.status), [502, 200], result.text);
    assert.equal(headerValue(answers[0]!, 'content-type'), 'application/json');
  });
});
