/**
 * The etcd source's range, `[<prefix>/a, end of <prefix>/)`: registrations under `<prefix>/_instances/`
 * are neither listed nor watched, and the resume point still follows etcd through progress
 * notifications, so that a compaction while disconnected does not force a full relist just because
 * only registrations were written meanwhile.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { ChangeSet } from '../../src/config/changeset.ts';
import type { SourceState } from '../../src/sources/source.ts';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { EtcdSource } from '../../src/sources/etcd/source.ts';
import { etcdctl, startEtcd, startTcpProxy } from '../helpers/etcd.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const PROGRESS = '--experimental-watch-progress-notify-interval=1s';
const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

function recorder() {
  const sets: ChangeSet[] = [];
  const states: SourceState[] = [];
  return {
    sets,
    states,
    events: {
      onChangeSet: (cs: ChangeSet) => void sets.push(cs),
      onState: (s: SourceState) => void states.push(s),
      onError: () => {},
    },
  };
}

test('only registrations written, then a compaction while disconnected: no relist, the watch resumes', async () => {
  const etcd = await startEtcd({ args: [PROGRESS] });
  cleanup.push(() => etcd.stop());
  const proxy = await startTcpProxy(etcd.clientPort);
  cleanup.push(() => proxy.close());
  const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
  cleanup.push(() => client.close());
  const P = '/range';
  await client.put(`${P}/routes/a`, '{"uri":"/a"}');
  // outside the range: not listed
  await client.put(`${P}/_instances/early`, '{}');
  await client.put(`${P}/0digit/x`, '{}');
  await client.put(`${P}/Upper/x`, '{}');

  const rec = recorder();
  const src = new EtcdSource({ endpoints: [proxy.url], prefix: P, backoff: { initial: 100, max: 300 } });
  cleanup.push(() => src.stop());
  await src.start(rec.events);
  assert.deepEqual(rec.sets[0]!.changes.map((c) => `${c.kind}/${c.id}`), ['routes/a']);

  const lease = await client.grantLease(60);
  for (let i = 0; i < 30; i++) await client.put(`${P}/_instances/gw-${i % 3}`, JSON.stringify({ i }), { lease: lease.id });
  const regRevision = (await client.range(`${P}/`, { countOnly: true })).header.revision;
  // etcd sends a progress notification to a watch with no events for an interval (1 s here)
  await sleep(2500);
  assert.equal(rec.sets.length, 1, 'registrations delivered nothing');

  proxy.setMode('refuse');
  await waitUntil(() => rec.states.at(-1)?.connected === false, 10_000, 'disconnected');
  await etcdctl(etcd.endpoint, 'compact', String(regRevision));
  const put = await client.put(`${P}/routes/b`, '{"uri":"/b"}');
  proxy.setMode('pass');

  await waitUntil(() => rec.sets.at(-1)!.revision >= put.revision, 10_000, 'routes/b by watch');
  assert.equal(rec.sets.filter((s) => s.full).length, 1, 'resumed after the compacted revision: no relist');
  assert.deepEqual(rec.sets.at(-1)!.changes.map((c) => `${c.kind}/${c.id}`), ['routes/b']);
  assert.equal(rec.sets.at(-1)!.full, false);
});
