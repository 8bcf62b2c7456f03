import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PorticoError } from '../../src/errors.ts';
import { compileProblem } from '../../src/runtime/compile.ts';
import { createChash } from '../../src/upstream/balancer/chash.ts';
import { balancerTypes, createBalancer } from '../../src/upstream/balancer/index.ts';
import type { BalancerOptions, PickRequest, UpstreamNode } from '../../src/upstream/types.ts';
import { balancerContract, node } from './balancer-contract.ts';

// pick() without a request walks the ring evenly (see chash.ts), so the contract's weighted spread holds
balancerContract('chash', createChash, { exactDistribution: false });
balancerContract('chash via registry', (nodes) => createBalancer('chash', nodes), { exactDistribution: false });

interface RequestParts {
  addr?: string;
  method?: string;
  path?: string;
  query?: string;
  host?: string;
  headers?: Record<string, string>;
  consumer?: string;
}

/** A PickRequest as the proxy builds it (src/plugins/run.ts), from plain parts. */
function request(parts: RequestParts = {}): PickRequest {
  const headers = new Map(Object.entries(parts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const query = parts.query ?? '';
  return {
    method: parts.method ?? 'GET',
    path: parts.path ?? '/',
    query,
    host: parts.host ?? 'example.com',
    clientAddress: parts.addr ?? '10.0.0.1',
    consumerName: parts.consumer,
    header: (name) => headers.get(name.toLowerCase()),
    arg: (name) => new URLSearchParams(query).get(name) ?? undefined,
    cookie: (name) => {
      for (const part of (headers.get('cookie') ?? '').split(';')) {
        const eq = part.indexOf('=');
        if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
      }
      return undefined;
    },
  };
}

const byAddress = (nodes: UpstreamNode[]) => createChash(nodes, { hashOn: 'vars', key: 'remote_addr' });
/** which node a key string lands on: the node a remote_addr-keyed balancer picks for that address */
const nodeOfKey = (nodes: UpstreamNode[]) => {
  const balancer = byAddress(nodes);
  return (key: string) => balancer.pick(undefined, request({ addr: key }))!;
};

const keys = (n: number, prefix = 'user-') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

function shares(nodes: UpstreamNode[], sample: string[]): Map<string, number> {
  const find = nodeOfKey(nodes);
  const counts = new Map<string, number>();
  for (const key of sample) {
    const host = find(key).host;
    counts.set(host, (counts.get(host) ?? 0) + 1);
  }
  return new Map([...counts].map(([host, c]) => [host, c / sample.length]));
}

describe('chash: consistent hashing', () => {
  it('is registered as an upstream type', () => {
    assert.ok(balancerTypes().includes('chash'));
    assert.equal(createBalancer('chash', [node('a', 1)]).needsRequest, true);
  });

  it('sends the same key to the same node, whatever the node order or the balancer instance', () => {
    const nodes = [node('a', 1), node('b', 1), node('c', 1), node('d', 2)];
    const first = nodeOfKey(nodes);
    const reordered = nodeOfKey([...nodes].reverse());
    const seen = new Set<string>();
    for (const key of keys(1000)) {
      const picked = first(key);
      seen.add(picked.host);
      for (let i = 0; i < 3; i++) assert.equal(first(key), picked, `key ${key} moved between picks`);
      assert.equal(reordered(key).host, picked.host, `key ${key}: depends on node order`);
    }
    assert.equal(seen.size, 4, 'every node serves some keys');
  });

  it('gives a node key shares in proportion to its weight (3:1 within 10%)', () => {
    const share = shares([node('heavy', 3), node('light', 1)], keys(10_000));
    const heavy = share.get('heavy') ?? 0;
    assert.ok(Math.abs(heavy - 0.75) < 0.075, `heavy share ${heavy}, want 0.75 ± 10%`);
    // 160 points per node (resty.chash's and nginx's count) leave arcs within ≈ ±8% (1/√160) of
    // equal, so equal weights get 1/3 ± 20%, not the exact split round robin gives
    const three = shares([node('a', 1), node('b', 1), node('c', 1)], keys(9000));
    for (const [host, s] of three) assert.ok(Math.abs(s - 1 / 3) < 1 / 15, `${host}: share ${s}, want 1/3 ± 20%`);
  });

  it('weights are relative: 100/100/300 is the ring of 1/1/3', () => {
    const big = nodeOfKey([node('a', 100), node('b', 100), node('c', 300)]);
    const small = nodeOfKey([node('a', 1), node('b', 1), node('c', 3)]);
    for (const key of keys(2000)) assert.equal(big(key).host, small(key).host);
  });

  it('adding a fifth node to four moves about 1/5 of the keys, all of them to the new node', () => {
    const four = [node('n1', 1), node('n2', 1), node('n3', 1), node('n4', 1)];
    const before = nodeOfKey(four);
    const after = nodeOfKey([...four, node('n5', 1)]);
    let moved = 0;
    for (const key of keys(10_000)) {
      const from = before(key).host;
      const to = after(key).host;
      if (from === to) continue;
      moved++;
      assert.equal(to, 'n5', `key ${key} moved ${from} → ${to}, not to the new node`);
    }
    const fraction = moved / 10_000;
    assert.ok(fraction > 0.12 && fraction < 0.3, `moved ${fraction} of the keys, want ≈ 0.2`);
  });

  it('removing a node moves only the keys it served, spread over the others', () => {
    const five = [node('n1', 1), node('n2', 1), node('n3', 1), node('n4', 1), node('n5', 1)];
    const before = nodeOfKey(five);
    const after = nodeOfKey(five.filter((n) => n.host !== 'n3'));
    const heirs = new Set<string>();
    let orphans = 0;
    for (const key of keys(10_000)) {
      const from = before(key).host;
      const to = after(key).host;
      if (from === 'n3') {
        orphans++;
        heirs.add(to);
      } else assert.equal(to, from, `key ${key} on ${from} moved to ${to}`);
    }
    assert.ok(orphans > 1200 && orphans < 3000, `n3 served ${orphans} of 10000 keys`);
    assert.equal(heirs.size, 4, `n3's keys went to ${[...heirs].join(', ')}: virtual points should spread them`);
  });

  it('retries walk the ring to the next node not yet tried, the same one every time', () => {
    const nodes = [node('a', 1), node('b', 1), node('c', 1), node('d', 1)];
    const balancer = createChash(nodes, { hashOn: 'header', key: 'x-user' });
    const fallbacks = new Set<string>();
    for (const key of keys(200)) {
      const r = request({ headers: { 'x-user': key } });
      const first = balancer.pick(undefined, r)!;
      const tried = new Set([first]);
      const second = balancer.pick(tried, r)!;
      assert.notEqual(second, first);
      assert.equal(balancer.pick(tried, r), second, 'a retry is deterministic');
      fallbacks.add(`${first.host}>${second.host}`);
      tried.add(second);
      const third = balancer.pick(tried, r)!;
      assert.ok(third !== first && third !== second);
      assert.equal(balancer.pick(new Set(nodes), r), undefined);
      // a tried node that is not this key's node changes nothing
      const other = nodes.find((n) => n !== first)!;
      assert.equal(balancer.pick(new Set([other]), r), first);
    }
    assert.ok(fallbacks.size > 4, `a node's keys fall back to one node only: ${[...fallbacks].join(' ')}`);
  });

  it('never puts a weight-0 node on the ring', () => {
    const balancer = byAddress([node('a', 1), node('zero', 0), node('b', 1)]);
    for (const key of keys(2000)) assert.notEqual(balancer.pick(undefined, request({ addr: key }))!.host, 'zero');
  });

  it('keeps huge weights bounded and every node reachable', () => {
    const started = performance.now();
    const share = shares([node('big', 1_000_000), node('small', 1), node('mid', 999_983)], keys(20_000));
    assert.ok(performance.now() - started < 2000, 'the ring took too long to build');
    assert.ok((share.get('big') ?? 0) > 0.4 && (share.get('mid') ?? 0) > 0.4, JSON.stringify([...share]));
  });

  it('spreads across priority levels: a chash level is tried first, the next level after its nodes failed', () => {
    const primary = [{ ...node('p1', 1), priority: 1 }, { ...node('p2', 1), priority: 1 }];
    const backup = node('backup', 1);
    const balancer = createBalancer('chash', [backup, ...primary], { hashOn: 'header', key: 'x-user' });
    assert.equal(balancer.needsRequest, true);
    const r = request({ headers: { 'x-user': 'alice' } });
    const first = balancer.pick(undefined, r)!;
    assert.ok(first.host.startsWith('p'));
    assert.equal(balancer.pick(undefined, r), first);
    assert.equal(balancer.pick(new Set(primary), r), backup);
  });
});

describe('chash: hash_on and key', () => {
  const nodes = [node('a', 1), node('b', 1), node('c', 1), node('d', 1), node('e', 1)];
  const find = nodeOfKey(nodes);

  /** asserts that `options` hashes each request on the value given with it */
  function hashesOn(options: BalancerOptions, cases: [PickRequest, string][]): void {
    const balancer = createChash(nodes, options);
    for (const [r, key] of cases) {
      assert.equal(balancer.pick(undefined, r)!.host, find(key).host, `${JSON.stringify(options)}: expected the node of "${key}"`);
    }
  }
  // many distinct values with varying client addresses, so a wrong key source shows
  const values = keys(60, 'v');
  const addr = (i: number) => `192.0.2.${i}`;

  it('vars: remote_addr by default, and when the key is unset', () => {
    hashesOn({ hashOn: 'vars', key: undefined }, values.map((v) => [request({ addr: v }), v]));
    hashesOn({ hashOn: 'vars', key: 'remote_addr' }, values.map((v) => [request({ addr: v, path: `/${v}` }), v]));
  });

  it('vars: uri, request_uri, host, query_string, arg_, http_, cookie_', () => {
    hashesOn({ hashOn: 'vars', key: 'uri' }, values.map((v, i) => [request({ addr: addr(i), path: `/p/${v}`, query: 'x=1' }), `/p/${v}`]));
    hashesOn({ hashOn: 'vars', key: 'request_uri' }, values.map((v, i) => [request({ addr: addr(i), path: `/p/${v}`, query: `id=${i}` }), `/p/${v}?id=${i}`]));
    hashesOn({ hashOn: 'vars', key: 'request_uri' }, [[request({ path: '/a b' }), '/a%20b']]);
    hashesOn({ hashOn: 'vars', key: 'host' }, values.map((v, i) => [request({ addr: addr(i), host: `${v}.example.com` }), `${v}.example.com`]));
    hashesOn({ hashOn: 'vars', key: 'query_string' }, values.map((v, i) => [request({ addr: addr(i), query: `q=${v}` }), `q=${v}`]));
    hashesOn({ hashOn: 'vars', key: 'arg_id' }, values.map((v, i) => [request({ addr: addr(i), query: `x=1&id=${v}` }), v]));
    hashesOn({ hashOn: 'vars', key: 'http_x_user' }, values.map((v, i) => [request({ addr: addr(i), headers: { 'X-User': v } }), v]));
    hashesOn({ hashOn: 'vars', key: 'cookie_sid' }, values.map((v, i) => [request({ addr: addr(i), headers: { cookie: `a=1; sid=${v}` } }), v]));
  });

  it('header (nginx naming: _ stands for -), cookie (case-sensitive), consumer', () => {
    hashesOn({ hashOn: 'header', key: 'x-user' }, values.map((v, i) => [request({ addr: addr(i), headers: { 'X-User': v } }), v]));
    hashesOn({ hashOn: 'header', key: 'X_User' }, values.map((v, i) => [request({ addr: addr(i), headers: { 'x-user': v } }), v]));
    hashesOn({ hashOn: 'cookie', key: 'SID' }, values.map((v, i) => [request({ addr: addr(i), headers: { cookie: `sid=no; SID=${v}` } }), v]));
    hashesOn({ hashOn: 'consumer', key: undefined }, values.map((v, i) => [request({ addr: addr(i), consumer: v }), v]));
  });

  it('vars_combinations: $name and ${name} templates with literal text', () => {
    hashesOn({ hashOn: 'vars_combinations', key: '$remote_addr$uri' }, values.map((v, i) => [request({ addr: addr(i), path: `/${v}` }), `${addr(i)}/${v}`]));
    hashesOn(
      { hashOn: 'vars_combinations', key: '${http_x_user}-$arg_id' },
      values.map((v, i) => [request({ addr: addr(i), headers: { 'x-user': v }, query: `id=${i}` }), `${v}-${i}`]),
    );
    // an absent variable reads as '' while another one has a value
    hashesOn({ hashOn: 'vars_combinations', key: '${http_x_user}-$arg_id' }, values.map((v, i) => [request({ addr: addr(i), query: `id=${v}` }), `-${v}`]));
    hashesOn({ hashOn: 'vars_combinations', key: 'u:${arg_u ?? anon}' }, [[request({ addr: 'x' }), 'u:anon']]);
  });

  it('falls back to the client address when the key has no value or is empty', () => {
    const fallback = (r: PickRequest): [PickRequest, string] => [r, r.clientAddress];
    hashesOn({ hashOn: 'header', key: 'x-user' }, values.map((v) => fallback(request({ addr: v }))));
    hashesOn({ hashOn: 'header', key: 'x-user' }, values.map((v) => fallback(request({ addr: v, headers: { 'x-user': '' } }))));
    hashesOn({ hashOn: 'vars', key: 'arg_id' }, values.map((v) => fallback(request({ addr: v, query: 'id=' }))));
    hashesOn({ hashOn: 'cookie', key: 'sid' }, values.map((v) => fallback(request({ addr: v, headers: { cookie: 'other=1' } }))));
    hashesOn({ hashOn: 'consumer', key: undefined }, values.map((v) => fallback(request({ addr: v }))));
    // none of the template's variables resolved: APISIX's n_resolved == 0
    hashesOn({ hashOn: 'vars_combinations', key: '$http_x_user-$arg_id' }, values.map((v) => fallback(request({ addr: v }))));
    hashesOn({ hashOn: 'vars_combinations', key: 'constant' }, values.map((v) => fallback(request({ addr: v }))));
  });

  it('rejects keys that cannot work, with a /key: reason', () => {
    const bad: [BalancerOptions, RegExp][] = [
      [{ hashOn: 'vars', key: 'nope' }, /^\/key: unsupported variable "nope"/],
      [{ hashOn: 'vars', key: 'server_addr' }, /^\/key: unsupported variable "server_addr"/],
      [{ hashOn: 'vars', key: 'arg_' }, /^\/key: unsupported variable "arg_"/],
      [{ hashOn: 'header', key: undefined }, /^\/key: required when hash_on is header/],
      [{ hashOn: 'header', key: 'x user' }, /^\/key: "x user" is not a valid header name/],
      [{ hashOn: 'cookie', key: 'a=b' }, /^\/key: "a=b" is not a valid cookie name/],
      [{ hashOn: 'vars_combinations', key: undefined }, /^\/key: required when hash_on is vars_combinations/],
      [{ hashOn: 'vars_combinations', key: '$remote_addr-$bogus' }, /^\/key: unsupported variable "bogus"/],
      [{ hashOn: 'sideways', key: 'x' }, /^\/hash_on: unknown value "sideways"/],
    ];
    for (const [options, reason] of bad) {
      for (const list of [[node('a', 1)], []]) {
        assert.throws(() => createChash(list, options), (err: unknown) => err instanceof PorticoError && reason.test(err.message), JSON.stringify(options));
      }
    }
  });

  it('a rejected key is the upstream\'s validation reason, path included', () => {
    const upstream = { type: 'chash', hash_on: 'vars', key: 'nope', nodes: { '127.0.0.1:1980': 1 } };
    assert.match(compileProblem('upstreams', '1', upstream) ?? '', /^\/key: unsupported variable "nope"/);
    assert.match(compileProblem('routes', '1', { uri: '/x', upstream }) ?? '', /^\/upstream\/key: unsupported variable "nope"/);
    assert.equal(compileProblem('upstreams', '1', { ...upstream, key: 'arg_id' }), undefined);
    assert.equal(compileProblem('upstreams', '1', { ...upstream, hash_on: 'consumer', key: undefined }), undefined);
  });
});
