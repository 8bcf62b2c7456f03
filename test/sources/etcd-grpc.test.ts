/**
 * The listing over etcd's gRPC API (src/sources/etcd/grpc.ts) against a real etcd: the same keys,
 * values and revisions as the JSON gateway gives, etcd's errors with their gRPC status, failover
 * past a dead or silent member, and the JSON gateway when an endpoint does not answer gRPC (an
 * HTTP/1.1 proxy in front of etcd).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test, mock } from 'node:test';
import { EtcdClient, EtcdResponseError, type KeyValue } from '../../src/sources/etcd/client.ts';
import { GrpcKv, decodeRangeResponse, encodeRangeRequest } from '../../src/sources/etcd/grpc.ts';
import { etcdctl, freePort, startTcpProxy } from '../helpers/etcd.ts';
import { etcdForSuite } from '../helpers/etcd-suite.ts';

const suite = etcdForSuite();

/** every page of a listing of `prefix` through `client` */
async function list(client: EtcdClient, prefix: string, pageSize?: number): Promise<{ pages: KeyValue[][]; revision: number }> {
  const pages: KeyValue[][] = [];
  const { revision } = await client.rangePages(prefix, { pageSize }, (kvs) => void pages.push(kvs));
  return { pages, revision };
}

let grpcCalls: ReturnType<typeof mock.method>;
before(() => {
  grpcCalls = mock.method(GrpcKv.prototype, 'range');
});
after(() => mock.restoreAll());

test('a listing over gRPC gives what the JSON gateway gives: keys, values, revisions, versions, leases', async () => {
  const { client } = suite;
  const lease = await client.grantLease(60);
  await client.put('/same/a', '{"uri":"/a"}');
  await client.put('/same/a', '{"uri":"/a2"}'); // version 2
  await client.put('/same/b', ''); // an empty value
  await client.put('/same/c/ü', '{"desc":"héllo ✓ \\n"}'); // UTF-8 in key and value
  await client.put('/same/d', 'x'.repeat(300_000)); // a value larger than a frame
  await client.put('/same/e', '{}', { lease: lease.id });
  await client.put('/samf/not-in', '{}'); // right after the prefix's range
  const before = grpcCalls.mock.callCount();
  const { pages, revision } = await list(client, '/same/', 2);
  assert.equal(grpcCalls.mock.callCount() - before, 3, 'three pages of 2, 2 and 1 keys, each a gRPC call');
  const json = await client.range('/same/', { prefix: true });
  assert.deepEqual(pages.flat(), json.kvs);
  assert.deepEqual(pages.map((p) => p.length), [2, 2, 1]);
  assert.equal(revision, json.header.revision);
  assert.equal(pages.flat().find((kv) => kv.key === '/same/e')!.lease, lease.id);
  assert.equal(pages.flat().find((kv) => kv.key === '/same/a')!.version, 2);
  await client.revokeLease(lease.id);
});

test('keys that are not UTF-8: each page starts after the last key as etcd holds it, over gRPC and over JSON', async () => {
  const { client } = suite;
  // bytes that decode to U+FFFD: re-encoded from their text they would sort elsewhere
  const tails = [[0x61], [0xfe], [0xff, 0x01], [0xff, 0x02], [0xff, 0xff, 0x03]];
  for (const [i, tail] of tails.entries()) {
    const key = Buffer.concat([Buffer.from('/bytes/'), Buffer.from(tail)]).toString('base64');
    await client.call('/v3/kv/put', { key, value: Buffer.from(`v${i}`).toString('base64') }, { idempotent: true });
  }
  await withHttp1Proxy(true, async (proxy) => {
    for (const c of [client, new EtcdClient({ endpoints: [proxy.url] })]) {
      const { pages } = await list(c, '/bytes/', 1);
      assert.deepEqual(pages.flat().map((kv) => kv.value), ['v0', 'v1', 'v2', 'v3', 'v4'], 'every key once, in order');
    }
    assert.equal(proxy.paths.length, 5, 'the second client over JSON');
  });
});

test("etcd's errors keep their gRPC status and message: a compacted revision", async () => {
  const { client } = suite;
  for (let i = 0; i < 3; i++) await client.put(`/compacted/k${i}`, String(i));
  const pages: number[] = [];
  const done = client.rangePages('/compacted/', { pageSize: 1 }, async (kvs) => {
    pages.push(kvs.length);
    // the next pages are read at the first page's revision: compact past it meanwhile
    if (pages.length === 1) {
      const header = await client.put('/compacted/later', 'x');
      await etcdctl(suite.etcd.endpoint, 'compact', String(header.revision));
    }
  });
  await assert.rejects(done, (err: unknown) => {
    assert.ok(err instanceof EtcdResponseError, String(err));
    assert.equal(err.grpcCode, 11); // OUT_OF_RANGE
    assert.match(err.message, /required revision has been compacted/);
    assert.equal(err.code, 'PORTICO_ERR_ETCD_UNAVAILABLE');
    return true;
  });
});

