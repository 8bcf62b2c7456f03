/**
 * Config history against a real etcd: history newest first with audit data, configAt an old
 * revision, diff with JSON patches, rollback (exact restore, conflicts, compaction, invalid old
 * values, the txn size limit), and the RFC 6902 diff as a unit.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  applyJsonPatch,
  commitRollback,
  configAt,
  diff,
  history,
  HistoryError,
  jsonPatch,
  planRollback,
  rollback,
} from '../../src/admin/history.ts';
import { EtcdClient, type KeyValue } from '../../src/sources/etcd/client.ts';
import { etcdctl, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';

const cleanup: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c().catch(() => undefined);
});

const ADMIN = { key_name: 'ops-key', role: 'admin' };

const route = (id: string, uri: string, extra: Record<string, unknown> = {}) => ({
  id,
  uri,
  upstream: { type: 'roundrobin', nodes: { '127.0.0.1:1980': 1 } },
  ...extra,
});

/** A write the way the Admin API makes it: the object and its audit record in one txn. */
async function adminPut(client: EtcdClient, P: string, kind: string, id: string, value: unknown, by = ADMIN): Promise<number> {
  const res = await client.txn({
    success: [
      { put: { key: `${P}/${kind}/${id}`, value: JSON.stringify(value) } },
      { put: { key: `${P}/_audit/${kind}/${id}`, value: JSON.stringify({ time: new Date().toISOString(), op: 'put', ...by }) } },
    ],
  });
  return res.header.revision;
}
async function adminDelete(client: EtcdClient, P: string, kind: string, id: string, by = ADMIN): Promise<number> {
  const res = await client.txn({
    success: [
      { deleteRange: { key: `${P}/${kind}/${id}` } },
      { put: { key: `${P}/_audit/${kind}/${id}`, value: JSON.stringify({ time: new Date().toISOString(), op: 'delete', ...by }) } },
    ],
  });
  return res.header.revision;
}

/** Keys and values of the config range at `revision` (0: now), for exact comparisons. */
async function contents(client: EtcdClient, P: string, revision = 0): Promise<[string, string][]> {
  const out: KeyValue[] = (await client.range(`${P}/a`, { rangeEnd: `${P}0`, revision })).kvs;
  return out.map((kv) => [kv.key, kv.value]);
}

function expectRefusal(refusal: string, match: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof HistoryError, `a HistoryError, got ${String(err)}`);
    assert.equal(err.refusal, refusal);
    assert.match(err.message, match);
    return true;
  };
}

describe('jsonPatch (RFC 6902)', () => {
  test('objects, nested changes, arrays grown and shrunk, escaped keys, type changes', () => {
    const cases: [unknown, unknown][] = [
      [{ a: 1, b: 2 }, { a: 1, b: 3, c: 4 }],
      [{ a: { x: [1, 2, 3] } }, { a: { x: [1, 5] } }],
      [{ l: [1] }, { l: [1, 2, { z: 1 }] }],
      [{ 'a/b': 1, 'm~n': 2 }, { 'a/b': 2 }],
      [{ a: [1, 2] }, { a: { 0: 1 } }],
      [1, 'x'],
      [{ a: null }, { a: false }],
      [[], [[1]]],
    ];
    for (const [from, to] of cases) {
      const patch = jsonPatch(from, to);
      assert.deepEqual(applyJsonPatch(from, patch), to, JSON.stringify({ from, to, patch }));
    }
    assert.deepEqual(jsonPatch({ a: 1, b: [1] }, { b: [1], a: 1 }), []);
    assert.deepEqual(jsonPatch({ 'a/b': 1, 'm~n': 2 }, { 'a/b': 2 }), [
      { op: 'remove', path: '/m~0n' },
      { op: 'replace', path: '/a~1b', value: 2 },
    ]);
    assert.deepEqual(jsonPatch({ l: [1, 2, 3] }, { l: [1] }), [
      { op: 'remove', path: '/l/2' },
      { op: 'remove', path: '/l/1' },
    ]);
  });

  test('random documents round-trip', () => {
    let seed = 7;
    const rnd = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) % n);
    const gen = (depth: number): unknown => {
      const t = rnd(depth > 2 ? 3 : 5);
      if (t === 0) return rnd(5);
      if (t === 1) return ['x', 'y', null, true][rnd(4)];
      if (t === 2) return `s${rnd(3)}`;
      if (t === 3) return Array.from({ length: rnd(4) }, () => gen(depth + 1));
      return Object.fromEntries(Array.from({ length: rnd(4) }, () => [['a', 'b', 'c/d', 'e~'][rnd(4)]!, gen(depth + 1)]));
    };
    for (let i = 0; i < 500; i++) {
      const a = gen(0);
      const b = gen(0);
      assert.deepEqual(applyJsonPatch(a, jsonPatch(a, b)), b);
    }
  });
});

