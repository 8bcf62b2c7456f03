/**
 * Issue 6, item 2: an upgrade request must not turn a route into a raw tunnel. Bytes are relayed
 * only after the upstream answered 101, with an Upgrade the client asked for, on a route with
 * `enable_websocket`; any other answer is HTTP, after which the connection closes, so nothing the
 * client writes next reaches an upstream unrouted. A route without `enable_websocket` (the default,
 * as APISIX) proxies the request as plain HTTP, without its Upgrade headers.
 *
 * Every request written after the upgrade carries `Host: admin` and a spoofed `X-Real-IP: 6.6.6.6`:
 * if it reached an upstream, it would have bypassed the router.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { sleep } from '../helpers/wait.ts';
import { finalResponses, headerValue, parseResponses, rawExchange, responsesReceived, startRecordingUpstream, type RecordingUpstream } from './helpers.ts';

const UPGRADE = 'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
const upgradeRequest = (path: string, extra = '') => `GET ${path} HTTP/1.1\r\nHost: x\r\nX-Real-IP: 6.6.6.6\r\n${UPGRADE}${extra}\r\n`;
const unrouted = (path: string) => `GET ${path} HTTP/1.1\r\nHost: admin\r\nX-Real-IP: 6.6.6.6\r\n\r\n`;

/** A TCP upstream that answers every connection's first bytes with `answer` and keeps what it received. */
interface RawUpstream {
  address: string;
  /** everything received, per connection, as latin1 */
  received: string[];
  close(): Promise<void>;
}

