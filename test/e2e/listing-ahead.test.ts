/**
 * The listing ahead of the snapshot (server/listing-ahead.ts): with workers and an etcd source, the
 * workers build their tables from the listing while the primary lists, and their first snapshot
 * then carries only what differs from it.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, watch } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SnapshotReplica, updateOf, type SnapshotUpdate } from '../../src/config/replica.ts';
import type { Snapshot } from '../../src/config/snapshot.ts';
import type { ValidObject } from '../../src/config/store.ts';
import { ListingAhead, ListingReader } from '../../src/server/listing-ahead.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/etcd.ts';
import { etcdForSuite } from '../helpers/etcd-suite.ts';
import { startGateway } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

/** every other route with the text its source stored (as etcdctl may: spaced), which the file holds instead of the value serialized */
const route = (i: number, modRevision = i + 1): ValidObject => {
  const value = { uri: `/r/${i}`, upstream_id: 'u' };
  return { kind: 'routes', id: `r${i}`, modRevision, value, text: i % 2 === 1 ? JSON.stringify(value, null, 1) : undefined };
};

/** The snapshot a full update describes (what a worker greeted with the whole snapshot has). */
function snapshotOf(update: SnapshotUpdate): Snapshot {
  return new SnapshotReplica().apply(update).snapshot;
}

/** Every object of a snapshot as `kind/id@modRevision value`, sorted. */
function contents(s: Snapshot): string[] {
  return updateOf(s, undefined).changes.map((c) => `${c.kind}/${c.id}@${c.object!.modRevision} ${JSON.stringify(c.object!.value)}`).sort();
}

describe('ListingAhead and ListingReader', () => {
  let dir: string;
  before(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'portico-listing-'))));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('a follower that applied the file and then the settling update has exactly the snapshot', () => {
    const ahead = new ListingAhead(dir, 1000);
    assert.equal(ahead.add([route(0)]), false, 'a line waits for 1,000 objects');
    ahead.follow(1);
    assert.equal(ahead.position, undefined, 'nothing written yet');
    assert.equal(ahead.follows(1), false, 'no line yet (a file source never writes one): the whole snapshot');
    assert.equal(ahead.add(Array.from({ length: 1499 }, (_, i) => route(i + 1))), true, 'a line written');
    assert.equal(ahead.follows(1), true);
    const afterFirst = ahead.position!;
    assert.match(path.basename(afterFirst.path), new RegExp(`^portico-listing-${process.pid}-[0-9a-f]{8}\\.jsonl$`));
    // routes/r7 listed again (a relist after a failed first listing), and an upstream
    ahead.add([route(7, 5000), { kind: 'upstreams', id: 'u', modRevision: 3000, value: { nodes: { '127.0.0.1:80': 1 } } }]);
    assert.equal(ahead.finish(), true, 'what was pending is written');
    assert.equal(ahead.add([route(9999)]), false, 'nothing taken after finish');

    // in force: r5 not (its references did not resolve), r8 changed since, a service never listed
    const published: SnapshotUpdate = { full: true, revision: 6000, source: 'etcd', appliedAt: 'now', changes: [] };
    for (let i = 0; i < 1500; i++) {
      if (i === 5) continue;
      const o = i === 7 ? route(7, 5000) : i === 8 ? route(8, 5500) : route(i);
      published.changes.push({ kind: 'routes', id: o.id, object: { id: o.id, modRevision: o.modRevision, value: o.value } });
    }
    published.changes.push({ kind: 'upstreams', id: 'u', object: { id: 'u', modRevision: 3000, value: { nodes: { '127.0.0.1:80': 1 } } } });
    published.changes.push({ kind: 'services', id: 's', object: { id: 's', modRevision: 5800, value: { upstream_id: 'u' } } });
    const snapshot = snapshotOf(published);

    const settle = ahead.settle(snapshot);
    assert.equal(ahead.settle(snapshot), settle, 'computed once per snapshot');
    assert.equal(settle.full, false);
    assert.equal(settle.revision, 6000);
    assert.deepEqual(settle.changes.map((c) => `${c.kind}/${c.id}:${c.object?.modRevision ?? 'removed'}`).sort(), ['routes/r5:removed', 'routes/r8:5500', 'services/s:5800']);

    // the worker: the file line by line as it was told, then the settling update
    const reader = new ListingReader();
    const replica = new SnapshotReplica();
    const firstLine = reader.read(afterFirst.path, afterFirst.end, 'etcd');
    assert.equal(firstLine.changes.length, 1500);
    replica.applyDraft(firstLine);
    replica.applyDraft(reader.read(afterFirst.path, ahead.position!.end, 'etcd'));
    const { snapshot: got, diff } = replica.apply(settle);
    reader.close();
    assert.deepEqual(contents(got), contents(snapshot));
    assert.equal(got.revision, 6000);
    assert.deepEqual([...diff.routes].sort(), ['r5', 'r8']);

    assert.ok(existsSync(afterFirst.path));
    ahead.done(1);
    assert.ok(!existsSync(afterFirst.path), 'removed once its only follower applied its snapshot');
  });

  test('a folder where nothing can be written: no follower, the listing is not kept', () => {
    const ahead = new ListingAhead(path.join(dir, 'missing', 'deeper'), 1000);
    ahead.follow(1);
    assert.equal(ahead.add(Array.from({ length: 1000 }, (_, i) => route(i))), false);
    assert.equal(ahead.follows(1), false, 'the worker gets the whole snapshot');
    ahead.follow(2);
    assert.equal(ahead.follows(2), false, 'nor anyone later');
  });
});