describe('history, configAt, diff, rollback against etcd', () => {
  let etcd: EtcdProcess;
  let client: EtcdClient;
  before(async () => {
    etcd = await startEtcd();
    cleanup.push(() => etcd.stop());
    client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    cleanup.push(() => client.close());
  });

  test('history: newest first, ops, audit data, update_time, filters, limit', async () => {
    const P = '/h1';
    const r1 = await adminPut(client, P, 'routes', '1', route('1', '/a'));
    const r2 = (await client.put(`${P}/upstreams/u1`, JSON.stringify({ nodes: { 'a:80': 1 }, update_time: 1700000000 }))).revision;
    // outside the config range: never a history entry
    await client.put(`${P}/_instances/gw1`, '{}');
    const r3 = await adminPut(client, P, 'routes', '1', route('1', '/b'), { key_name: 'viewer-key', role: 'editor' });
    const r4 = (await client.put(`${P}/routes/10`, JSON.stringify(route('10', '/ten')))).revision;
    const r5 = await adminDelete(client, P, 'routes', '1');
    // the last change a plain delete (no audit record): no surviving key marks its revision
    const r6 = (await client.delete(`${P}/routes/10`)).header.revision;

    const h = await history(client, P);
    assert.deepEqual(
      h.entries.map((e) => [e.revision, e.op, `${e.kind}/${e.id}`, e.by?.key_name ?? null]),
      [
        [r6, 'delete', 'routes/10', null],
        [r5, 'delete', 'routes/1', 'ops-key'],
        [r4, 'put', 'routes/10', null],
        [r3, 'put', 'routes/1', 'viewer-key'],
        [r2, 'put', 'upstreams/u1', null],
        [r1, 'put', 'routes/1', 'ops-key'],
      ],
    );
    const [e6, e5, e4, e3, e2] = h.entries;
    assert.equal(e6!.time, null);
    assert.equal(e4!.time, null);
    assert.equal(e2!.time, '2023-11-14T22:13:20.000Z', 'update_time (unix seconds) when there is no audit record');
    assert.ok(Math.abs(Date.parse(e5!.time!) - Date.now()) < 60_000, 'audit time');
    assert.deepEqual(e3!.by, { key_name: 'viewer-key', role: 'editor' });
    assert.equal(h.toRevision, r6);
    assert.equal(h.truncated, false);

    const one = await history(client, P, { kind: 'routes', id: '1' });
    assert.deepEqual(one.entries.map((e) => [e.revision, e.op]), [[r5, 'delete'], [r3, 'put'], [r1, 'put']]);
    const ups = await history(client, P, { kind: 'upstreams' });
    assert.deepEqual(ups.entries.map((e) => e.revision), [r2]);
    const two = await history(client, P, { limit: 2 });
    assert.deepEqual(two.entries.map((e) => e.revision), [r6, r5]);
    // a window of revisions that excludes the older changes: the bound on the work
    const recent = await history(client, P, { maxRevisions: 3 });
    assert.deepEqual(recent.entries.map((e) => e.revision), [r6, r5, r4]);
    assert.equal(recent.truncated, true);
  });

  test('history reaches changes older than its first window (1,000 revisions)', async () => {
    const P = '/h7';
    const r1 = await adminPut(client, P, 'routes', 'old', route('old', '/old'));
    // 1,500 revisions that are not config changes (registrations), written 20 at a time
    for (let i = 0; i < 1500; i += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, j) => client.put(`${P}/_instances/gw${(i + j) % 7}`, `{"n":${i + j}}`)));
    }
    const r2 = await adminPut(client, P, 'routes', 'new', route('new', '/new'));
    const h = await history(client, P);
    assert.deepEqual(h.entries.map((e) => [e.revision, e.id, e.by?.key_name]), [[r2, 'new', 'ops-key'], [r1, 'old', 'ops-key']]);
    assert.ok(h.fromRevision <= r1);
    // the newest window alone had enough
    const last = await history(client, P, { limit: 1 });
    assert.deepEqual(last.entries.map((e) => e.revision), [r2]);
    assert.ok(last.fromRevision > r1, `one window of 1,000 revisions replayed (from ${last.fromRevision})`);
  });

  test('configAt an old revision and diff between two revisions with JSON patches', async () => {
    const P = '/h2';
    await adminPut(client, P, 'routes', '1', route('1', '/a', { methods: ['GET'] }));
    await adminPut(client, P, 'routes', '2', route('2', '/two'));
    const at = (await client.put(`${P}/upstreams/u`, JSON.stringify({ nodes: { 'a:80': 1 } }))).revision;
    await adminPut(client, P, 'routes', '1', route('1', '/a', { methods: ['GET', 'POST'], name: 'r1' }));
    await adminDelete(client, P, 'routes', '2');
    const to = await adminPut(client, P, 'routes', '3', route('3', '/three'));

    const old = await configAt(client, P, at);
    assert.deepEqual(
      old.map((o) => [o.kind, o.id, o.value]),
      [
        ['routes', '1', route('1', '/a', { methods: ['GET'] })],
        ['routes', '2', route('2', '/two')],
        ['upstreams', 'u', { nodes: { 'a:80': 1 } }],
      ],
    );
    assert.deepEqual((await configAt(client, P, to)).map((o) => `${o.kind}/${o.id}`), ['routes/1', 'routes/3', 'upstreams/u']);

    const d = await diff(client, P, at, to);
    assert.deepEqual(d.added.map((o) => `${o.kind}/${o.id}`), ['routes/3']);
    assert.deepEqual(d.removed.map((o) => `${o.kind}/${o.id}`), ['routes/2']);
    assert.equal(d.changed.length, 1);
    assert.deepEqual(d.changed[0]!.patch, [
      { op: 'add', path: '/methods/1', value: 'POST' },
      { op: 'add', path: '/name', value: 'r1' },
    ]);
    assert.deepEqual(applyJsonPatch(d.changed[0]!.from.value, d.changed[0]!.patch), d.changed[0]!.to.value);
  });

  test('rollback restores the config range exactly, with audit records, in one revision', async () => {
    const P = '/h3';
    await adminPut(client, P, 'routes', '1', route('1', '/a'));
    await adminPut(client, P, 'routes', '2', route('2', '/b'));
    // raw text as stored (spacing, key order) is what comes back, not a re-serialization
    const R = (await client.put(`${P}/upstreams/u`, '{ "nodes": {"a:80": 1},  "type": "roundrobin" }')).revision;
    const want = await contents(client, P, R);
    await adminPut(client, P, 'routes', '1', route('1', '/changed'));
    await adminDelete(client, P, 'routes', '2');
    await adminPut(client, P, 'routes', '9', route('9', '/new'));
    await client.put(`${P}/upstreams/u`, JSON.stringify({ nodes: { 'b:80': 1 } }));
    assert.notDeepEqual(await contents(client, P), want);

    const res = await rollback(client, P, R, { by: ADMIN });
    assert.deepEqual(await contents(client, P), want);
    assert.deepEqual(res.restored.sort(), ['routes/1', 'routes/2', 'upstreams/u']);
    assert.deepEqual(res.deleted, ['routes/9']);
    const h = await history(client, P, { limit: 4 });
    assert.ok(h.entries.every((e) => e.revision === res.revision && e.by?.key_name === 'ops-key'), JSON.stringify(h.entries));
    assert.deepEqual(h.entries.map((e) => `${e.op} ${e.kind}/${e.id}`).sort(), ['delete routes/9', 'put routes/1', 'put routes/2', 'put upstreams/u']);
    const audit = JSON.parse((await client.range(`${P}/_audit/routes/9`)).kvs[0]!.value) as Record<string, unknown>;
    assert.equal(audit.op, 'delete');
    assert.equal(audit.rollback_to, R);

    // nothing differs any more: no write at all
    const again = await rollback(client, P, R, { by: ADMIN });
    assert.deepEqual([again.restored, again.deleted], [[], []]);
    assert.equal(again.revision, (await client.range(`${P}/`, { countOnly: true })).header.revision);
  });

  test('a concurrent change fails the rollback; a concurrent delete of an untouched object does not', async () => {
    const P = '/h4';
    await adminPut(client, P, 'routes', '1', route('1', '/a'));
    await adminPut(client, P, 'routes', '5', route('5', '/five'));
    const R = await adminPut(client, P, 'routes', '2', route('2', '/b'));
    await adminPut(client, P, 'routes', '1', route('1', '/changed'));
    const conflict = expectRefusal('conflict', /changed after revision \d+/);

    // a touched key changes between plan and commit
    let plan = await planRollback(client, P, R);
    await adminPut(client, P, 'routes', '1', route('1', '/again'));
    let before = await contents(client, P);
    await assert.rejects(commitRollback(client, P, plan, ADMIN), conflict);
    assert.deepEqual(await contents(client, P), before, 'nothing written');

    // a new key appears
    plan = await planRollback(client, P, R);
    await client.put(`${P}/routes/7`, JSON.stringify(route('7', '/seven')));
    before = await contents(client, P);
    await assert.rejects(commitRollback(client, P, plan, ADMIN), conflict);
    assert.deepEqual(await contents(client, P), before);

    // an untouched key is rewritten
    plan = await planRollback(client, P, R);
    await client.put(`${P}/routes/5`, JSON.stringify(route('5', '/five')));
    await assert.rejects(commitRollback(client, P, plan, ADMIN), conflict);

    // a touched key is deleted
    plan = await planRollback(client, P, R);
    await client.delete(`${P}/routes/7`);
    await assert.rejects(commitRollback(client, P, plan, ADMIN), conflict);

    // documented: an untouched object deleted concurrently stays deleted, the rollback commits
    plan = await planRollback(client, P, R);
    await client.delete(`${P}/routes/5`);
    await commitRollback(client, P, plan, ADMIN);
    assert.deepEqual(
      (await contents(client, P)).map(([k]) => k),
      [`${P}/routes/1`, `${P}/routes/2`],
    );
  });

  test('an old value that no longer validates is refused, naming it; nothing is written', async () => {
    const P = '/h5';
    await adminPut(client, P, 'routes', '1', route('1', '/a'));
    // written around the Admin API: not a valid route (no uri) and not JSON at all
    await client.put(`${P}/routes/bad`, JSON.stringify({ id: 'bad', upstream_id: 'u' }));
    const R = (await client.put(`${P}/upstreams/junk`, '{not json')).revision;
    await client.delete(`${P}/routes/bad`);
    await client.delete(`${P}/upstreams/junk`);
    await adminPut(client, P, 'routes', '1', route('1', '/b'));
    const before = await contents(client, P);
    await assert.rejects(
      rollback(client, P, R, { by: ADMIN }),
      expectRefusal('invalid', /2 objects .*routes\/bad: \/: must have 'uri' or 'uris'.*upstreams\/junk: not valid JSON/),
    );
    assert.deepEqual(await contents(client, P), before);
  });

  test('revisions older than the compaction point are refused; history starts after it', async () => {
    const P = '/h6';
    const R = await adminPut(client, P, 'routes', '1', route('1', '/a'));
    const C = await adminPut(client, P, 'routes', '1', route('1', '/b'));
    const last = await adminPut(client, P, 'routes', '2', route('2', '/c'));
    await etcdctl(etcd.endpoint, 'compact', String(C));
    await assert.rejects(rollback(client, P, R, { by: ADMIN }), expectRefusal('compacted', new RegExp(`revision ${R} is older than etcd's compaction point`)));
    await assert.rejects(configAt(client, P, R), expectRefusal('compacted', /compaction point/));
    await assert.rejects(diff(client, P, R, last), expectRefusal('compacted', /compaction point/));
    // the compaction revision itself is still readable
    assert.equal((await configAt(client, P, C)).find((o) => o.id === '1')?.modRevision, C);
    await assert.rejects(configAt(client, P, last + 1000), expectRefusal('future', /newer than/));

    const h = await history(client, P);
    assert.equal(h.fromRevision, C + 1);
    assert.deepEqual(h.entries.map((e) => [e.revision, `${e.kind}/${e.id}`]), [[last, 'routes/2']]);
  });
});

