import assert from 'node:assert/strict';
import { REFUSED_PORT } from '../proxy/helpers.ts';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import WebSocket, { WebSocketServer } from 'ws';
import { freePort } from '../helpers/etcd.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/** GET with a chosen Host header and method; node's fetch does not allow setting Host. */
function call(gw: GatewayProcess, path: string, opts: { host?: string; method?: string; headers?: Record<string, string> } = {}) {
  return new Promise<{ status: number; body: string; upstream?: string; json?: Record<string, unknown> }>((resolve, reject) => {
    const req = request(`${gw.url}${path}`, { method: opts.method ?? 'GET', headers: { ...(opts.host ? { host: opts.host } : {}), ...opts.headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => {
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(body) as Record<string, unknown>;
        } catch {
          /* not JSON */
        }
        resolve({ status: res.statusCode!, body, json, upstream: json?.upstream as string | undefined });
      });
    });
    req.on('error', reject).end();
  });
}

describe('proxy through the gateway process (YAML config)', () => {
  const ups: Record<string, TestUpstream> = {};
  let wss: WebSocketServer;
  let wsPort: number;
  let gw: GatewayProcess;
  let closedPort: number;

  before(async () => {
    for (const n of ['a', 'b', 'c', 'd', 'e']) ups[n] = await startUpstream(n);
    ups.slow = await startUpstream('slow', () => {
      /* never answers */
    });
    // nothing listens on port 1 (a port freed here could be taken by a test running alongside)
    closedPort = REFUSED_PORT;
    wsPort = await freePort();
    wss = new WebSocketServer({ port: wsPort, host: '127.0.0.1' });
    wss.on('connection', (ws) => ws.on('message', (m, isBinary) => ws.send(m, { binary: isBinary })));
    const node = (n: string) => ({ [ups[n]!.address]: 1 });
    gw = await startGateway({
      routes: {
        upstreams: [
          { id: 'a', nodes: node('a') },
          { id: 'dead-then-b', nodes: [{ host: '127.0.0.1', port: closedPort, weight: 100 }, { host: '127.0.0.1', port: ups.b!.port, weight: 1 }] },
          { id: 'dead', nodes: { [`127.0.0.1:${closedPort}`]: 1 } },
          { id: 'slow', nodes: node('slow'), timeout: { connect: 1, send: 1, read: 0.3 } },
          { id: 'ws', nodes: { [`127.0.0.1:${wsPort}`]: 1 } },
        ],
        services: [{ id: 'svc', hosts: ['svc.example.com'], upstream: { nodes: node('e') } }],
        routes: [
          { id: 'exact', uri: '/api/users', upstream: { nodes: node('a') } },
          { id: 'prefix', uri: '/api/*', upstream: { nodes: node('b') } },
          { id: 'wild-host', uri: '/h', hosts: ['*.example.com'], upstream: { nodes: node('c') } },
          { id: 'exact-host', uri: '/h', host: 'api.example.com', upstream: { nodes: node('d') } },
          { id: 'any-host', uri: '/h', priority: 100, upstream: { nodes: node('a') } },
          { id: 'low', uri: '/prio', priority: 1, upstream: { nodes: node('a') } },
          { id: 'high', uri: '/prio', priority: 5, upstream: { nodes: node('b') } },
          { id: 'post-only', uri: '/m', methods: ['POST'], upstream: { nodes: node('c') } },
          { id: 'get', uri: '/m', upstream: { nodes: node('d') } },
          { id: 'vars', uri: '/v', vars: [['arg_format', '==', 'json'], ['http_x_team', '~~', '^blue']], priority: 1, upstream: { nodes: node('e') } },
          { id: 'vars-fallback', uri: '/v', upstream: { nodes: node('a') } },
          { id: 'remote', uri: '/r', remote_addrs: ['10.0.0.0/8'], priority: 1, upstream: { nodes: node('b') } },
          { id: 'remote-local', uri: '/r', remote_addrs: ['127.0.0.0/8', '::1'], upstream: { nodes: node('c') } },
          { id: 'disabled', uri: '/off', status: 0, upstream: { nodes: node('a') } },
          { id: 'svc-route', uri: '/svc', service_id: 'svc' },
          { id: 'node-host', uri: '/pass-node', upstream: { nodes: node('a'), pass_host: 'node' } },
          { id: 'rewrite-host', uri: '/pass-rewrite', upstream: { nodes: node('a'), pass_host: 'rewrite', upstream_host: 'internal.svc' } },
          { id: 'retry', uri: '/retry', upstream_id: 'dead-then-b' },
          { id: 'down', uri: '/down', upstream_id: 'dead' },
          { id: 'timeout', uri: '/timeout', upstream_id: 'slow' },
          { id: 'ws', uri: '/ws', upstream_id: 'ws', enable_websocket: true },
        ],
      },
    });
  });
  after(async () => {
    await gw?.cleanup();
    for (const u of Object.values(ups)) await u.close();
    wss?.close();
  });

  test('routing: exact beats prefix; query string is not matched', async () => {
    assert.equal((await call(gw, '/api/users?x=1')).upstream, 'a');
    assert.equal((await call(gw, '/api/orders')).upstream, 'b');
    assert.equal((await call(gw, '/api//users/../users')).upstream, 'a', 'normalized path');
  });

  test('routing: host-bound routes first (exact host, then wildcard), whatever the priority', async () => {
    assert.equal((await call(gw, '/h', { host: 'api.example.com' })).upstream, 'd');
    assert.equal((await call(gw, '/h', { host: 'www.Example.com:9080' })).upstream, 'c');
    assert.equal((await call(gw, '/h', { host: 'other.org' })).upstream, 'a');
  });

  test('routing: priority, methods, vars, remote_addrs, status 0, service', async () => {
    assert.equal((await call(gw, '/prio')).upstream, 'b');
    assert.equal((await call(gw, '/m', { method: 'POST' })).upstream, 'c');
    assert.equal((await call(gw, '/m')).upstream, 'd');
    assert.equal((await call(gw, '/v?format=json', { headers: { 'x-team': 'blue-1' } })).upstream, 'e');
    assert.equal((await call(gw, '/v?format=xml', { headers: { 'x-team': 'blue-1' } })).upstream, 'a');
    assert.equal((await call(gw, '/r')).upstream, 'c');
    assert.equal((await call(gw, '/off')).status, 404);
    assert.equal((await call(gw, '/svc', { host: 'svc.example.com' })).upstream, 'e');
    assert.equal((await call(gw, '/svc', { host: 'other.com' })).status, 404, 'service hosts apply to its routes');
  });

  test('headers: X-Forwarded-*, Host per pass_host, hop-by-hop stripped', async () => {
    const pass = await call(gw, '/api/users', { host: 'client.example', headers: { 'keep-alive': 'timeout=5', connection: 'x-secret', 'x-secret': '1' } });
    const h = pass.json!.headers as Record<string, string>;
    assert.equal(h.host, 'client.example');
    assert.equal(h['x-forwarded-for'], '127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'client.example');
    assert.equal(h['keep-alive'], undefined);
    assert.equal(h['x-secret'], undefined);
    const node = (await call(gw, '/pass-node')).json!.headers as Record<string, string>;
    assert.equal(node.host, ups.a!.address);
    const rewrite = (await call(gw, '/pass-rewrite')).json!.headers as Record<string, string>;
    assert.equal(rewrite.host, 'internal.svc');
  });

  test('failures: connect failure retried on the next node; down -> 502; timeout -> 504; no route -> 404', async () => {
    const before = ups.b!.requests.length;
    const retry = await call(gw, '/retry');
    assert.equal(retry.status, 200);
    assert.equal(retry.upstream, 'b');
    assert.equal(ups.b!.requests.length, before + 1);
    const down = await call(gw, '/down');
    assert.equal(down.status, 502);
    assert.deepEqual(down.json, { error_msg: '502 Bad Gateway' });
    const t0 = Date.now();
    const slow = await call(gw, '/timeout');
    assert.equal(slow.status, 504);
    assert.ok(Date.now() - t0 < 3000);
    assert.deepEqual((await call(gw, '/nowhere')).json, { error_msg: '404 Route Not Found' });
    assert.equal((await call(gw, '/%zz')).status, 400);
  });

  test('malformed HTTP gets 400 and oversize headers 431, as JSON, on a closed connection', async () => {
    const raw = (text: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(gw.port, '127.0.0.1', () => socket.end(text));
        let reply = '';
        socket.setEncoding('latin1').on('data', (d: string) => (reply += d));
        socket.on('close', () => resolve(reply)).on('error', reject);
      });
    const garbage = await raw('GET /api/users HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n');
    assert.match(garbage, /^HTTP\/1\.1 400 /);
    assert.match(garbage, /\{"error_msg":"Bad Request"\}/);
    const huge = await raw(`GET /api/users HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1\.1 431 /);
    assert.match(huge, /\{"error_msg":"431 Request Header Fields Too Large"\}/);
  });

  test('WebSocket: upgrade proxied, messages echo both ways', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.port}/ws`);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const echoed: string[] = [];
    ws.on('message', (m) => echoed.push(m.toString()));
    for (const m of ['one', 'two', 'x'.repeat(70_000)]) ws.send(m);
    const deadline = Date.now() + 3000;
    while (echoed.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(echoed.map((m) => m.length), [3, 3, 70_000]);
    ws.close();
  });
});
