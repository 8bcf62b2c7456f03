import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigStore } from '../../src/config/store.ts';
import { Runtime } from '../../src/runtime/runtime.ts';
import type { MatchRequest } from '../../src/router/types.ts';

const req = (path: string): MatchRequest => ({ method: 'GET', host: 'example.com', path, remoteAddr: '127.0.0.1', headers: {}, query: '' });

function setup() {
  const store = new ConfigStore('t');
  const runtime = new Runtime('radixtree_host_uri');
  store.subscribe((s, d) => runtime.apply(s, d));
  let rev = 0;
  /** `value` undefined: deletes the object */
  const put = (kind: 'routes' | 'upstreams' | 'services', id: string, value: unknown) =>
    store.apply({ source: 't', revision: ++rev, full: false, changes: [value === undefined ? { kind, id, modRevision: rev, deleted: true } : { kind, id, modRevision: rev, value }] });
  return { runtime, put };
}

test('an upstream change swaps the target under its routes; unchanged nodes keep the balancer', () => {
  const { runtime, put } = setup();
  put('upstreams', 'u', { nodes: { '127.0.0.1:1': 1, '127.0.0.1:2': 1 } });
  put('routes', 'r', { uri: '/a', upstream_id: 'u' });
  const route = runtime.matchRoute(req('/a'))!.target;
  const before = route.upstream!;
  // only the timeout changes: same nodes, so the balancer (and its rotation) is carried over
  put('upstreams', 'u', { nodes: { '127.0.0.1:1': 1, '127.0.0.1:2': 1 }, timeout: { read: 3 } });
  assert.equal(runtime.matchRoute(req('/a'))!.target, route, 'the route was not recompiled');
  assert.notEqual(route.upstream, before);
  assert.equal(route.upstream!.timeout.read, 3000);
  assert.equal(route.upstream!.balancer, before.balancer);
  // new nodes: a new balancer
  put('upstreams', 'u', { nodes: { '127.0.0.1:3': 1 }, timeout: { read: 3 } });
  assert.notEqual(route.upstream!.balancer, before.balancer);
  assert.deepEqual(route.upstream!.nodes.map((n) => n.key), ['127.0.0.1:3']);
});

test('a route-level timeout gets its own target, and pool retention sees it', () => {
  const { runtime, put } = setup();
  put('upstreams', 'u', { nodes: { '127.0.0.1:1': 1 }, timeout: { connect: 1, read: 5 } });
  put('routes', 'r', { uri: '/a', upstream_id: 'u', timeout: { connect: 2, read: 7 } });
  const target = runtime.matchRoute(req('/a'))!.target.upstream!;
  assert.deepEqual(target.timeout, { connect: 2000, send: 60_000, read: 7000 });
  const targets = runtime.upstreamTargets();
  assert.ok(targets.includes(target), 'the route-level target is retained, so its keep-alive pool is not closed');
  assert.equal(targets.length, 2);
  put('routes', 'r', { uri: '/a', upstream_id: 'u' });
  assert.equal(runtime.upstreamTargets().length, 1);
});

test('a service change recompiles the routes that use it (hosts come from the service)', () => {
  const { runtime, put } = setup();
  put('services', 's', { hosts: ['example.com'], upstream: { nodes: { '127.0.0.1:1': 1 } } });
  put('routes', 'r', { uri: '/a', service_id: 's' });
  assert.ok(runtime.matchRoute(req('/a')));
  put('services', 's', { hosts: ['other.com'], upstream: { nodes: { '127.0.0.1:1': 1 } } });
  assert.equal(runtime.matchRoute(req('/a')), undefined);
  assert.ok(runtime.matchRoute({ ...req('/a'), host: 'other.com' }));
});

test("a route's own upstream is a target while it has one, and goes with it (pool retention)", () => {
  const { runtime, put } = setup();
  put('upstreams', 'u', { nodes: { '127.0.0.1:1': 1 } });
  put('routes', 'plain', { uri: '/p', upstream_id: 'u' });
  assert.equal(runtime.upstreamTargets().length, 1);
  put('routes', 'r', { uri: '/a', upstream: { nodes: { '127.0.0.1:2': 1 } } });
  assert.deepEqual(runtime.upstreamTargets().map((t) => t.nodes[0]!.key).sort(), ['127.0.0.1:1', '127.0.0.1:2']);
  assert.equal(runtime.matchRoute(req('/a'))!.target.upstream!.nodes[0]!.key, '127.0.0.1:2');
  // its own upstream replaced by a reference: that target is dropped
  put('routes', 'r', { uri: '/a', upstream_id: 'u' });
  assert.deepEqual(runtime.upstreamTargets().map((t) => t.nodes[0]!.key), ['127.0.0.1:1']);
  assert.equal(runtime.matchRoute(req('/a'))!.target.upstream!.nodes[0]!.key, '127.0.0.1:1');
  // and back, then the route deleted
  put('routes', 'r', { uri: '/a', upstream: { nodes: { '127.0.0.1:3': 1 } } });
  assert.equal(runtime.upstreamTargets().length, 2);
  put('routes', 'r', undefined);
  assert.deepEqual(runtime.upstreamTargets().map((t) => t.nodes[0]!.key), ['127.0.0.1:1']);
  assert.equal(runtime.matchRoute(req('/a')), undefined);
});