describe('rollback and etcd --max-txn-ops', () => {
  test('above the limit: refused, not split; with a raised limit: one txn', async () => {
    const etcd = await startEtcd({ args: ['--max-txn-ops=512'] });
    cleanup.push(() => etcd.stop());
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    cleanup.push(() => client.close());
    const P = '/big';
    const R = (await client.put(`${P}/routes/keep`, JSON.stringify(route('keep', '/keep')))).revision;
    // 70 new objects: 140 txn ops to delete them with their audit records
    await Promise.all(Array.from({ length: 70 }, (_, i) => client.put(`${P}/routes/n${i}`, JSON.stringify(route(`n${i}`, `/n${i}`)))));
    const before = await contents(client, P);
    await assert.rejects(
      rollback(client, P, R, { by: ADMIN }),
      expectRefusal('too_large', /touches 70 objects: 140 txn ops .* over etcd's --max-txn-ops 128.* not split/),
    );
    assert.deepEqual(await contents(client, P), before);
    // this member allows 512 ops: told so, the same rollback is one txn
    const res = await rollback(client, P, R, { by: ADMIN, maxTxnOps: 512 });
    assert.equal(res.deleted.length, 70);
    assert.deepEqual(await contents(client, P), await contents(client, P, R));
  });

  test("a member with the default limit refuses a txn over it; the error says so", async () => {
    const etcd = await startEtcd();
    cleanup.push(() => etcd.stop());
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    cleanup.push(() => client.close());
    const P = '/big2';
    const R = (await client.put(`${P}/routes/keep`, JSON.stringify(route('keep', '/keep')))).revision;
    await Promise.all(Array.from({ length: 70 }, (_, i) => client.put(`${P}/routes/n${i}`, JSON.stringify(route(`n${i}`, `/n${i}`)))));
    await assert.rejects(rollback(client, P, R, { by: ADMIN, maxTxnOps: 1000 }), expectRefusal('too_large', /etcd refused the txn of 140 ops/));
  });
});
