import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SnapshotReplica, type SnapshotUpdate } from '../../src/config/replica.ts';
import { changedUpstreams, emptyDiff, type Snapshot } from '../../src/config/snapshot.ts';

/** A snapshot of `objects` (kind/id → value). */
function snapshotOf(objects: Record<string, unknown>): Snapshot {
  const update: SnapshotUpdate = { full: true, revision: 1, source: 'test', appliedAt: 'now', changes: [] };
  for (const [key, value] of Object.entries(objects)) {
    const [kind, id] = key.split('/') as [SnapshotUpdate['changes'][number]['kind'], string];
    update.changes.push({ kind, id, object: { id, modRevision: 1, value } });
  }
  return new SnapshotReplica().apply(update).snapshot;
}

const inline = (port: number) => ({ nodes: { [`127.0.0.1:${port}`]: 1 }, checks: { active: { http_path: '/' } } });

describe('changedUpstreams: what the upstream followers (DNS, health checks) are told', () => {
  test('upstream objects, and inline upstreams that are or were there; not objects that never had one', () => {
    const before = snapshotOf({
      'upstreams/u': { nodes: { '127.0.0.1:80': 1 } },
      'routes/a': { uri: '/a', upstream: inline(81) },
      'routes/b': { uri: '/b', upstream_id: 'u' },
      'services/s': { upstream: inline(82) },
      'stream_routes/t': { upstream: { nodes: { '127.0.0.1:83': 1 } } },
    });
    const after = snapshotOf({
      'upstreams/u': { nodes: { '127.0.0.1:90': 1 } },
      'routes/a': { uri: '/a', upstream_id: 'u' },
      'routes/b': { uri: '/b', upstream_id: 'u' },
      'routes/c': { uri: '/c', upstream: inline(84) },
      'routes/d': { uri: '/d', upstream_id: 'u' },
    });
    const diff = emptyDiff();
    diff.upstreams.add('u');
    for (const id of ['a', 'b', 'c', 'd']) diff.routes.add(id);
    diff.services.add('s');
    diff.stream_routes.add('t');
    const changed = changedUpstreams(before, after, diff);
    assert.deepEqual([...changed.keys()].sort(), ['routes/a', 'routes/c', 'services/s', 'stream_routes/t', 'upstreams/u']);
    assert.deepEqual(changed.get('upstreams/u'), { nodes: { '127.0.0.1:90': 1 } });
    assert.equal(changed.get('routes/a'), undefined, 'its inline upstream is gone: its checks stop');
    assert.deepEqual(changed.get('routes/c'), inline(84));
    assert.equal(changed.get('services/s'), undefined);
    assert.equal(changed.get('stream_routes/t'), undefined);
  });

  test('the first snapshot of many routes on upstream objects tells the followers only of the upstreams', () => {
    const objects: Record<string, unknown> = { 'upstreams/u': { nodes: { '127.0.0.1:80': 1 } } };
    for (let i = 0; i < 1000; i++) objects[`routes/r${i}`] = { uri: `/r/${i}`, upstream_id: 'u' };
    objects['routes/own'] = { uri: '/own', upstream: inline(81) };
    const after = snapshotOf(objects);
    const diff = emptyDiff();
    diff.upstreams.add('u');
    for (const id of after.routes.keys()) diff.routes.add(id);
    assert.deepEqual([...changedUpstreams(snapshotOf({}), after, diff).keys()].sort(), ['routes/own', 'upstreams/u']);
  });
});
