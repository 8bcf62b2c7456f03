import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createBalancer } from '../../src/upstream/balancer/index.ts';
import { normalizeNodes } from '../../src/upstream/nodes.ts';
import { ConnectionPools, poolKey } from '../../src/upstream/pools.ts';
import type { UpstreamTarget } from '../../src/upstream/types.ts';

function target(port: number, overrides: Partial<UpstreamTarget> = {}): UpstreamTarget {
  const nodes = normalizeNodes({ [`127.0.0.1:${port}`]: 1 }, 'http');
  return {
    key: 'upstreams/1',
    scheme: 'http',
    passHost: 'pass',
    timeout: { connect: 1000, send: 1000, read: 1000 },
    retries: 0,
    retryTimeout: 0,
    keepalive: { size: 8, idleTimeout: 5000, requests: 100 },
    ...overrides,
    nodes,
    balancer: createBalancer('roundrobin', nodes),
  };
}

describe('ConnectionPools', () => {
  const server = http.createServer((req, res) => res.end(String(req.socket.remotePort)));
  let port = 0;
  before(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  async function get(pools: ConnectionPools, t: UpstreamTarget): Promise<string> {
    const { body } = await pools.dispatcherFor(t, t.nodes[0]!).request({ path: '/', method: 'GET' });
    return body.text();
  }

  it('reuses one pool and its kept-alive connection across requests and recompiled targets', async () => {
    const pools = new ConnectionPools();
    const first = target(port);
    const recompiled = target(port); // same node and settings, new objects (a config push)
    assert.equal(pools.dispatcherFor(first, first.nodes[0]!), pools.dispatcherFor(recompiled, recompiled.nodes[0]!));
    const a = await get(pools, first);
    // undici frees the connection just after the body ends
    await new Promise((resolve) => setImmediate(resolve));
    const b = await get(pools, recompiled);
    assert.equal(a, b, 'a second connection was opened');
    assert.equal(pools.size, 1);
    await pools.close();
  });

  it('keys pools by connect timeout and keepalive settings', () => {
    const base = target(port);
    const other = target(port, { timeout: { connect: 50, send: 1000, read: 1000 } });
    assert.notEqual(poolKey(base, base.nodes[0]!), poolKey(other, other.nodes[0]!));
    const readOnly = target(port, { timeout: { connect: 1000, send: 1, read: 1 } });
    assert.equal(poolKey(base, base.nodes[0]!), poolKey(readOnly, readOnly.nodes[0]!), 'read timeout is per request');
  });

  it('retain() closes pools of nodes no longer referenced; a later request gets a fresh pool', async () => {
    const pools = new ConnectionPools();
    const kept = target(port);
    const dropped = target(port, { keepalive: { size: 1, idleTimeout: 1000, requests: 1 } });
    await get(pools, kept);
    await get(pools, dropped);
    assert.equal(pools.size, 2);
    const droppedPool = pools.dispatcherFor(dropped, dropped.nodes[0]!);
    await pools.retain(new Set([poolKey(kept, kept.nodes[0]!)]));
    assert.deepEqual(pools.keys(), [poolKey(kept, kept.nodes[0]!)]);
    assert.notEqual(pools.dispatcherFor(dropped, dropped.nodes[0]!), droppedPool);
    assert.equal(await get(pools, dropped).then(() => 'ok'), 'ok');
    await pools.close();
    assert.equal(pools.size, 0);
  });
});
