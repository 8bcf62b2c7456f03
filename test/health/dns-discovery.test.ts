import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import { hit, hitFresh, Node } from './nodes.ts';

/*
 * DNS discovery through the gateway process, against a DNS server the test runs on loopback
 * (test/helpers/dns-server.ts: node:dgram + dns-packet), never the machine's resolver: nodes given
 * by host name follow their A records live; `discovery_type: dns` follows SRV records; a failing
 * DNS server keeps the last good nodes. Nodes listen on addresses of their own (127.0.0.2-4) and
 * on one port, so that only DNS tells them apart.
 */

describe('DNS discovery', () => {
  let dns: TestDnsServer;
  let gw: GatewayProcess;
  const two = new Node('two', '127.0.0.2');
  const three = new Node('three', '127.0.0.3');
  const four = new Node('four', '127.0.0.4');
  let port = 0;
  const routes = (extra: Record<string, unknown> = {}) => ({
    upstreams: [
      { id: 'named', retries: 0, pass_host: 'node', nodes: { [`app.test:${port}`]: 1 } },
      { id: 'srv', retries: 0, discovery_type: 'dns', service_name: '_http._tcp.api.test' },
      { id: 'svc', retries: 0, discovery_type: 'dns', service_name: `web.test:${port}` },
    ],
    routes: [
      { id: 'named', uri: '/named/*', upstream_id: 'named' },
      { id: 'srv', uri: '/srv/*', upstream_id: 'srv' },
      { id: 'svc', uri: '/svc/*', upstream_id: 'svc' },
      ...(extra.routes as unknown[] ?? []),
    ],
  });

  before(async () => {
    await two.start();
    three.port = four.port = port = two.port;
    await three.start();
    await four.start();
    dns = await startDnsServer();
    dns.setA('app.test', ['127.0.0.2'], 1);
    dns.setA('web.test', ['127.0.0.3', '127.0.0.4'], 1);
    dns.setA('a.api.test', ['127.0.0.3'], 1);
    dns.setA('b.api.test', ['127.0.0.4'], 1);
    dns.setSrv('_http._tcp.api.test', [
      { target: 'a.api.test', port, weight: 1, priority: 10 },
      { target: 'b.api.test', port, weight: 1, priority: 20 },
    ], 1);
    gw = await startGateway({ routes: routes(), extra: { dns: { servers: [dns.address], min_ttl: 1, max_ttl: 2, timeout: 1 } } });
  });
  after(async () => {
    await gw?.cleanup();
    await dns?.close();
    for (const n of [two, three, four]) await n.kill();
  });

  test('ready only once the names had their first answers; nodes resolved, pass_host node sends the name', async () => {
    assert.equal(await hit(`${gw.url}/named/x`), 'two');
    assert.equal(two.hosts.at(-1), `app.test:${port}`);
    const report = (await gw.status()).upstream_dns!;
    const named = report.find((r) => r.upstream === 'upstreams/named')!;
    assert.deepEqual([named.name, named.found], ['app.test', ['127.0.0.2']]);
    assert.ok(named.resolved_at && named.next_at);
  });

  test('service_name host:port: every A address is a node', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10; i++) seen.add(await hit(`${gw.url}/svc/${i}`));
    assert.deepEqual(seen, new Set(['three', 'four']));
  });

  test('SRV: the lower SRV priority serves; its target gone from DNS → the next priority', async () => {
    for (let i = 0; i < 6; i++) assert.equal(await hit(`${gw.url}/srv/${i}`), 'three');
    dns.setSrv('_http._tcp.api.test', [{ target: 'b.api.test', port, weight: 1, priority: 20 }], 1);
    await waitUntil(async () => (await hit(`${gw.url}/srv/after`)) === 'four', 5000, 'SRV change to apply', 100);
  });

  test('an A record that changes moves traffic live, with no failed request', async () => {
    const results: string[] = [];
    let running = true;
    const loop = (async () => {
      while (running) results.push(await hit(`${gw.url}/named/loop`));
    })();
    await sleep(200);
    dns.setA('app.test', ['127.0.0.3'], 1);
    await waitUntil(() => results.at(-1) === 'three', 5000, 'traffic on the new address');
    await sleep(200);
    running = false;
    await loop;
    assert.deepEqual(new Set(results), new Set(['two', 'three']), `every request answered: ${[...new Set(results)].join(', ')}`);
    const firstThree = results.indexOf('three');
    assert.ok(results.slice(firstThree).every((r) => r === 'three'), 'no flapping back');
  });

  test('a failing DNS server keeps the last good nodes, and /status says why', async () => {
    dns.failWith('app.test', 'SERVFAIL');
    const failed = await waitUntil(async () => (await gw.status()).upstream_dns!.find((r) => r.upstream === 'upstreams/named' && r.error), 5000, 'the failure in /status');
    assert.equal(failed.error!.code, 'PORTICO_ERR_DNS_FAILED');
    assert.deepEqual(failed.found, ['127.0.0.3']);
    for (let i = 0; i < 5; i++) assert.equal(await hit(`${gw.url}/named/${i}`), 'three');
    dns.failWith('app.test', undefined);
    await waitUntil(async () => !(await gw.status()).upstream_dns!.find((r) => r.upstream === 'upstreams/named')!.error, 6000, 'recovery');
  });

  test('a config change that keeps the upstream keeps its resolved nodes; one that changes the name waits for its answer', async () => {
    writeRoutes(gw.routesPath, routes({ routes: [{ id: 'extra', uri: '/extra', upstream_id: 'named' }] }));
    await waitUntil(async () => (await gw.status()).counts.routes === 4, 3000, 'the change');
    for (let i = 0; i < 5; i++) assert.equal(await hit(`${gw.url}/named/${i}`), 'three');
    dns.setA('other.test', ['127.0.0.4'], 1);
    const changed = routes();
    (changed.upstreams[0] as { nodes: unknown }).nodes = { [`other.test:${port}`]: 1 };
    writeRoutes(gw.routesPath, changed);
    await waitUntil(async () => (await hit(`${gw.url}/named/x`)) === 'four', 5000, 'the new name to serve', 50);
  });
});

describe('DNS discovery with proxy.workers: 2', () => {
  let dns: TestDnsServer;
  let gw: GatewayProcess;
  const two = new Node('two', '127.0.0.2');
  const three = new Node('three', '127.0.0.3');

  before(async () => {
    await two.start();
    three.port = two.port;
    await three.start();
    dns = await startDnsServer();
    dns.setA('pair.test', ['127.0.0.2'], 1);
    gw = await startGateway({
      workers: 2,
      routes: { routes: [{ id: 'r', uri: '/*', upstream: { retries: 0, nodes: { [`pair.test:${two.port}`]: 1 } } }] },
      extra: { dns: { servers: [dns.address], min_ttl: 1, max_ttl: 1, timeout: 1 } },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await dns?.close();
    await two.kill();
    await three.kill();
  });

  test('one resolver per instance (queries counted), and both workers follow a change', async () => {
    const before = dns.queries('pair.test', 'A');
    await sleep(3000);
    const queries = dns.queries('pair.test', 'A') - before;
    // re-resolved every second by one resolver: 2-4 queries in 3 s (one per worker would be 5-8)
    assert.ok(queries >= 2 && queries <= 4, `${queries} A queries in 3 s`);
    dns.setA('pair.test', ['127.0.0.3'], 1);
    await sleep(2500);
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => hitFresh(`${gw.url}/w/${i}`)));
    assert.deepEqual(new Set(results), new Set(['three']));
  });
});
