/**
 * Issue 6, item 5: a ~10 KB value nested 5,000 levels deep overflowed the stack in the store
 * ("ChangeSet consumer failed"): nothing in /status, the rest of the ChangeSet lost, and a fresh
 * instance never became ready, even after the key was deleted. Every object is now bounded in
 * depth (64) and size (1 MiB) before anything recursive reads it, and is rejected with
 * PORTICO_ERR_LIMIT while the rest of its ChangeSet applies.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

/** The issue's value `{"plugins":{"x":{"a":[[[…]]]}}}` on a route (with a plugin that exists now that plugins are validated: request-id, which takes unknown fields): `arrays` nested arrays, 3 + arrays levels. */
const deepRoute = (arrays: number, upstream?: string) =>
  `{"uri":"/deep",${upstream ? `"upstream":{"nodes":{"${upstream}":1}},` : ''}"plugins":{"request-id":{"a":${'['.repeat(arrays)}${']'.repeat(arrays)}}}}`;
const rejectionOf = async (gw: GatewayProcess, kind: string, id: string) =>
  (await gw.status()).rejected.find((r) => r.kind === kind && r.id === id);

describe('config objects are bounded in depth and size', () => {
  let etcd: EtcdProcess;
  let client: EtcdClient;
  let up: TestUpstream;
  const route = (uri: string) => JSON.stringify({ uri, upstream: { nodes: { [up.address]: 1 } } });

  before(async () => {
    etcd = await startEtcd();
    client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    up = await startUpstream('up');
  });
  after(async () => {
    await client?.close();
    await etcd?.stop();
    await up?.close();
  });

  test('a running gateway rejects a 5,000-level value; the rest of its transaction and later changes apply', async () => {
    const prefix = '/running';
    const gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl], prefix } });
    try {
      // one etcd revision, so one ChangeSet: the deep route must not cost the other one
      await client.txn({
        success: [
          { put: { key: `${prefix}/routes/deep`, value: deepRoute(5000) } },
          { put: { key: `${prefix}/routes/ok`, value: route('/ok') } },
        ],
      });
      await waitUntil(async () => (await get(`${gw.url}/ok`)).status === 200, 5000, '/ok served');
      const rej = await waitUntil(() => rejectionOf(gw, 'routes', 'deep'), 5000, 'the deep route rejected');
      assert.equal(rej.code, 'PORTICO_ERR_LIMIT');
      assert.equal(rej.reason, 'routes/deep: /plugins/request-id/a/0/0/…/0: nested deeper than 64 levels (the depth limit)');
      assert.equal((await gw.status()).rejections_total.PORTICO_ERR_LIMIT, 1);
      await client.put(`${prefix}/routes/later`, route('/later'));
      await waitUntil(async () => (await get(`${gw.url}/later`)).status === 200, 5000, '/later served');
      assert.equal((await get(`${gw.url}/deep`)).status, 404);
      // 64 levels is within the limit (the route object itself is level 1)
      await client.put(`${prefix}/routes/deep`, deepRoute(61, up.address));
      await waitUntil(async () => (await get(`${gw.url}/deep`)).status === 200, 5000, '/deep at 64 levels served');
      assert.equal(await rejectionOf(gw, 'routes', 'deep'), undefined);
    } finally {
      await gw.cleanup();
    }
  });

  test('a fresh instance with the deep key present becomes ready, and deleting the key clears the rejection', async () => {
    const prefix = '/fresh';
    await client.put(`${prefix}/routes/deep`, deepRoute(5000));
    await client.put(`${prefix}/routes/ok`, route('/ok'));
    const gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl], prefix } });
    try {
      const st = await gw.status();
      assert.equal(st.ready, true);
      assert.equal(st.counts.routes, 1);
      assert.equal((await get(`${gw.url}/ok`)).status, 200);
      assert.equal((await rejectionOf(gw, 'routes', 'deep'))?.code, 'PORTICO_ERR_LIMIT');
      await client.delete(`${prefix}/routes/deep`);
      await waitUntil(async () => (await gw.status()).rejected.length === 0, 5000, 'the rejection cleared');
      await client.put(`${prefix}/routes/ok2`, route('/ok2'));
      await waitUntil(async () => (await get(`${gw.url}/ok2`)).status === 200, 5000, '/ok2 served');
    } finally {
      await gw.cleanup();
    }
  });

  test('a value over 1 MiB is rejected before it is parsed', async () => {
    const prefix = '/big';
    const gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl], prefix } });
    try {
      // 1.2 MiB: under etcd's default 1.5 MiB request limit, over Portico's 1 MiB object limit
      const big = JSON.stringify({ uri: '/big', upstream: { nodes: { [up.address]: 1 } }, desc: 'x', plugins: { x: { blob: 'y'.repeat(1.2 * 1024 * 1024) } } });
      await client.put(`${prefix}/routes/big`, big);
      await client.put(`${prefix}/routes/ok`, route('/ok'));
      await waitUntil(async () => (await get(`${gw.url}/ok`)).status === 200, 5000, '/ok served');
      const rej = await waitUntil(() => rejectionOf(gw, 'routes', 'big'), 5000, 'the big route rejected');
      assert.equal(rej.code, 'PORTICO_ERR_LIMIT');
      assert.match(rej.reason, /^routes\/big: \/: 125\d{4} bytes is over the 1 MiB size limit$/);
      assert.equal((await get(`${gw.url}/big`)).status, 404);
    } finally {
      await gw.cleanup();
    }
  });
});