describe('a two-worker gateway on etcd builds its tables from the listing', () => {
  const suite = etcdForSuite();
  let up: TestUpstream;
  let slow: TcpProxy;
  before(async () => {
    // the gateway reads etcd through this: a listing held to a trickle until both workers follow
    // it, as they do while 50,000 routes are listed (a fixed rate was a race with the workers'
    // start: on a loaded machine the second one said hello after the listing)
    slow = await startTcpProxy(suite.etcd.clientPort);
    up = await startUpstream('up');
    await suite.client.put('/portico/upstreams/u', JSON.stringify({ nodes: { [up.address]: 1 } }));
    // 2,500 routes, one of them pointing at an upstream that does not exist
    for (let i = 0; i < 2500; i += 100) {
      const ops = [];
      for (let j = i; j < i + 100; j++) ops.push({ put: { key: `/portico/routes/r${j}`, value: JSON.stringify({ uri: `/r/${j}`, upstream_id: j === 1234 ? 'missing' : 'u' }) } });
      await suite.client.txn({ success: ops });
    }
  });
  after(async () => {
    await slow?.close();
    await up?.close();
  });

  test('the listing goes to the workers in a file, their first snapshot by IPC; a replacement gets the whole snapshot', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'portico-listing-gw-'));
    const created = new Set<string>();
    const watcher = watch(tmp, (_event, name) => {
      if (name?.startsWith('portico-') && existsSync(path.join(tmp, name))) created.add(name);
    });
    // ~210 KB at 4 KB/s: 50 s, unless both workers follow (they load their code in a second or two;
    // after 15 s, at full speed anyway: the test fails below, not on the start's 20 s limit)
    slow.setRate(4_000);
    const trickle = setTimeout(() => slow.setRate(0), 15_000);
    const follows = (out: string) => out.split('a worker follows the listing').length - 1;
    const gw = await startGateway({
      etcd: { endpoints: [slow.url], timeout: 60 },
      workers: 2,
      env: { TMPDIR: tmp, PORTICO_LOG_LEVEL: 'debug' },
      onOutput: (out) => {
        if (follows(out) === 2) slow.setRate(0);
      },
    });
    clearTimeout(trickle);
    try {
      assert.equal(follows(gw.output()), 2, 'both workers followed the listing');
      const listings = [...created].filter((f) => f.startsWith('portico-listing-'));
      assert.equal(listings.length, 1, [...created].join(', '));
      assert.ok(![...created].some((f) => f.startsWith('portico-snapshot-')), `no snapshot file: ${[...created].join(', ')}`);
      const left = () => readdirSync(tmp).filter((f) => f.startsWith('portico-listing-') || f.startsWith('portico-snapshot-'));
      await waitUntil(() => left().length === 0, 3000, 'the listing file removed');
      const st = await gw.status();
      assert.ok(st.workers!.every((w) => w.listening && w.revision === st.revision));
      assert.deepEqual(st.rejected.map((r) => `${r.kind}/${r.id}`), ['routes/r1234']);
      // both workers (keep-alive off: each request a new connection, spread over them)
      for (const i of [0, 999, 1000, 2499]) for (let k = 0; k < 4; k++) assert.equal((await get(`${gw.url}/r/${i}`)).status, 200, `/r/${i}`);
      for (let k = 0; k < 4; k++) assert.equal((await get(`${gw.url}/r/1234`)).status, 404, 'listed, but not in force: settled away');

      // a live change and a replacement worker: the listing is over, it gets the whole snapshot
      await suite.client.put('/portico/routes/r1234', JSON.stringify({ uri: '/r/1234', upstream_id: 'u' }));
      await waitUntil(async () => (await get(`${gw.url}/r/1234`)).status === 200, 5000, 'r1234 fixed');
      const [victim] = ((await gw.status()).workers ?? []).map((w) => w.pid);
      process.kill(victim!, 'SIGKILL');
      await waitUntil(async () => {
        const s = await gw.status();
        return s.workers!.length === 2 && !s.workers!.some((w) => w.pid === victim) && s.workers!.every((w) => w.listening && w.revision === s.revision);
      }, 10_000, 'a replacement worker');
      assert.ok([...created].some((f) => f.startsWith('portico-snapshot-')), 'the replacement read the whole snapshot');
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => get(`${gw.url}/r/${i * 120}`)));
      assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
      assert.equal((await get(`${gw.url}/r/1234`)).status, 200);
    } finally {
      watcher.close();
      await gw.cleanup();
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
