/**
 * A first listing cut half way (ConfigStore.stage): the store took its first page in while it was
 * listed; the listing that follows, with objects deleted and fixed meanwhile, is what gets served —
 * nothing of the first attempt.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startTcpProxy, type TcpProxy } from '../helpers/etcd.ts';
import { etcdForSuite } from '../helpers/etcd-suite.ts';
import { startGateway } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('a first listing cut half way, then listed again', () => {
  const suite = etcdForSuite();
  let up: TestUpstream;
  let link: TcpProxy;
  before(async () => {
    link = await startTcpProxy(suite.etcd.clientPort);
    up = await startUpstream('up');
    await suite.client.put('/portico/upstreams/u', JSON.stringify({ nodes: { [up.address]: 1 } }));
    // keys sort as etcd lists them: 'bad' and 'gone' are on the first page (1,000 keys), the
    // second page holds the other ~1,000 routes
    await suite.client.put('/portico/routes/bad', JSON.stringify({ uri: '/bad', upstream_id: 'u', methods: ['FETCH'] }));
    await suite.client.put('/portico/routes/gone', JSON.stringify({ uri: '/gone', upstream_id: 'u' }));
    for (let i = 0; i < 2000; i += 100) {
      const ops = [];
      for (let j = i; j < i + 100; j++) ops.push({ put: { key: `/portico/routes/r${j}`, value: JSON.stringify({ uri: `/r/${j}`, upstream_id: 'u' }) } });
      await suite.client.txn({ success: ops });
    }
  });
  after(async () => {
    await link?.close();
    await up?.close();
  });

  test('what the second listing lacks or fixed is served as it lists it, and no rejection of the first remains', async () => {
    // ~140 KB at 30 KB/s: the second page still on its way when the first one was taken in
    link.setRate(30_000);
    const pages = (out: string) => out.split('etcd listing: a page taken').length - 1;
    let cut = false;
    const gw = await startGateway({
      etcd: { endpoints: [link.url], timeout: 30 },
      noWaitReady: true,
      env: { PORTICO_LOG_LEVEL: 'debug' },
      onOutput: (out) => {
        if (!cut && pages(out) === 1) {
          cut = true;
          link.setMode('refuse');
        }
      },
    });
    try {
      await waitUntil(() => cut, 20_000, 'the first page taken in');
      // meanwhile in etcd: one route of that page deleted, the invalid one fixed
      await suite.client.delete('/portico/routes/gone');
      await suite.client.put('/portico/routes/bad', JSON.stringify({ uri: '/bad', upstream_id: 'u', methods: ['GET'] }));
      await waitUntil(() => /etcd disconnected/.test(gw.output()), 10_000, 'the listing failed');
      assert.equal((await gw.status()).ready, false, 'not ready on half a listing');
      link.setRate(0);
      link.setMode('pass');
      await waitUntil(async () => (await gw.status()).ready, 20_000, 'ready after the second listing');

      assert.equal(pages(gw.output()) >= 3, true, 'listed twice');
      const st = await gw.status();
      assert.deepEqual(st.rejected, []);
      assert.deepEqual(st.rejections_total, {}, 'the first attempt rejected nothing that counts');
      assert.equal(st.counts.routes, 2001);
      assert.equal((await get(`${gw.url}/gone`)).status, 404, 'deleted while the first listing was cut');
      assert.equal((await get(`${gw.url}/bad`)).status, 200, 'fixed meanwhile');
      for (const i of [0, 999, 1000, 1999]) assert.equal((await get(`${gw.url}/r/${i}`)).status, 200, `/r/${i}`);
    } finally {
      await gw.cleanup();
    }
  });
});
