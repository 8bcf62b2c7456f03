/**
 * The Admin API in a real gateway process (etcd source): APISIX's getting-started calls, unchanged,
 * make routes the gateway then serves; `?wait=served` returns once this instance serves the write;
 * roles; a file-sourced gateway refuses writes; an unsafe admin config refuses to start.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { freePort, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { get } from '../helpers/http.ts';

const ADMIN_KEY = 'admin-key-for-the-e2e-test';
const VIEWER_KEY = 'viewer-key-for-the-e2e-test';

async function call(port: number, method: string, p: string, body?: unknown, key = ADMIN_KEY): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, {
    method,
    headers: { 'X-API-KEY': key, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

describe('Admin API in the gateway (etcd source)', () => {
  let etcd: EtcdProcess;
  let upstream: TestUpstream;
  let gw: GatewayProcess;
  let adminPort: number;

  before(async () => {
    etcd = await startEtcd();
    upstream = await startUpstream('u');
    adminPort = await freePort();
    gw = await startGateway({
      etcd: { endpoints: [etcd.clientUrl] },
      workers: 2,
      extra: {
        admin: {
          listen: `127.0.0.1:${adminPort}`,
          keys: [
            { key: ADMIN_KEY, role: 'admin', name: 'ops' },
            { key: VIEWER_KEY, role: 'viewer' },
          ],
        },
      },
    });
  });
  after(async () => {
    await gw?.stop();
    await gw?.cleanup();
    await etcd?.stop();
    await upstream?.close();
  });

  test("APISIX's getting-started route (inline upstream): written, then served by every worker on return with ?wait=served", async () => {
    const put = await call(adminPort, 'PUT', '/apisix/admin/routes/1?wait=served', {
      methods: ['GET'],
      host: 'example.com',
      uri: '/anything/*',
      upstream: { type: 'roundrobin', nodes: { [upstream.address]: 1 } },
    });
    assert.equal(put.status, 201, JSON.stringify(put.json));
    assert.equal(put.json.key, '/portico/routes/1');
    // served at once: no polling (two workers, new connections spread over both)
    for (let i = 0; i < 6; i++) {
      const res = await get(`${gw.url}/anything/x${i}`, { host: 'example.com' });
      assert.equal(res.status, 200, `request ${i}`);
    }
  });

  test('upstream by id, PATCH of a sub-path, list paging, GET one', async () => {
    assert.equal((await call(adminPort, 'PUT', '/apisix/admin/upstreams/1', { type: 'roundrobin', nodes: { [upstream.address]: 1 } })).status, 201);
    assert.equal((await call(adminPort, 'PUT', '/apisix/admin/routes/2?wait=served', { uri: '/get', upstream_id: '1' })).status, 201);
    const patched = await call(adminPort, 'PATCH', '/apisix/admin/routes/2/methods?wait=served', ['POST']);
    assert.equal(patched.status, 200, JSON.stringify(patched.json));
    const get = await fetch(`${gw.url}/get`);
    assert.equal(get.status, 404); // only POST now
    await get.text();
    const post = await fetch(`${gw.url}/get`, { method: 'POST' });
    assert.equal(post.status, 200);
    await post.text();
    const one = await call(adminPort, 'GET', '/apisix/admin/routes/2', undefined, VIEWER_KEY);
    assert.equal(one.status, 200);
    assert.deepEqual((one.json.value as { methods: string[] }).methods, ['POST']);
    for (let i = 0; i < 12; i++) await call(adminPort, 'PUT', `/apisix/admin/routes/p${i}`, { uri: `/p${i}`, upstream_id: '1' });
    const page = await call(adminPort, 'GET', '/apisix/admin/routes?page=2&page_size=10', undefined, VIEWER_KEY);
    assert.equal(page.status, 200);
    assert.equal(page.json.total, 14);
    assert.equal((page.json.list as unknown[]).length, 4);
  });

  test('history, config at a revision, diff, and rollback on two instances', async () => {
    const second = await startGateway({ etcd: { endpoints: [etcd.clientUrl] } });
    try {
      const v1 = await call(adminPort, 'PUT', '/apisix/admin/routes/hist?wait=served', { uri: '/v1', upstream_id: '1' });
      assert.equal(v1.status, 201);
      const r1 = Number(v1.json.modifiedIndex);
      const v2 = await call(adminPort, 'PUT', '/apisix/admin/routes/hist?wait=served', { uri: '/v2', upstream_id: '1' });
      const r2 = Number(v2.json.modifiedIndex);
      const h = await call(adminPort, 'GET', '/portico/admin/history?kind=routes&id=hist', undefined, VIEWER_KEY);
      assert.equal(h.status, 200);
      const entries = h.json.entries as Array<{ revision: number; op: string; by?: { key_name: string } }>;
      assert.deepEqual(entries.map((e) => e.revision), [r2, r1]);
      assert.equal(entries[0]!.by?.key_name, 'ops');
      const at = await call(adminPort, 'GET', `/portico/admin/config?revision=${r1}`, undefined, VIEWER_KEY);
      const old = (at.json.objects as Array<{ kind: string; id: string; value: { uri: string } }>).find((o) => o.kind === 'routes' && o.id === 'hist');
      assert.equal(old?.value.uri, '/v1');
      const d = await call(adminPort, 'GET', `/portico/admin/diff?from=${r1}&to=${r2}`, undefined, VIEWER_KEY);
      assert.match(JSON.stringify(d.json), /"\/v2"/);
      assert.equal((await call(adminPort, 'POST', '/portico/admin/rollback', { revision: r1 }, VIEWER_KEY)).status, 403);
      const rb = await call(adminPort, 'POST', '/portico/admin/rollback', { revision: r1 });
      assert.equal(rb.status, 200, JSON.stringify(rb.json));
      // both instances serve the old version again
      for (const g of [gw, second]) {
        const deadline = Date.now() + 5000;
        for (;;) {
          if ((await get(`${g.url}/v1`)).status === 200 && (await get(`${g.url}/v2`)).status === 404) break;
          assert.ok(Date.now() < deadline, 'the rolled-back route served');
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      const doc = await call(adminPort, 'GET', '/apisix/admin/openapi.json', undefined, VIEWER_KEY);
      assert.equal(doc.status, 200);
      assert.equal(doc.json.openapi, '3.1.0');
    } finally {
      await second.stop();
      await second.cleanup();
    }
  });

  test('a viewer cannot write; a wrong key is 401; an invalid body is 400 naming the field; nothing written', async () => {
    const viewer = await call(adminPort, 'PUT', '/apisix/admin/routes/v', { uri: '/v', upstream_id: '1' }, VIEWER_KEY);
    assert.equal(viewer.status, 403);
    assert.equal((await call(adminPort, 'GET', '/apisix/admin/routes', undefined, 'wrong')).status, 401);
    const bad = await call(adminPort, 'PUT', '/apisix/admin/routes/bad', { uri: 7, upstream_id: '1' });
    assert.equal(bad.status, 400);
    assert.match(String(bad.json.error_msg), /routes\/bad: \/uri: /);
    const dangling = await call(adminPort, 'PUT', '/apisix/admin/routes/dangling', { uri: '/d', upstream_id: 'nope' });
    assert.equal(dangling.status, 400);
    assert.equal((await call(adminPort, 'GET', '/apisix/admin/routes/bad')).status, 404);
    assert.equal((await call(adminPort, 'GET', '/apisix/admin/routes/dangling')).status, 404);
  });
});

describe('Admin API with the file source; unsafe admin config', () => {
  test('reads are served, writes answer 405 naming the file as the source of truth', async () => {
    const adminPort = await freePort();
    const gw = await startGateway({
      routes: { routes: [{ id: 'r', uri: '/r', upstream: { nodes: { '127.0.0.1:1980': 1 } } }] },
      extra: { admin: { listen: `127.0.0.1:${adminPort}`, keys: [{ key: ADMIN_KEY, role: 'admin' }] } },
    });
    try {
      const list = await call(adminPort, 'GET', '/apisix/admin/routes');
      assert.equal(list.status, 200);
      assert.equal(list.json.total, 1);
      const put = await call(adminPort, 'PUT', '/apisix/admin/routes/x', { uri: '/x', upstream: { nodes: { '127.0.0.1:1980': 1 } } });
      assert.equal(put.status, 405);
      assert.match(String(put.json.error_msg), /source of truth/);
    } finally {
      await gw.stop();
      await gw.cleanup();
    }
  });

  test('a non-loopback admin listener with a short key (or the docs example key) refuses to start', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-admin-'));
    for (const key of ['short', 'edd1c9f034335f136f87ad84b625c8f1']) {
      const config = path.join(dir, 'portico.yaml');
      writeFileSync(config, `admin: { listen: "0.0.0.0:0", keys: [{ key: "${key}", role: admin }] }\nproxy: { listen: ["127.0.0.1:0"] }\nstatus: { listen: "127.0.0.1:0" }\n`);
      const r = spawnSync(process.execPath, [path.resolve('bin/portico.js'), 'start', '--config', config], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 1, r.stdout + r.stderr);
      assert.match(r.stderr + r.stdout, /admin: keys\[0\]\.key/);
    }
  });
});

describe('portico apply through a gateway: 5,000 routes in one revision', () => {
  test('apply --prune of a 5,000-route file lands in one etcd revision and the gateway serves every route; export -> apply is a no-op', async () => {
    const etcd = await startEtcd({ args: ['--max-txn-ops=20000', '--max-request-bytes=33554432'] });
    const upstream = await startUpstream('u');
    const adminPort = await freePort();
    const gw = await startGateway({
      // a 5,000-put transaction took over 2 s (the helper's etcd timeout) on a loaded 2-core machine
      etcd: { endpoints: [etcd.clientUrl], timeout: 10 },
      extra: { admin: { listen: `127.0.0.1:${adminPort}`, keys: [{ key: ADMIN_KEY, role: 'admin', name: 'ci' }], max_txn_ops: 20000 } },
    });
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-apply-'));
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [path.resolve('bin/portico.js'), ...args, '--admin', `http://127.0.0.1:${adminPort}`, '--key', ADMIN_KEY], { encoding: 'utf8', timeout: 120_000 });
    try {
      // something to prune
      assert.equal((await call(adminPort, 'PUT', '/apisix/admin/routes/old', { uri: '/old', upstream: { nodes: { [upstream.address]: 1 } } })).status, 201);
      const lines = ['upstreams:', `  - { id: u, nodes: { "${upstream.address}": 1 } }`, 'routes:'];
      for (let i = 0; i < 5000; i++) lines.push(`  - { id: r${i}, uri: /r${i}, upstream_id: u }`);
      const file = path.join(dir, 'routes.yaml');
      writeFileSync(file, `${lines.join('\n')}\n`);
      const dry = cli('apply', file, '--prune', '--dry-run', '--json');
      assert.equal(dry.status, 0, dry.stderr + dry.stdout);
      const planned = JSON.parse(dry.stdout) as { added: unknown[]; removed: unknown[] };
      assert.equal(planned.added.length, 5001);
      assert.equal(planned.removed.length, 1);
      const applied = cli('apply', file, '--prune', '--json');
      assert.equal(applied.status, 0, applied.stderr + applied.stdout);
      const result = JSON.parse(applied.stdout) as { base: number; revision: number; added: unknown[]; removed: unknown[] };
      // one revision: every key it wrote has the txn's mod_revision (the gateway's own fleet record,
      // outside the config range, may be written between the plan and the txn: revision > base)
      assert.ok(result.revision > result.base);
      const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
      try {
        const { kvs } = await client.rangePrefix('/portico/routes/');
        assert.equal(kvs.length, 5000, 'the pruned route is gone');
        assert.deepEqual([...new Set(kvs.map((kv) => kv.modRevision))], [result.revision], 'one revision');
        assert.equal((await client.rangePrefix('/portico/upstreams/')).kvs[0]!.modRevision, result.revision);
      } finally {
        await client.close();
      }
      assert.deepEqual([result.added.length, result.removed.length], [planned.added.length, planned.removed.length]);
      // every route served (sampled across the table), the pruned one gone
      const deadline = Date.now() + 10_000;
      while ((await get(`${gw.url}/r4999`)).status !== 200) {
        assert.ok(Date.now() < deadline, 'the last route served');
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const i of [0, 1, 1234, 2500, 4998, 4999]) assert.equal((await get(`${gw.url}/r${i}`)).status, 200, `/r${i}`);
      assert.equal((await get(`${gw.url}/old`)).status, 404);
      // export, then apply it back: nothing to do
      const exported = cli('export', '-o', path.join(dir, 'export.yaml'));
      assert.equal(exported.status, 0, exported.stderr);
      const again = cli('apply', path.join(dir, 'export.yaml'), '--prune', '--json');
      assert.equal(again.status, 0, again.stderr);
      const noop = JSON.parse(again.stdout) as { base: number; revision: number; added: unknown[]; changed: unknown[]; removed: unknown[] };
      assert.equal(noop.revision, noop.base);
      assert.deepEqual([noop.added.length, noop.changed.length, noop.removed.length], [0, 0, 0]);
    } finally {
      await gw.stop();
      await gw.cleanup();
      await etcd.stop();
      await upstream.close();
    }
  });
});
