import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SnapshotReplica, updateOf } from '../../src/config/replica.ts';
import { ConfigStore } from '../../src/config/store.ts';

test('a replica fed with the store updates (full, then diffs) holds the same snapshot', () => {
  const store = new ConfigStore('t');
  const up = { nodes: { '127.0.0.1:1': 1 } };
  store.apply({ source: 't', revision: 1, full: true, changes: [
    { kind: 'upstreams', id: 'u', modRevision: 1, value: up },
    { kind: 'routes', id: 'r1', modRevision: 1, value: { uri: '/1', upstream_id: 'u' } },
    { kind: 'routes', id: 'r2', modRevision: 1, value: { uri: '/2', upstream_id: 'u' } },
  ] });
  const replica = new SnapshotReplica();
  // a worker that joins late gets the whole snapshot, then every published diff, through JSON (IPC)
  const first = replica.apply(JSON.parse(JSON.stringify(updateOf(store.snapshot, undefined))));
  assert.deepEqual([...first.diff.routes].sort(), ['r1', 'r2']);
  store.subscribe((snapshot, diff) => {
    replica.apply(JSON.parse(JSON.stringify(updateOf(snapshot, diff))));
  });
  store.apply({ source: 't', revision: 2, full: false, changes: [
    { kind: 'routes', id: 'r1', modRevision: 2, deleted: true },
    { kind: 'routes', id: 'r3', modRevision: 2, value: { uri: '/3', upstream_id: 'u' } },
  ] });
  store.apply({ source: 't', revision: 3, full: false, changes: [{ kind: 'upstreams', id: 'u', modRevision: 3, deleted: true }] });
  const mine = replica.snapshot;
  assert.equal(mine.revision, 3);
  for (const kind of ['routes', 'services', 'upstreams'] as const) {
    assert.deepEqual(new Map(mine[kind]), new Map(store.snapshot[kind]), kind);
  }
  // a full update removes what the replica has and the store no longer does
  const again = new SnapshotReplica();
  again.apply({ ...updateOf(first.snapshot, undefined) });
  const { diff } = again.apply(updateOf(store.snapshot, undefined));
  assert.deepEqual([...diff.routes].sort(), ['r1', 'r2']);
  assert.equal(again.snapshot.routes.size, 0);
});