test('failover: a refused endpoint and a silent one are passed over, the listing completes on the next', async () => {
  const refused = `http://127.0.0.1:${await freePort()}`;
  const proxy = await startTcpProxy(suite.etcd.clientPort);
  try {
    proxy.setMode('blackhole');
    const client = new EtcdClient({ endpoints: [refused, `http://127.0.0.1:${proxy.port}`, suite.etcd.clientUrl], timeout: 0.5 });
    await client.put('/failover/k', 'v');
    const started = Date.now();
    const { pages } = await list(client, '/failover/');
    assert.deepEqual(pages.flat().map((kv) => kv.value), ['v']);
    assert.equal(client.endpoint, suite.etcd.clientUrl);
    assert.ok(Date.now() - started < 3000, 'the silent member cost one timeout');
    await client.close();
  } finally {
    await proxy.close();
  }
});

/**
 * `use` with a plain HTTP/1.1 reverse proxy to etcd's JSON gateway, counting the HTTP/2 prefaces it refused
 * (`answer`: as node, nginx and HAProxy do, with a 400; else by dropping the connection).
 */
async function withHttp1Proxy(answer: boolean, use: (proxy: { url: string; refused: () => number; paths: string[] }) => Promise<void>): Promise<void> {
  let refused = 0;
  const paths: string[] = [];
  const proxy = http.createServer((req, res) => {
    paths.push(req.url ?? '');
    const up = http.request({ host: '127.0.0.1', port: suite.etcd.clientPort, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  // (a connection's unparsable bytes may raise more than one clientError)
  const seen = new WeakSet<object>();
  proxy.on('clientError', (_err, socket) => {
    if (seen.has(socket)) return;
    seen.add(socket);
    refused++;
    if (answer) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  try {
    await use({ url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, refused: () => refused, paths });
  } finally {
    proxy.closeAllConnections();
    await new Promise((resolve) => proxy.close(resolve));
  }
}

test('an endpoint that answers gRPC in HTTP/1.1 (a proxy): the listing goes over the JSON gateway from then on', async () => {
  const { client } = suite;
  for (let i = 0; i < 5; i++) await client.put(`/http1/k${i}`, `{"i":${i}}`);
  await withHttp1Proxy(true, async (proxy) => {
    const behind = new EtcdClient({ endpoints: [proxy.url] });
    const first = await list(behind, '/http1/', 2);
    assert.deepEqual(first.pages.map((p) => p.length), [2, 2, 1]);
    assert.deepEqual(first.pages.flat(), (await client.range('/http1/', { prefix: true })).kvs);
    const second = await list(behind, '/http1/');
    assert.equal(second.pages.flat().length, 5);
    assert.equal(proxy.refused(), 1, 'gRPC tried once, on the first page');
    assert.deepEqual(proxy.paths, Array(4).fill('/v3/kv/range'), 'every page of both listings over JSON');
    await behind.close();
  });
});

test('an endpoint that drops the gRPC call without an answer: each page over JSON, gRPC tried again for the next', async () => {
  const { client } = suite;
  for (let i = 0; i < 5; i++) await client.put(`/dropped/k${i}`, `{"i":${i}}`);
  await withHttp1Proxy(false, async (proxy) => {
    const behind = new EtcdClient({ endpoints: [proxy.url] });
    const { pages } = await list(behind, '/dropped/', 2);
    assert.deepEqual(pages.flat(), (await client.range('/dropped/', { prefix: true })).kvs);
    // (a member that went down looks the same: it must not lose gRPC for the process's life)
    assert.equal(proxy.refused(), 3, 'one try per page');
    assert.deepEqual(proxy.paths, Array(3).fill('/v3/kv/range'));
    await behind.close();
  });
});

test('protobuf: a request encodes its fields; a response skips fields it does not know', () => {
  const req = encodeRangeRequest({ key: Buffer.from('/a'), rangeEnd: Buffer.from('/b'), limit: 300, revision: 2 ** 40 });
  // key = 1 (bytes), range_end = 2 (bytes), limit = 3 (varint 300 = ac 02), revision = 4 (2^40 in 6 bytes)
  assert.deepEqual([...req], [0x0a, 2, 0x2f, 0x61, 0x12, 2, 0x2f, 0x62, 0x18, 0xac, 0x02, 0x20, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
  // header { revision: 7 }, an unknown fixed64 field 9, kvs { key "k", value "v", unknown field 7 = 1 }, more, count
  const res = Buffer.from([0x0a, 2, 0x18, 7, 0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x12, 8, 0x0a, 1, 0x6b, 0x2a, 1, 0x76, 0x38, 1, 0x18, 1, 0x20, 1]);
  const decoded = decodeRangeResponse(res);
  assert.equal(decoded.header.revision, 7);
  assert.equal(decoded.more, true);
  assert.deepEqual(decoded.kvs, [{ key: 'k', value: 'v', createRevision: 0, modRevision: 0, version: 0 }]);
  // a field running past its message is an error, not a short value
  assert.throws(() => decodeRangeResponse(Buffer.from([0x12, 9, 0x0a, 1, 0x6b])), /past the end/);
});
