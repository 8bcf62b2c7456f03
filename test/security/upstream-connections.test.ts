/**
 * Issue 6, item 7 (connection cap) and item 9 (`keepalive_pool.idle_timeout: 0`): what an upstream
 * node sees of the gateway's connections.
 * - `proxy.upstream_max_connections_per_node`: never more requests in flight (connections in use) to
 *   a node than the cap; the rest wait for a slot up to timeout.connect, then 503.
 * - `keepalive_pool.size`: at most that many connections kept open for reuse after a burst.
 * - `keepalive_pool.idle_timeout: 0`: no keep-alive (nginx, APISIX), every request on a connection
 *   of its own with `Connection: close` — it used to fail every request with 400.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { sleep } from '../helpers/wait.ts';

const CAP = 3;

/** What the node saw: open connections and requests in flight, now and at most. */
interface Load {
  connections: number;
  maxConnections: number;
  inFlight: number;
  maxInFlight: number;
  /** `connection` header of each request */
  connectionHeaders: string[];
  /** remote port of each request's connection */
  ports: number[];
  held: Set<Socket>;
}

async function startMeasuredUpstream(): Promise<{ upstream: TestUpstream; load: Load }> {
  const load: Load = { connections: 0, maxConnections: 0, inFlight: 0, maxInFlight: 0, connectionHeaders: [], ports: [], held: new Set() };
  const upstream = await startUpstream('measured', (req, res) => {
    load.inFlight++;
    load.maxInFlight = Math.max(load.maxInFlight, load.inFlight);
    load.connectionHeaders.push(String(req.headers.connection));
    load.ports.push(req.socket.remotePort!);
    res.once('close', () => load.inFlight--);
    req.resume();
    if (req.url!.startsWith('/hold')) return void load.held.add(req.socket); // never answered
    const delay = req.url!.startsWith('/slow') ? 300 : 0;
    setTimeout(() => res.end('ok'), delay);
  });
  upstream.server.on('connection', (socket: Socket) => {
    load.connections++;
    load.maxConnections = Math.max(load.maxConnections, load.connections);
    socket.once('close', () => load.connections--);
  });
  return { upstream, load };
}

/** GET on a fresh client connection; resolves with the status and body (never rejects). */
function get(url: string, signal?: AbortSignal): Promise<{ status: number; body: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const req = request(url, { agent: false, signal }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, ms: Date.now() - started }));
      res.on('error', () => resolve({ status: 0, body, ms: Date.now() - started }));
    });
    req.on('error', () => resolve({ status: 0, body: '', ms: Date.now() - started }));
    req.end();
  });
}

function reset(load: Load): void {
  load.maxConnections = load.connections;
  load.maxInFlight = load.inFlight;
  load.connectionHeaders.length = 0;
  load.ports.length = 0;
}

describe('connections to an upstream node: per-node cap (issue 6 item 7)', () => {
  let gw: GatewayProcess;
  let upstream: TestUpstream;
  let load: Load;

  before(async () => {
    ({ upstream, load } = await startMeasuredUpstream());
    const node = { [upstream.address]: 1 };
    gw = await startGateway({
      proxy: { upstream_max_connections_per_node: CAP },
      routes: {
        routes: [
          { id: 'capped', uri: '/slow/*', upstream: { nodes: node } },
          // same node, other connect timeout: another pool, the same per-node cap
          { id: 'held', uri: '/hold/*', upstream: { nodes: node, timeout: { connect: 0.5, send: 5, read: 5 } } },
          { id: 'fast', uri: '/fast/*', upstream: { nodes: node } },
        ],
      },
    });
  });

  after(async () => {
    for (const s of load?.held ?? []) s.destroy();
    await gw?.cleanup();
    await upstream?.close();
  });

  const resetLoad = () => reset(load);

  it(`at most ${CAP} requests in flight and ${CAP} connections to the node; the others wait and are served`, async () => {
    resetLoad();
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => get(`${gw.url}/slow/${i}`)));
    const ms = Date.now() - started;
    assert.deepEqual(results.map((r) => r.status), Array(12).fill(200));
    assert.ok(load.maxInFlight <= CAP, `upstream saw ${load.maxInFlight} requests at once`);
    assert.ok(load.maxConnections <= CAP, `upstream saw ${load.maxConnections} connections at once`);
    // 12 requests of 300 ms, 3 at a time: 4 rounds
    assert.ok(ms >= 1100, `took ${ms} ms: the requests were not queued`);
  });

  it('a request that finds the node at its cap for the whole connect timeout gets 503; freed slots serve the next', async () => {
    resetLoad();
    const abort = new AbortController();
    const held = Array.from({ length: CAP }, (_, i) => get(`${gw.url}/hold/${i}`, abort.signal));
    const deadline = Date.now() + 3000;
    while (load.inFlight < CAP && Date.now() < deadline) await sleep(10);
    assert.equal(load.inFlight, CAP);
    // route `held` has timeout.connect 0.5 s
    const refused = await get(`${gw.url}/hold/over`);
    assert.equal(refused.status, 503);
    assert.equal(refused.body, '{"error_msg":"503 Service Unavailable"}\n');
    assert.ok(refused.ms >= 400 && refused.ms < 3000, `answered after ${refused.ms} ms`);
    assert.ok(load.maxInFlight <= CAP, `upstream saw ${load.maxInFlight} requests at once`);
    // another route to the same node shares its cap: it waits too, and is served once clients leave
    const waiting = get(`${gw.url}/fast/after`);
    await sleep(200);
    abort.abort();
    await Promise.all(held);
    const served = await waiting;
    assert.equal(served.status, 200, served.body);
    // (no in-flight bound asserted after the abort: the gateway frees a slot when it aborts the
    // upstream request, and the upstream may learn of that close after the next request arrives)
  });
});

describe('connections to an upstream node: keepalive_pool (issue 6 items 7 and 9)', () => {
  let gw: GatewayProcess;
  let upstream: TestUpstream;
  let load: Load;

  before(async () => {
    ({ upstream, load } = await startMeasuredUpstream());
    const node = { [upstream.address]: 1 };
    gw = await startGateway({
      routes: {
        routes: [
          { id: 'small-pool', uri: '/slow-small-pool/*', upstream: { nodes: node, keepalive_pool: { size: 2 } } },
          { id: 'no-keepalive', uri: '/no-keepalive/*', upstream: { nodes: node, keepalive_pool: { idle_timeout: 0 } } },
        ],
      },
    });
  });

  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  const resetLoad = () => reset(load);

  it('keepalive_pool.size bounds the connections kept open after a burst', async () => {
    resetLoad();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => get(`${gw.url}/slow-small-pool/${i}`)));
    assert.deepEqual(results.map((r) => r.status), Array(8).fill(200));
    await sleep(300);
    assert.equal(load.maxInFlight, 8, 'the burst ran at once (the default cap is far above it)');
    assert.ok(load.connections <= 2, `${load.connections} connections of the burst still open (keepalive_pool.size: 2)`);
    assert.equal(load.connectionHeaders.filter((h) => h === 'close').length, 6, 'beyond 2 in flight, Connection: close');
  });

  it('keepalive_pool.idle_timeout: 0 works: no keep-alive, a connection per request, Connection: close', async () => {
    resetLoad();
    for (let i = 0; i < 3; i++) {
      const result = await get(`${gw.url}/no-keepalive/${i}`);
      assert.equal(result.status, 200, result.body);
      await sleep(20);
    }
    assert.deepEqual(load.connectionHeaders, ['close', 'close', 'close']);
    assert.equal(new Set(load.ports).size, 3, 'each request on its own connection');
  });
});
