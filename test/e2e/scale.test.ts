import assert from 'node:assert/strict';
import { Agent, request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

/*
 * 50,000 routes from a real etcd, served by a gateway process: correctness at scale (timings are
 * bench:scale's). Routes mix exact, prefix and parameter uris, hosts and methods, as
 * bench/scale.ts does; every 1,000th is requested, then one change and one delete.
 */

const N = 50_000;

function route(i: number): Record<string, unknown> {
  const svc = i % 97;
  const uri = i % 3 === 0 ? `/api/svc${svc}/r${i}` : i % 3 === 1 ? `/api/svc${svc}/p${i}/*` : `/api/svc${svc}/u${i}/:id`;
  return { uri, ...(i % 5 !== 0 && { hosts: [`h${i % 200}.example.com`] }), ...(i % 2 === 0 && { methods: ['GET', 'POST'] }), upstream_id: 'u' };
}
function request(i: number): { path: string; host: string } {
  const svc = i % 97;
  const path = i % 3 === 0 ? `/api/svc${svc}/r${i}` : i % 3 === 1 ? `/api/svc${svc}/p${i}/deep/x` : `/api/svc${svc}/u${i}/7`;
  return { path, host: i % 5 !== 0 ? `h${i % 200}.example.com` : 'any.example.com' };
}

describe(`${N} routes from etcd`, () => {
  let etcd: EtcdProcess;
  let client: EtcdClient;
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  // node:http, not fetch: fetch does not send the Host header it is given
  const get = (path: string, host: string, method = 'GET') =>
    new Promise<{ status: number; url: string | undefined }>((resolve, reject) => {
      const req = httpRequest(`${gw.url}${path}`, { method, agent, headers: { host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, url: res.statusCode === 200 ? (JSON.parse(body) as { url: string }).url : undefined }));
      });
      req.on('error', reject);
      req.end();
    });

  before(async () => {
    etcd = await startEtcd();
    client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    upstream = await startUpstream('u');
    await client.put('/portico/upstreams/u', JSON.stringify({ nodes: { [upstream.address]: 1 } }));
    for (let i = 0; i < N; i += 800) {
      // 8 transactions of 100 puts in flight (etcd allows 128 operations per transaction)
      await Promise.all(
        Array.from({ length: 8 }, (_, b) => {
          const ops = [];
          for (let j = i + b * 100; j < Math.min(N, i + (b + 1) * 100); j++) ops.push({ put: { key: `/portico/routes/r${j}`, value: JSON.stringify(route(j)) } });
          return ops.length ? client.txn({ success: ops }) : undefined;
        }),
      );
    }
    // debug: the log says when the first listing's garbage was collected (server/heap.ts)
    gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl] }, router: 'radixtree_uri_with_parameter', env: { PORTICO_LOG_LEVEL: 'debug' } });
  });
  after(async () => {
    agent.destroy();
    await gw?.cleanup();
    await client?.close();
    await etcd?.stop();
    await upstream?.close();
  });

  test('every route is in force; every 1,000th is served with its own path', async () => {
    // once, before the tables were built, for the first listing
    const collected = gw.output().split('\n').filter((l) => l.includes('heap collected after the first listing'));
    assert.equal(collected.length, 1, gw.output().slice(-2000));
    assert.equal((JSON.parse(collected[0]!) as { objects: number }).objects, N + 1);
    const st = await gw.status();
    assert.equal(st.counts.routes, N);
    assert.deepEqual(st.rejected, []);
    // every 1,000th, and its neighbour: multiples of 1,000 have no hosts, their neighbours do
    for (let i = 0; i < N; i += 1000) for (const k of [i, i + 1]) {
      const { path, host } = request(k);
      const res = await get(path, host);
      assert.deepEqual(res, { status: 200, url: path }, `route ${k}`);
    }
    // the host and method filters hold at scale: another host, or a method the route lacks
    assert.equal((await get(request(1).path, 'nobody.example.com')).status, 404);
    assert.equal((await get(request(2).path, request(2).host, 'PUT')).status, 404);
    assert.equal((await get(request(3).path, request(3).host, 'PUT')).status, 200, 'a route without methods takes any');
  });

  test('a change applies, a deleted route answers 404, and the others stay', async () => {
    await client.put('/portico/routes/r25000', JSON.stringify({ uri: '/moved/here', upstream_id: 'u' }));
    await waitUntil(async () => (await get('/moved/here', 'x')).status === 200, 5000, 'the change');
    assert.equal((await get(request(25000).path, request(25000).host)).status, 404);
    await client.delete('/portico/routes/r49999');
    await waitUntil(async () => (await get(request(49999).path, request(49999).host)).status === 404, 5000, 'the delete');
    for (const i of [0, 24999, 25001, 49998]) assert.equal((await get(request(i).path, request(i).host)).status, 200, `route ${i}`);
    assert.equal((await gw.status()).counts.routes, N - 1);
  });

  test('two workers serve them too; the primary collects its heap once they listen, not before', async () => {
    const two = await startGateway({ etcd: { endpoints: [etcd.clientUrl] }, router: 'radixtree_uri_with_parameter', workers: 2, env: { PORTICO_LOG_LEVEL: 'debug' } });
    try {
      const st = await two.status();
      assert.equal(st.workers!.length, 2);
      assert.equal(st.counts.routes, N - 1);
      for (let i = 1; i < N; i += 5000) {
        const { path, host } = request(i);
        const got = await new Promise<number>((resolve, reject) => {
          httpRequest(`${two.url}${path}`, { headers: { host } }, (r) => {
            r.resume();
            resolve(r.statusCode!);
          })
            .on('error', reject)
            .end();
        });
        assert.equal(got, 200, `route ${i}`);
      }
      // the primary serves no traffic: the start waits for it until every worker listens, not after
      const lines = () => two.output().split('\n');
      await waitUntil(() => lines().some((l) => l.includes('heap collected after the first listing')), 5000, 'the collection');
      const listening = lines().findIndex((l) => l.includes('every worker listens: heap collection next'));
      const collected = lines().findIndex((l) => l.includes('heap collected after the first listing'));
      assert.ok(listening >= 0 && listening < collected, two.output().slice(-3000));
      assert.equal(lines().filter((l) => l.includes('heap collected after the first listing')).length, 1);
    } finally {
      await two.cleanup();
    }
  });
});
