import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { upstreamHost } from '../../src/proxy/headers.ts';
import { ConnectionPools } from '../../src/upstream/pools.ts';
import type { UpstreamTarget } from '../../src/upstream/types.ts';
import {
  closedPort,
  echoRequest,
  makeTarget,
  prefixRoutes,
  request,
  startGateway,
  startUpstream,
  type Echo,
  type Running,
} from './helpers.ts';

describe('HTTP proxy', () => {
  const pools = new ConnectionPools();
  const servers: Running[] = [];
  let gateway: Running;
  let echo: Running;
  let silent: Running;
  let flaky: Running;
  let deadPort: number;
  const echoHits: string[] = [];
  const retryPicks: string[] = [];

  before(async () => {
    echo = await startUpstream((req, res) => {
      echoHits.push(req.url!);
      if (req.url!.startsWith('/hop')) {
        res.setHeader('Connection', 'keep-alive, X-Hop');
        res.setHeader('X-Hop', 'secret');
        res.setHeader('Proxy-Connection', 'x');
        res.setHeader('X-Kept', 'yes');
      }
      if (req.url!.startsWith('/bytes')) {
        // header bytes that are not ASCII must come through untouched
        res.setHeader('X-Raw', Buffer.from('café', 'utf8').toString('latin1'));
      }
      echoRequest(req, res);
    });
    silent = await startUpstream(() => {
      /* accepts, never answers */
    });
    flaky = await startUpstream((req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('partial');
      setTimeout(() => res.socket!.destroy(), 20);
    });
    deadPort = await closedPort();
    servers.push(echo, silent, flaky);

    const echoNode = { [`127.0.0.1:${echo.port}`]: 1 };
    const routes = prefixRoutes({
      '/echo': makeTarget(echoNode),
      '/hop': makeTarget(echoNode),
      '/bytes': makeTarget(echoNode),
      '/pass-node': makeTarget(echoNode, { passHost: 'node' }),
      '/pass-rewrite': makeTarget(echoNode, { passHost: 'rewrite', upstreamHost: 'rewritten.example' }),
      '/down': makeTarget({ [`127.0.0.1:${deadPort}`]: 1 }),
      '/slow': makeTarget({ [`127.0.0.1:${silent.port}`]: 1 }, { timeout: { connect: 1000, send: 1000, read: 300 } }),
      '/retry': recordingPicks(makeTarget({ [`127.0.0.1:${deadPort}`]: 1, [`127.0.0.1:${echo.port}`]: 1 }), retryPicks),
      '/no-retry': makeTarget({ [`127.0.0.1:${deadPort}`]: 1, [`127.0.0.1:${echo.port}`]: 1 }, { retries: 0 }),
      '/retry-post': makeTarget({ [`127.0.0.1:${deadPort}`]: 1, [`127.0.0.1:${echo.port}`]: 1 }),
      '/zero': makeTarget({ [`127.0.0.1:${echo.port}`]: 0 }),
      '/no-upstream': undefined,
      '/flaky': makeTarget({ [`127.0.0.1:${flaky.port}`]: 1 }),
    });
    gateway = await startGateway(routes, pools);
    servers.push(gateway);
  });

  after(async () => {
    for (const server of servers) await server.close();
    await pools.destroy();
  });

  it('proxies a GET with path and query', async () => {
    const reply = await request(gateway.port, '/echo/a/./b//c?x=1&y=%20');
    assert.equal(reply.status, 200);
    const seen = JSON.parse(reply.body) as Echo;
    assert.equal(seen.method, 'GET');
    assert.equal(seen.url, '/echo/a/b/c?x=1&y=%20');
    assert.equal(reply.headers['content-type'], 'application/json');
  });

  it('proxies a POST body, with content-length and chunked', async () => {
    const sized = await request(gateway.port, '/echo/post', { method: 'POST', body: 'hello upstream' });
    assert.equal((JSON.parse(sized.body) as Echo).body, 'hello upstream');
    assert.equal((JSON.parse(sized.body) as Echo).headers['content-length'], '14');

    const chunked = await new Promise<Echo>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gateway.port, path: '/echo/chunked', method: 'PUT', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve(JSON.parse(body) as Echo));
      });
      req.on('error', reject);
      req.write('one,');
      setTimeout(() => req.end('two'), 20);
    });
    assert.equal(chunked.method, 'PUT');
    assert.equal(chunked.body, 'one,two');
    assert.equal(chunked.headers['transfer-encoding'], 'chunked');
  });

  it('strips hop-by-hop request headers and sets X-Forwarded-* and X-Real-IP', async () => {
    const reply = await request(gateway.port, '/echo/headers', {
      headers: {
        Host: 'Example.COM:1234',
        Connection: 'keep-alive, X-Strip-Me',
        'X-Strip-Me': '1',
        'Keep-Alive': 'timeout=300',
        'Proxy-Connection': 'keep-alive',
        TE: 'trailers',
        'X-Keep': 'kept',
        'X-Forwarded-For': '203.0.113.7',
      },
    });
    assert.equal(reply.status, 200);
    const { headers } = JSON.parse(reply.body) as Echo;
    for (const name of ['x-strip-me', 'keep-alive', 'proxy-connection', 'te', 'expect', 'upgrade', 'trailer']) {
      assert.equal(headers[name], undefined, `${name} was forwarded`);
    }
    assert.equal(headers['x-keep'], 'kept');
    assert.equal(headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(headers['x-real-ip'], '127.0.0.1');
    assert.equal(headers['x-forwarded-proto'], 'http');
    assert.equal(headers['x-forwarded-host'], 'example.com');
    assert.equal(headers['x-forwarded-port'], String(gateway.port));
    assert.equal(headers.host, 'Example.COM:1234', 'pass_host=pass keeps the client Host');
  });

  it('answers Expect: 100-continue itself and does not forward Expect', async () => {
    const reply = await request(gateway.port, '/echo/expect', {
      method: 'POST',
      headers: { Expect: '100-continue' },
      body: 'after continue',
    });
    assert.equal(reply.status, 200);
    const seen = JSON.parse(reply.body) as Echo;
    assert.equal(seen.body, 'after continue');
    assert.equal(seen.headers.expect, undefined);
  });

  it('keeps X-Forwarded-Proto/-Host/-Port a client sent, as APISIX does', async () => {
    const reply = await request(gateway.port, '/echo/xf', {
      headers: { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'front.example', 'X-Forwarded-Port': '443' },
    });
    const { headers } = JSON.parse(reply.body) as Echo;
    assert.equal(headers['x-forwarded-proto'], 'https');
    assert.equal(headers['x-forwarded-host'], 'front.example');
    assert.equal(headers['x-forwarded-port'], '443');
  });

  it('strips hop-by-hop response headers, including those named in Connection', async () => {
    const reply = await request(gateway.port, '/hop');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-kept'], 'yes');
    assert.equal(reply.headers['x-hop'], undefined);
    assert.equal(reply.headers['proxy-connection'], undefined);
  });

  it('passes non-ASCII response header bytes through unchanged', async () => {
    const reply = await request(gateway.port, '/bytes');
    assert.equal(Buffer.from(reply.headers['x-raw'] as string, 'latin1').toString('utf8'), 'café');
  });

  it('sets Host per pass_host: node and rewrite', async () => {
    const node = JSON.parse((await request(gateway.port, '/pass-node', { headers: { Host: 'client.example' } })).body) as Echo;
    assert.equal(node.headers.host, `127.0.0.1:${echo.port}`);
    const rewrite = JSON.parse((await request(gateway.port, '/pass-rewrite', { headers: { Host: 'client.example' } })).body) as Echo;
    assert.equal(rewrite.headers.host, 'rewritten.example');
  });

  it('pass_host=node omits the default port and brackets IPv6', () => {
    const v4 = makeTarget({ '10.0.0.1:80': 1 }, { passHost: 'node' });
    assert.equal(upstreamHost(v4, v4.nodes[0]!, 'client'), '10.0.0.1');
    const v6 = makeTarget({ '[::1]:443': 1, '[::1]:8443': 1 }, { passHost: 'node', scheme: 'https' });
    assert.equal(upstreamHost(v6, v6.nodes[0]!, 'client'), '[::1]');
    assert.equal(upstreamHost(v6, v6.nodes[1]!, 'client'), '[::1]:8443');
  });

  it('answers 404 with an APISIX JSON body when no route matches', async () => {
    const reply = await request(gateway.port, '/nothing-here');
    assert.equal(reply.status, 404);
    assert.equal(reply.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(reply.body), { error_msg: '404 Route Not Found' });
  });

  it('answers 400 for a malformed path', async () => {
    const reply = await request(gateway.port, '/echo/%zz');
    assert.equal(reply.status, 400);
    assert.deepEqual(JSON.parse(reply.body), { error_msg: 'Bad Request' });
  });

  it('accepts an absolute-form request target', async () => {
    const raw = await rawRequest(gateway.port, `GET http://Abs.Example:9/echo/abs?q=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n`);
    assert.match(raw, /^HTTP\/1\.1 200/);
    assert.match(raw, /"url":"\/echo\/abs\?q=1"/);
    assert.match(raw, /"x-forwarded-host":"abs.example"/);
  });

  it('answers 502 when the upstream refuses connections', async () => {
    const reply = await request(gateway.port, '/down');
    assert.equal(reply.status, 502);
    assert.deepEqual(JSON.parse(reply.body), { error_msg: '502 Bad Gateway' });
  });

  it('answers 504 when the upstream does not answer within timeout.read', async () => {
    const started = Date.now();
    const reply = await request(gateway.port, '/slow');
    const elapsed = Date.now() - started;
    assert.equal(reply.status, 504);
    assert.deepEqual(JSON.parse(reply.body), { error_msg: '504 Gateway Timeout' });
    assert.ok(elapsed >= 250 && elapsed < 2000, `took ${elapsed} ms`);
  });

  it('retries the next node after a connection failure', async () => {
    echoHits.length = 0;
    const reply = await request(gateway.port, '/retry/1');
    assert.deepEqual(retryPicks, [`127.0.0.1:${deadPort}`, `127.0.0.1:${echo.port}`]);
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-upstream-port'], String(echo.port));
    assert.deepEqual(echoHits, ['/retry/1']);
    // the balancer rotates, so over a few requests both nodes come first; all must succeed
    for (let i = 0; i < 4; i++) assert.equal((await request(gateway.port, '/retry/n')).status, 200);
  });

  it('retries a POST whose body was not sent yet (connect failure)', async () => {
    for (let i = 0; i < 2; i++) {
      const reply = await request(gateway.port, '/retry-post', { method: 'POST', body: 'payload' });
      assert.equal(reply.status, 200);
      assert.equal((JSON.parse(reply.body) as Echo).body, 'payload');
    }
  });

  it('does not retry beyond `retries`', async () => {
    const statuses = [];
    for (let i = 0; i < 2; i++) statuses.push((await request(gateway.port, '/no-retry')).status);
    assert.deepEqual(statuses.sort(), [200, 502]);
  });

  it('answers 503 when no node can be picked or the route has no upstream', async () => {
    const zero = await request(gateway.port, '/zero');
    assert.equal(zero.status, 503);
    assert.deepEqual(JSON.parse(zero.body), { error_msg: '503 Service Unavailable' });
    assert.equal((await request(gateway.port, '/no-upstream')).status, 503);
  });

  it('cuts the client connection when the upstream breaks mid-response', async () => {
    await assert.rejects(request(gateway.port, '/flaky'));
  });

  it('reuses kept-alive upstream connections across requests', async () => {
    const first = JSON.parse((await request(gateway.port, '/echo/ka')).body) as Echo;
    const second = JSON.parse((await request(gateway.port, '/echo/ka')).body) as Echo;
    assert.equal(first.method, 'GET');
    assert.equal(second.method, 'GET');
    const ports = new Set<number>();
    echo.server.on('connection', (socket: net.Socket) => ports.add(socket.remotePort!));
    for (let i = 0; i < 5; i++) await request(gateway.port, '/echo/ka');
    assert.equal(ports.size, 0, 'a new upstream connection was opened for sequential requests');
  });
});

function recordingPicks(target: UpstreamTarget, picks: string[]): UpstreamTarget {
  const inner = target.balancer;
  target.balancer = {
    pick(tried) {
      const node = inner.pick(tried);
      picks.push(node?.key ?? 'none');
      return node;
    },
  };
  return target;
}

function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    let data = '';
    socket.setEncoding('latin1').on('data', (chunk: string) => (data += chunk));
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
  });
}