async function startRawUpstream(answer: string): Promise<RawUpstream> {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    const index = received.push('') - 1;
    let answered = false;
    socket.on('data', (d: Buffer) => {
      received[index] += d.toString('latin1');
      // keep the connection open after answering: a tunnel would stay usable
      if (!answered) socket.write(answer);
      answered = true;
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    received,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('upgrade requests through the gateway (issue 6 item 2)', () => {
  let gw: GatewayProcess;
  let plain: RecordingUpstream;
  let answers200: RawUpstream;
  let wrong101: RawUpstream;
  let wss: WebSocketServer;
  let wsAddress: string;

  before(async () => {
    plain = await startRecordingUpstream('plain');
    answers200 = await startRawUpstream('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    wrong101 = await startRawUpstream('HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    await once(wss, 'listening');
    wsAddress = `127.0.0.1:${(wss.address() as net.AddressInfo).port}`;
    wss.on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary })));
    const nodes = (address: string) => ({ nodes: { [address]: 1 } });
    gw = await startGateway({
      routes: {
        services: [{ id: 'ws-svc', enable_websocket: true, upstream: nodes(wsAddress) }],
        routes: [
          { id: 'plain', uri: '/plain/*', upstream: nodes(plain.address) },
          { id: 'ws-200', uri: '/ws-200/*', enable_websocket: true, upstream: nodes(answers200.address) },
          { id: 'ws-wrong', uri: '/ws-wrong/*', enable_websocket: true, upstream: nodes(wrong101.address) },
          { id: 'ws', uri: '/ws/*', enable_websocket: true, upstream: nodes(wsAddress) },
          { id: 'svc-ws', uri: '/svc-ws/*', service_id: 'ws-svc' },
          { id: 'svc-off', uri: '/svc-off/*', service_id: 'ws-svc', enable_websocket: false },
        ],
      },
    });
  });

  after(async () => {
    await gw?.cleanup();
    await plain?.close();
    await answers200?.close();
    await wrong101?.close();
    for (const c of wss?.clients ?? []) c.terminate();
    await new Promise((r) => wss?.close(r));
  });

  for (const [how, delay] of [['in the same write', 0], ['300 ms after the answer', 300]] as const) {
    it(`WebSocket route, upstream answers 200: the client gets it, then the connection closes; a request written ${how} never reaches the upstream`, async () => {
      const before = answers200.received.length;
      const result = await rawExchange(gw.port, delay === 0 ? [upgradeRequest('/ws-200/a') + unrouted('/ws-200/b')] : [upgradeRequest('/ws-200/a'), unrouted('/ws-200/b')], {
        writeDelayMs: delay,
        timeoutMs: 3000,
      });
      const stream = parseResponses(result.received, { ended: result.closedByGateway });
      assert.equal(stream.error, undefined, result.text);
      const answers = finalResponses(stream);
      assert.equal(answers.length, 1, result.text);
      assert.equal(answers[0]!.status, 200);
      assert.equal(answers[0]!.body.toString(), 'ok');
      assert.equal(stream.rest.length, 0, 'no bytes after the answer');
      assert.equal(result.closedByGateway, true, 'the gateway closes the connection after the answer');
      await sleep(100);
      const upstreamSaw = answers200.received.slice(before).join('');
      assert.equal(upstreamSaw.match(/^GET /gm)?.length, 1, upstreamSaw);
      assert.doesNotMatch(upstreamSaw, /ws-200\/b|admin|6\.6\.6\.6/, upstreamSaw);
      assert.match(upstreamSaw, /X-Real-IP: 127\.0\.0\.1/);
    });
  }

  it('route without enable_websocket: proxied as plain HTTP (no Upgrade upstream), answered, connection closed, nothing after it forwarded', async () => {
    plain.reset();
    const result = await rawExchange(gw.port, [upgradeRequest('/plain/a') + unrouted('/plain/b')], { timeoutMs: 3000 });
    const answers = finalResponses(parseResponses(result.received, { ended: result.closedByGateway }));
    assert.equal(answers.length, 1, result.text);
    assert.equal(answers[0]!.status, 200);
    assert.equal(headerValue(answers[0]!, 'x-echo'), 'GET /plain/a');
    assert.equal(result.closedByGateway, true);
    await sleep(100);
    assert.deepEqual(plain.seen.map((r) => r.url), ['/plain/a']);
    const headers = plain.seen[0]!.headers;
    assert.equal(headers.upgrade, undefined, 'Upgrade not forwarded');
    assert.doesNotMatch(String(headers.connection), /upgrade/i);
    assert.equal(headers['sec-websocket-key'], 'dGhlIHNhbXBsZSBub25jZQ==', 'other headers forwarded as usual');
    assert.equal(headers['x-real-ip'], '127.0.0.1');
  });

  it('route without enable_websocket: a Content-Length body is forwarded exactly, the bytes after it are not', async () => {
    plain.reset();
    const request = `POST /plain/body HTTP/1.1\r\nHost: x\r\n${UPGRADE}Content-Length: 5\r\n\r\nhello`;
    const result = await rawExchange(gw.port, [request + unrouted('/plain/after')], { timeoutMs: 3000 });
    const answers = finalResponses(parseResponses(result.received, { ended: result.closedByGateway }));
    assert.equal(answers.length, 1, result.text);
    assert.equal(answers[0]!.status, 200);
    await sleep(100);
    assert.deepEqual(plain.seen.map((r) => [r.url, r.body.toString()]), [['/plain/body', 'hello']]);
  });

  it('an upgrade request with a chunked body is refused with 400 (not decoded outside node:http)', async () => {
    plain.reset();
    const request = `POST /plain/chunked HTTP/1.1\r\nHost: x\r\n${UPGRADE}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n`;
    const result = await rawExchange(gw.port, [request], { timeoutMs: 3000 });
    assert.match(result.text, /^HTTP\/1\.1 400 /);
    assert.equal(result.closedByGateway, true);
    assert.equal(plain.seen.length, 0);
  });

  it('enable_websocket on the route: 101, messages echo both ways', async () => {
    assert.deepEqual(await echo(`ws://127.0.0.1:${gw.port}/ws/chat`), ['one', 'bin:70000', 'three']);
  });

  it("enable_websocket from the route's service; the route's own false wins over it", async () => {
    assert.deepEqual(await echo(`ws://127.0.0.1:${gw.port}/svc-ws/chat`), ['one', 'bin:70000', 'three']);
    // proxied as plain HTTP: the ws upstream answers a request without Upgrade with 426
    assert.equal(await handshakeStatus(`ws://127.0.0.1:${gw.port}/svc-off/chat`), 426);
  });

  it('a 101 for a protocol the client did not ask for is a 502', async () => {
    const result = await rawExchange(gw.port, [upgradeRequest('/ws-wrong/a')], { timeoutMs: 3000, until: responsesReceived(1) });
    assert.match(result.text, /^HTTP\/1\.1 502 /);
    assert.doesNotMatch(result.text, /101/);
  });
});

async function echo(url: string): Promise<string[]> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const replies: string[] = [];
  const done = new Promise<void>((resolve) => {
    ws.on('message', (data: Buffer, isBinary) => {
      replies.push(isBinary ? `bin:${data.length}` : data.toString());
      if (replies.length === 3) resolve();
    });
  });
  ws.send('one');
  ws.send(Buffer.alloc(70_000, 1));
  ws.send('three');
  await Promise.race([done, sleep(3000)]);
  ws.close();
  return replies;
}

function handshakeStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode!);
      res.resume();
      ws.terminate();
    });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('handshake unexpectedly succeeded'));
    });
    ws.once('error', reject);
  });
}
