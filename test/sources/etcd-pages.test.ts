/**
 * A paged range of a real etcd (EtcdClient.rangePages, what the etcd source lists with): pages
 * sized by bytes, so that small objects come in large pages (etcd 3.4 pays per page) and large ones
 * in small pages; every key exactly once, in order, at the first page's revision.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KeyValue } from '../../src/sources/etcd/client.ts';
import { etcdForSuite } from '../helpers/etcd-suite.ts';

const suite = etcdForSuite();

/** `n` keys `<prefix>/k00000...` with values of `size` bytes, in transactions of 100 puts. */
async function fill(prefix: string, n: number, size: number): Promise<void> {
  const puts: Promise<unknown>[] = [];
  for (let i = 0; i < n; i += 100) {
    const ops = [];
    for (let j = i; j < Math.min(n, i + 100); j++) ops.push({ put: { key: `${prefix}/k${String(j).padStart(5, '0')}`, value: 'v'.repeat(size) } });
    puts.push(suite.client.txn({ success: ops }));
    if (puts.length === 8) await Promise.all(puts.splice(0));
  }
  await Promise.all(puts);
}

/** the bytes of a key and its value */
const bytesOf = (kv: KeyValue) => Buffer.byteLength(kv.key) + Buffer.byteLength(kv.value);

async function pages(prefix: string, opts: { pageBytes?: number; pageSize?: number } = {}): Promise<{ pages: KeyValue[][]; revision: number }> {
  const out: KeyValue[][] = [];
  const { revision } = await suite.client.rangePages(prefix, opts, (kvs) => void out.push(kvs));
  return { pages: out, revision };
}

function assertAllInOrder(got: KeyValue[][], prefix: string, n: number): void {
  const keys = got.flat().map((kv) => kv.key);
  assert.equal(keys.length, n, 'every key once');
  for (let i = 0; i < n; i++) assert.equal(keys[i], `${prefix}/k${String(i).padStart(5, '0')}`);
}

test('small values: a first page of 1,000 keys, then pages of 10,000 at most', async () => {
  await fill('/small', 12_500, 20);
  const { pages: got } = await pages('/small/');
  assert.deepEqual(got.map((p) => p.length), [1000, 10_000, 1500]);
  assertAllInOrder(got, '/small', 12_500);
});

test('large values: each page after the first holds about `pageBytes` of keys and values', async () => {
  await fill('/large', 1200, 2000);
  const pageBytes = 64 * 1024;
  const { pages: got } = await pages('/large/', { pageBytes });
  assert.equal(got[0]!.length, 1000);
  const one = bytesOf(got[0]![0]!);
  for (const page of got.slice(1, -1)) {
    const bytes = page.reduce((sum, kv) => sum + bytesOf(kv), 0);
    assert.ok(bytes <= pageBytes && bytes > pageBytes - one, `a page of ${page.length} keys holds ${bytes} bytes`);
  }
  // the 200 keys after the first page, in pages of at most pageBytes
  assert.ok(got.length >= 1 + Math.ceil((200 * one) / pageBytes), `${got.length} pages`);
  assertAllInOrder(got, '/large', 1200);
});

test('a fixed pageSize, and keys written while paging: pages of that size, all at the first revision', async () => {
  await fill('/fixed', 1050, 10);
  let writes = 0;
  const got: KeyValue[][] = [];
  const { revision } = await suite.client.rangePages('/fixed/', { pageSize: 300 }, async (kvs) => {
    got.push(kvs);
    // a key that sorts last, written during the listing: not part of it
    await suite.client.put(`/fixed/z${writes++}`, 'late');
  });
  assert.deepEqual(got.map((p) => p.length), [300, 300, 300, 150]);
  assertAllInOrder(got, '/fixed', 1050);
  for (const kv of got.flat()) assert.ok(kv.modRevision <= revision);
  assert.equal(writes, 4);
});
