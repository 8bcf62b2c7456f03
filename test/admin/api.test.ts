/**
 * The Admin API against a real etcd, over HTTP on loopback, as a user drives it with curl: APISIX's
 * doc examples give APISIX-shaped bodies, keys and roles are enforced, nothing invalid or dangling
 * is ever written, writes are transactions (If-Match, concurrent PATCHes, audit records), and a
 * file-sourced gateway refuses writes.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { createAdminServer, type AdminServer } from '../../src/admin/server.ts';
import { adminConfigProblem, EXAMPLE_ADMIN_KEY } from '../../src/admin/auth.ts';
import { ConfigStore } from '../../src/config/store.ts';
import { emptySnapshot } from '../../src/config/snapshot.ts';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { makeTestPki } from '../helpers/certs.ts';
import { decryptKey, APISIX_DEFAULT_KEYRING } from '../../src/server/tls/encryption.ts';

const ADMIN_KEY = 'test-admin-key-0123456789';
const VIEWER_KEY = 'test-viewer-key-0123456789';
const PREFIX = '/apisix';

let etcd: EtcdProcess;
let client: EtcdClient;
let admin: AdminServer;
let base: string;
let served = 0;
const cleanup: (() => Promise<unknown>)[] = [];

before(async () => {
  etcd = await startEtcd();
  cleanup.push(() => etcd.stop());
  client = new EtcdClient({ endpoints: [etcd.clientUrl] });
  cleanup.push(() => client.close());
  admin = createAdminServer({
    keys: [
      { key: ADMIN_KEY, role: 'admin', name: 'ops' },
      { key: VIEWER_KEY, role: 'viewer', name: 'dashboard' },
    ],
    allow: ['127.0.0.0/8', '::1'],
    source: 'etcd',
    etcd: client,
    prefix: PREFIX,
    snapshot: () => emptySnapshot('etcd'),
    servedRevision: () => served,
    maxBodyBytes: 64 * 1024,
  });
  cleanup.push(() => admin.close());
  const port = await admin.listen('127.0.0.1', 0);
  base = `http://127.0.0.1:${port}/apisix/admin`;
});

after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

interface Answer {
  status: number;
  body: any;
  headers: Headers;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  opts: { key?: string | null; headers?: Record<string, string>; raw?: string; url?: string } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers };
  const key = opts.key === undefined ? ADMIN_KEY : opts.key;
  if (key !== null) headers['x-api-key'] = key;
  let payload: string | undefined = opts.raw;
  if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(`${opts.url ?? base}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

const routeBody = (extra: Record<string, unknown> = {}) => ({
  uri: '/index.html',
  upstream: { type: 'roundrobin', nodes: { '127.0.0.1:1980': 1 } },
  ...extra,
});

describe('APISIX doc examples', () => {
  test('PUT a route with an inline upstream: 201 {key, value}, then GET {key, value, createdIndex, modifiedIndex}', async () => {
    const before = Math.floor(Date.now() / 1000);
    const put = await call('PUT', '/routes/1', routeBody({ name: 'index' }));
    assert.equal(put.status, 201, JSON.stringify(put.body));
    assert.equal(put.body.key, '/apisix/routes/1');
    assert.equal(put.body.value.id, '1');
    assert.equal(put.body.value.uri, '/index.html');
    assert.deepEqual(put.body.value.upstream.nodes, { '127.0.0.1:1980': 1 });
    assert.ok(put.body.value.create_time >= before && put.body.value.update_time >= before);

    const got = await call('GET', '/routes/1');
    assert.equal(got.status, 200);
    assert.deepEqual(Object.keys(got.body).sort(), ['createdIndex', 'key', 'modifiedIndex', 'value']);
    assert.equal(got.body.key, '/apisix/routes/1');
    assert.deepEqual(got.body.value, put.body.value);
    assert.equal(got.body.modifiedIndex, put.body.modifiedIndex);
    assert.equal(Number(put.headers.get('x-etcd-index')), put.body.modifiedIndex);

    // what etcd holds is what the gateway will read
    const stored = await client.range('/apisix/routes/1');
    assert.deepEqual(JSON.parse(stored.kvs[0]!.value), put.body.value);

    // replacing: 200, create_time kept
    const again = await call('PUT', '/routes/1', routeBody({ name: 'index2' }));
    assert.equal(again.status, 200);
    assert.equal(again.body.value.create_time, put.body.value.create_time);
    assert.equal(again.body.value.name, 'index2');
  });

  test('every write leaves an audit record under <prefix>/_audit in the same revision', async () => {
    const put = await call('PUT', '/routes/audited', routeBody());
    assert.equal(put.status, 201);
    const audit = await client.range('/apisix/_audit/routes/audited');
    assert.equal(audit.kvs.length, 1);
    const record = JSON.parse(audit.kvs[0]!.value);
    assert.equal(record.op, 'put');
    assert.equal(record.key_name, 'ops');
    assert.equal(record.role, 'admin');
    assert.ok(!Number.isNaN(Date.parse(record.time)));
    assert.equal(audit.kvs[0]!.modRevision, put.body.modifiedIndex);
    const del = await call('DELETE', '/routes/audited');
    assert.deepEqual(del.body, { deleted: '1', key: '/apisix/routes/audited' });
    const after = await client.range('/apisix/_audit/routes/audited');
    assert.equal(JSON.parse(after.kvs[0]!.value).op, 'delete');
  });

  test('upstream by id; PUT on the collection with the id in the body; POST generates an id', async () => {
    const up = await call('PUT', '/upstreams', { id: 'u1', type: 'roundrobin', nodes: { '127.0.0.1:1980': 1 } });
    assert.equal(up.status, 201, JSON.stringify(up.body));
    assert.equal(up.body.key, '/apisix/upstreams/u1');
    const route = await call('PUT', '/routes/by-upstream', { uri: '/by-id', upstream_id: 'u1' });
    assert.equal(route.status, 201, JSON.stringify(route.body));

    const posted = await call('POST', '/routes', { uri: '/posted', upstream_id: 'u1' });
    assert.equal(posted.status, 201, JSON.stringify(posted.body));
    assert.match(posted.body.value.id, /^\d{20}$/);
    assert.equal(posted.body.key, `/apisix/routes/${posted.body.value.id}`);
    const withId = await call('POST', '/routes', { id: 'x', uri: '/posted', upstream_id: 'u1' });
    assert.equal(withId.status, 400);
    assert.match(withId.body.error_msg, /do not need it/);
  });

  test('consumers: PUT on the collection, the username is the id', async () => {
    const put = await call('PUT', '/consumers', { username: 'jack', plugins: { 'key-auth': { key: 'auth-one' } } });
    assert.equal(put.status, 201, JSON.stringify(put.body));
    assert.equal(put.body.key, '/apisix/consumers/jack');
    assert.equal(put.body.value.username, 'jack');
    assert.equal((await call('GET', '/consumers/jack')).body.value.plugins['key-auth'].key, 'auth-one');
    const wrong = await call('PUT', '/consumers/jill', { username: 'jack' });
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error_msg, 'wrong username');
  });

  test('ssls: a PEM private key is stored encrypted with the keyring, as APISIX', async () => {
    const pem = makeTestPki().server('admin', ['admin.test']);
    const put = await call('PUT', '/ssls/1', { cert: pem.cert, key: pem.key, snis: ['admin.test'] });
    assert.equal(put.status, 201, JSON.stringify(put.body));
    assert.ok(!put.body.value.key.startsWith('---'), 'the answer shows the key in the clear');
    const stored = JSON.parse((await client.range('/apisix/ssls/1')).kvs[0]!.value);
    assert.ok(!stored.key.startsWith('---'), 'etcd holds the key in the clear');
    assert.equal(decryptKey(stored.key, APISIX_DEFAULT_KEYRING), pem.key);
    assert.equal(put.headers.get('x-api-version'), 'v3');
  });

  test('PATCH a sub-path replaces that field; PATCH the object is a JSON merge patch', async () => {
    await call('PUT', '/routes/p', routeBody({ methods: ['GET', 'POST'], labels: { team: 'a', env: 'dev' } }));
    const sub = await call('PATCH', '/routes/p/methods', ['GET']);
    assert.equal(sub.status, 200, JSON.stringify(sub.body));
    assert.deepEqual(sub.body.value.methods, ['GET']);
    const nodes = await call('PATCH', '/routes/p/upstream/nodes', { '127.0.0.1:1981': 2 });
    assert.deepEqual(nodes.body.value.upstream.nodes, { '127.0.0.1:1981': 2 });

    const merged = await call('PATCH', '/routes/p', { labels: { env: null, tier: 'gold' }, desc: 'patched' });
    assert.equal(merged.status, 200, JSON.stringify(merged.body));
    assert.deepEqual(merged.body.value.labels, { team: 'a', tier: 'gold' });
    assert.equal(merged.body.value.desc, 'patched');
    assert.deepEqual(merged.body.value.methods, ['GET']);

    const missing = await call('PATCH', '/routes/nope', { desc: 'x' });
    assert.equal(missing.status, 404);
    assert.ok(missing.body.error_msg);
  });

  test('list: {total, list}; paging in createdIndex order; name, label and uri filters', async () => {
    for (let i = 0; i < 12; i++) {
      const r = await call('PUT', `/services/s${i}`, { name: `svc-${i}`, labels: i % 2 ? { odd: 'yes' } : { even: 'yes' }, upstream: { nodes: { '127.0.0.1:1980': 1 } } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    const all = await call('GET', '/services');
    assert.equal(all.status, 200);
    assert.equal(all.body.total, 12);
    assert.equal(all.body.list.length, 12);
    for (const item of all.body.list) assert.deepEqual(Object.keys(item).sort(), ['createdIndex', 'key', 'modifiedIndex', 'value']);

    const page2 = await call('GET', '/services?page=2&page_size=10');
    assert.equal(page2.body.total, 12);
    assert.deepEqual(page2.body.list.map((i: any) => i.value.id), ['s10', 's11']);
    const page1 = await call('GET', '/services?page=1&page_size=10');
    assert.deepEqual(page1.body.list.map((i: any) => i.value.id), ['s0', 's1', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9']);
    assert.equal((await call('GET', '/services?page=1&page_size=5')).status, 400);

    const named = await call('GET', '/services?name=svc-1');
    assert.deepEqual(named.body.list.map((i: any) => i.value.id).sort(), ['s1', 's10', 's11']);
    const labelled = await call('GET', '/services?label=odd');
    assert.equal(labelled.body.total, 6);
    const byUri = await call('GET', '/routes?uri=^/by-');
    assert.deepEqual(byUri.body.list.map((i: any) => i.value.id), ['by-upstream']);
    const empty = await call('GET', '/global_rules');
    assert.deepEqual(empty.body, { total: 0, list: [] });
  });
});

describe('keys, roles and addresses', () => {
  test('no key or a wrong key: 401; ?api_key= works', async () => {
    assert.equal((await call('GET', '/routes', undefined, { key: null })).status, 401);
    const wrong = await call('GET', '/routes', undefined, { key: 'test-admin-key-012345678X' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error_msg, 'failed to check token');
    assert.equal((await call('GET', `/routes?api_key=${ADMIN_KEY}`, undefined, { key: null })).status, 200);
  });

  test('a viewer reads, and gets 403 on a write (nothing written)', async () => {
    assert.equal((await call('GET', '/routes/1', undefined, { key: VIEWER_KEY })).status, 200);
    const put = await call('PUT', '/routes/viewer', routeBody(), { key: VIEWER_KEY });
    assert.equal(put.status, 403);
    assert.match(put.body.error_msg, /viewer/);
    assert.equal((await call('GET', '/routes/viewer')).status, 404);
    assert.equal((await call('DELETE', '/routes/1', undefined, { key: VIEWER_KEY })).status, 403);
  });

  test('a client address outside allow: 403 even with the admin key', async () => {
    const other = createAdminServer({
      keys: [{ key: ADMIN_KEY, role: 'admin' }],
      allow: ['10.0.0.0/8'],
      source: 'etcd',
      etcd: client,
      prefix: PREFIX,
      snapshot: () => emptySnapshot('etcd'),
      servedRevision: () => 0,
    });
    try {
      const port = await other.listen('127.0.0.1', 0);
      const r = await call('GET', '/routes', undefined, { url: `http://127.0.0.1:${port}/apisix/admin` });
      assert.equal(r.status, 403);
      assert.match(r.body.error_msg, /127\.0\.0\.1/);
    } finally {
      await other.close();
    }
  });

  test('adminConfigProblem: short or example keys only on loopback', () => {
    assert.equal(adminConfigProblem({ host: '127.0.0.1', keys: [{ key: 'short', role: 'admin' }] }), undefined);
    assert.equal(adminConfigProblem({ host: '::1', keys: [{ key: EXAMPLE_ADMIN_KEY, role: 'admin' }] }), undefined);
    assert.match(adminConfigProblem({ host: '0.0.0.0', keys: [{ key: 'short', role: 'admin' }] }) ?? '', /shorter than 16/);
    assert.match(adminConfigProblem({ host: '10.1.2.3', keys: [{ key: EXAMPLE_ADMIN_KEY, role: 'admin' }] }) ?? '', /example key/);
    assert.match(adminConfigProblem({ host: '::', keys: [{ key: ADMIN_KEY, role: 'viewer' }, { key: 'tiny', role: 'viewer' }] }) ?? '', /keys\[1\]/);
    assert.equal(adminConfigProblem({ host: '0.0.0.0', keys: [{ key: ADMIN_KEY, role: 'admin' }] }), undefined);
    assert.match(adminConfigProblem({ host: '127.0.0.1', keys: [] }) ?? '', /at least one key/);
  });
});

describe('nothing invalid is written', () => {
  test('schema errors: 400 naming the object, the field and the rule', async () => {
    const bad = await call('PUT', '/routes/bad', routeBody({ uri: 5 }));
    assert.equal(bad.status, 400);
    assert.match(bad.body.error_msg, /^routes\/bad: \/uri: /);
    const unknown = await call('PUT', '/routes/bad', routeBody({ colour: 'red' }));
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error_msg, /unknown field 'colour'/);
    const noNodes = await call('PUT', '/upstreams/bad', { type: 'roundrobin' });
    assert.equal(noNodes.status, 400);
    assert.match(noNodes.body.error_msg, /upstreams\/bad: .*nodes/);
    const badPatch = await call('PATCH', '/routes/1/upstream/type', 'no-such-balancer');
    assert.equal(badPatch.status, 400);
    assert.match(badPatch.body.error_msg, /\/upstream\/type/);
    assert.equal((await call('GET', '/routes/bad')).status, 404);
    assert.equal((await call('GET', '/upstreams/bad')).status, 404);
  });

  test('bad JSON, wrong content type, deep JSON, bad id: 4xx with the reason', async () => {
    const json = await call('PUT', '/routes/bad', undefined, { raw: '{"uri": "/x",', headers: { 'content-type': 'application/json' } });
    assert.equal(json.status, 400);
    assert.match(json.body.error_msg, /invalid request body/);
    const type = await call('PUT', '/routes/bad', undefined, { raw: JSON.stringify(routeBody()), headers: { 'content-type': 'text/plain' } });
    assert.equal(type.status, 415);
    assert.match(type.body.error_msg, /content type/);
    // curl -d's default label, as every APISIX doc example sends it: accepted
    const curl = await call('PUT', '/routes/curl', undefined, { raw: JSON.stringify(routeBody()), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    assert.equal(curl.status, 201);
    const deep = await call('PUT', '/routes/bad', undefined, { raw: `{"uri":"/x","labels":${'['.repeat(5000)}${']'.repeat(5000)}}`, headers: { 'content-type': 'application/json' } });
    assert.equal(deep.status, 400);
    assert.match(deep.body.error_msg, /nested deeper/);
    const id = await call('PUT', '/routes/a%2Fb', routeBody());
    assert.equal(id.status, 400);
    const mismatch = await call('PUT', '/routes/bad', routeBody({ id: 'other' }));
    assert.equal(mismatch.status, 400);
    assert.match(mismatch.body.error_msg, /wrong route id/);
    assert.equal((await call('GET', '/routes/bad')).status, 404);
  });

  test('a reference to an object that does not exist: 400, not written', async () => {
    const r = await call('PUT', '/routes/dangling', { uri: '/d', upstream_id: 'missing' });
    assert.equal(r.status, 400);
    assert.equal(r.body.error_msg, "routes/dangling: /upstream_id: upstream 'missing' not found");
    const s = await call('PUT', '/routes/dangling', { uri: '/d', service_id: 'nope' });
    assert.match(s.body.error_msg, /service 'nope' not found/);
    const p = await call('PUT', '/routes/dangling', { uri: '/d', upstream_id: 'u1', plugin_config_id: 'pc' });
    assert.match(p.body.error_msg, /plugin_config 'pc' not found/);
    assert.equal((await call('GET', '/routes/dangling')).status, 404);
  });

  test('a body over maxBodyBytes: 413, with a Content-Length and chunked', async () => {
    const r = await call('PUT', '/routes/big', routeBody({ desc: 'x'.repeat(100 * 1024) }));
    assert.equal(r.status, 413);
    // chunked: no length to refuse up front, the limit is counted while reading
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${base}/routes/big`, { method: 'PUT', headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' }, timeout: 10_000 }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.write('{"uri":"/big","desc":"');
      for (let i = 0; i < 10; i++) req.write('y'.repeat(10 * 1024));
      req.end('"}');
    });
    assert.equal(status, 413);
    assert.equal((await call('GET', '/routes/big')).status, 404);
  });
});

describe('transactions', () => {
  test('If-Match: a stale modifiedIndex gets 409, the current one succeeds', async () => {
    const put = await call('PUT', '/routes/im', routeBody());
    const rev = put.body.modifiedIndex as number;
    await call('PATCH', '/routes/im', { desc: 'changed by someone else' });
    const stale = await call('PUT', '/routes/im', routeBody({ desc: 'mine' }), { headers: { 'if-match': String(rev) } });
    assert.equal(stale.status, 409);
    assert.match(stale.body.error_msg, /modified/);
    const stalePatch = await call('PATCH', '/routes/im', { desc: 'mine' }, { headers: { 'if-match': String(rev) } });
    assert.equal(stalePatch.status, 409);
    const staleDelete = await call('DELETE', '/routes/im', undefined, { headers: { 'if-match': String(rev) } });
    assert.equal(staleDelete.status, 409);
    const current = (await call('GET', '/routes/im')).body.modifiedIndex;
    const ok = await call('PUT', '/routes/im', routeBody({ desc: 'mine' }), { headers: { 'if-match': String(current) } });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.value.desc, 'mine');
    assert.equal((await call('PUT', '/routes/im', routeBody(), { headers: { 'if-match': 'abc' } })).status, 400);
  });

  test('concurrent PATCHes of different fields are all applied', async () => {
    await call('PUT', '/routes/cc', routeBody({ labels: { base: '1' } }));
    const patches = ['a', 'b', 'c', 'd', 'e'].map((k) => call('PATCH', '/routes/cc', { labels: { [k]: k } }));
    const results = await Promise.all([...patches, call('PATCH', '/routes/cc', { desc: 'also' })]);
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    const final = await call('GET', '/routes/cc');
    assert.deepEqual(final.body.value.labels, { base: '1', a: 'a', b: 'b', c: 'c', d: 'd', e: 'e' });
    assert.equal(final.body.value.desc, 'also');
  });

  test('deleting a referenced upstream: 400 naming the referrers; ?force=true deletes', async () => {
    await call('PUT', '/upstreams/shared', { nodes: { '127.0.0.1:1980': 1 } });
    await call('PUT', '/routes/r-shared', { uri: '/shared', upstream_id: 'shared' });
    await call('PUT', '/services/s-shared', { upstream_id: 'shared' });
    const refused = await call('DELETE', '/upstreams/shared');
    assert.equal(refused.status, 400);
    assert.match(refused.body.error_msg, /route \[r-shared\]/);
    assert.match(refused.body.error_msg, /service \[s-shared\]/);
    assert.equal((await call('GET', '/upstreams/shared')).status, 200);
    const forced = await call('DELETE', '/upstreams/shared?force=true');
    assert.equal(forced.status, 200);
    assert.deepEqual(forced.body, { deleted: '1', key: '/apisix/upstreams/shared' });
    assert.equal((await call('GET', '/upstreams/shared')).status, 404);
    assert.equal((await call('DELETE', '/upstreams/shared')).status, 404);
  });

  test('a route written while its upstream is deleted: never both (no dangling reference)', async () => {
    let deleted = 0;
    let written = 0;
    for (let i = 0; i < 30; i++) {
      assert.equal((await call('PUT', `/upstreams/race${i}`, { nodes: { '127.0.0.1:1980': 1 } })).status, 201);
      const [route, del] = await Promise.all([
        // a varying head start for the delete, so both orders and the close calls in between occur
        new Promise((r) => setTimeout(r, i % 8)).then(() => call('PUT', `/routes/race${i}`, { uri: `/race${i}`, upstream_id: `race${i}` })),
        call('DELETE', `/upstreams/race${i}`),
      ]);
      const routeThere = (await call('GET', `/routes/race${i}`)).status === 200;
      const upstreamThere = (await call('GET', `/upstreams/race${i}`)).status === 200;
      assert.ok(!(routeThere && !upstreamThere), `round ${i}: route ${route.status} ${JSON.stringify(route.body)}, delete ${del.status} ${JSON.stringify(del.body)}`);
      if (del.status === 200) deleted++;
      if (route.status === 201) written++;
      assert.ok([200, 400].includes(del.status) && [201, 400].includes(route.status), `round ${i}: ${route.status} ${del.status}`);
    }
    // both orders happen; an unreferenced upstream is deleted without force
    assert.ok(deleted > 0 && written > 0, `deleted ${deleted}, written ${written}`);
  });

  test('?wait=served answers once this instance serves the write', async () => {
    const pending = call('PUT', '/routes/waited?wait=served', routeBody());
    const started = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    const { header } = await client.range('/apisix/routes/waited');
    served = header.revision;
    const r = await pending;
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('x-portico-served'), 'true');
    assert.ok(Date.now() - started >= 250, 'answered before the revision was served');
  });
});

describe('config.source: file', () => {
  test('reads come from the snapshot; writes are 405', async () => {
    const store = new ConfigStore('file');
    store.apply({
      source: 'file',
      revision: 3,
      full: true,
      changes: [{ kind: 'routes', id: 'f1', modRevision: 3, value: { id: 'f1', uri: '/file', upstream: { nodes: { '127.0.0.1:1980': 1 } } } }],
    });
    const fileAdmin = createAdminServer({
      keys: [{ key: ADMIN_KEY, role: 'admin' }],
      allow: [],
      source: 'file',
      prefix: PREFIX,
      snapshot: () => store.snapshot,
      servedRevision: () => store.snapshot.revision,
    });
    try {
      const url = `http://127.0.0.1:${await fileAdmin.listen('127.0.0.1', 0)}/apisix/admin`;
      const list = await call('GET', '/routes', undefined, { url });
      assert.equal(list.body.total, 1);
      assert.equal(list.body.list[0].key, '/apisix/routes/f1');
      assert.equal((await call('GET', '/routes/f1', undefined, { url })).body.value.uri, '/file');
      for (const [method, path] of [['PUT', '/routes/f1'], ['POST', '/routes'], ['PATCH', '/routes/f1'], ['DELETE', '/routes/f1']] as const) {
        const w = await call(method, path, method === 'DELETE' ? undefined : routeBody(), { url });
        assert.equal(w.status, 405, `${method} ${path}`);
        assert.equal(w.body.error_msg, 'config.source is file: the routes file is the source of truth; edit it instead');
      }
    } finally {
      await fileAdmin.close();
    }
  });
});
