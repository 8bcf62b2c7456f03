/**
 * EtcdSource against a real etcd: what the store would receive (the ChangeSets), while a user
 * writes with etcdctl and etcd gets killed, compacted, wiped, partitioned or put behind auth.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Change, ChangeSet } from '../../src/config/changeset.ts';
import type { SourceState } from '../../src/sources/source.ts';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { EtcdSource, mergeChangeSets, type EtcdSourceOptions } from '../../src/sources/etcd/source.ts';
import { JsonObjectSplitter } from '../../src/sources/etcd/watch.ts';
import { fingerprint } from '../../src/config/fingerprint.ts';
import {
  etcdctl,
  makeTestCerts,
  startEtcd,
  startEtcdCluster,
  startTcpProxy,
  type EtcdProcess,
  type TcpProxy,
} from '../helpers/etcd.ts';

const PROGRESS = '--experimental-watch-progress-notify-interval=1s';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

async function waitForAsync<T>(what: string, fn: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}: ${(err as Error).message}`);
      await sleep(100);
    }
  }
}

/** A consumer like the store: records ChangeSets and states, keeps the resulting objects. */
class Recorder {
  sets: ChangeSet[] = [];
  states: SourceState[] = [];
  objects = new Map<string, Change>();
  delay = 0;
  readonly events = {
    onChangeSet: async (cs: ChangeSet) => {
      if (this.delay) await sleep(this.delay);
      this.sets.push(cs);
      if (cs.full) this.objects.clear();
      for (const c of cs.changes) {
        if (c.deleted) this.objects.delete(`${c.kind}/${c.id}`);
        else this.objects.set(`${c.kind}/${c.id}`, c);
      }
    },
    onState: (s: SourceState) => {
      this.states.push(s);
    },
  };
  get revision(): number {
    return this.sets.at(-1)?.revision ?? 0;
  }
  get fulls(): ChangeSet[] {
    return this.sets.filter((s) => s.full);
  }
  get connected(): boolean {
    return this.states.at(-1)?.connected === true;
  }
  values(): Map<string, unknown> {
    return new Map([...this.objects].map(([k, c]) => [k, c.parseError ? { parseError: true } : c.value]));
  }
  waitRevision(rev: number, timeoutMs = 10_000) {
    return waitFor(`revision ${rev} (at ${this.revision})`, () => this.revision >= rev, timeoutMs);
  }
  waitState(connected: boolean, timeoutMs = 10_000) {
    return waitFor(`connected=${connected}`, () => this.states.at(-1)?.connected === connected, timeoutMs);
  }
}

/** What the store should hold: every `<prefix>/<kind>/<id>` in etcd, decoded. */
async function etcdObjects(client: EtcdClient, prefix: string): Promise<Map<string, unknown>> {
  const { kvs } = await client.rangePrefix(`${prefix}/`);
  const out = new Map<string, unknown>();
  for (const kv of kvs) {
    const m = /^[^]*?\/(routes|services|upstreams)\/([^/]+)$/.exec(kv.key.slice(prefix.length));
    if (!m) continue;
    let v: unknown;
    try {
      v = JSON.parse(kv.value);
    } catch {
      v = { parseError: true };
    }
    out.set(`${m[1]}/${m[2]}`, v);
  }
  return out;
}

async function putMany(client: EtcdClient, entries: [string, string][], concurrency = 32): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (i < entries.length) {
        const [k, v] = entries[i++]!;
        await client.put(k, v);
      }
    }),
  );
}

const toStop: { stop(): Promise<void> }[] = [];
function track<T extends { stop(): Promise<void> }>(x: T): T {
  toStop.push(x);
  return x;
}
after(async () => {
  for (const x of toStop.reverse()) {
    try {
      await x.stop();
    } catch {
      /* keep stopping the rest */
    }
  }
});

function source(opts: Partial<EtcdSourceOptions> & { endpoints: string[] }): EtcdSource {
  return track(
    new EtcdSource({ prefix: '/portico', timeout: 1, probeInterval: 500, backoff: { initial: 50, max: 500 }, ...opts }),
  );
}

describe('pieces', () => {
  test('JSON stream splitter handles split and merged messages', () => {
    const s = new JsonObjectSplitter();
    const a = '{"result":{"x":"a}\\"{"}}';
    const b = '{"result":{"events":[{"kv":{}}]}}';
    const all = `${a}\n${b}\n${a}`;
    const got: string[] = [];
    for (let i = 0; i < all.length; i += 3) got.push(...s.push(all.slice(i, i + 3)));
    assert.deepEqual(got, [a, b, a]);
    assert.deepEqual(new JsonObjectSplitter().push(`${a}${b}`), [a, b]);
  });

  test('merging ChangeSets keeps the last write per object and lets a full set reset', () => {
    const r = (id: string, rev: number, extra: Partial<Change> = {}): Change => ({ kind: 'routes', id, modRevision: rev, value: rev, ...extra });
    const m = mergeChangeSets([
      { source: 'etcd', revision: 5, full: false, changes: [r('1', 5), r('2', 5)] },
      { source: 'etcd', revision: 6, full: false, changes: [r('1', 6, { deleted: true, value: undefined })] },
      { source: 'etcd', revision: 7, full: false, changes: [r('3', 7)] },
    ]);
    assert.equal(m.revision, 7);
    assert.equal(m.full, false);
    assert.deepEqual(m.changes.map((c) => [c.id, c.modRevision, !!c.deleted]), [['2', 5, false], ['1', 6, true], ['3', 7, false]]);
    const f = mergeChangeSets([
      { source: 'etcd', revision: 9, full: false, changes: [r('9', 9)] },
      { source: 'etcd', revision: 3, full: true, changes: [r('1', 2)] },
      { source: 'etcd', revision: 4, full: false, changes: [r('1', 4, { deleted: true }), r('2', 4)] },
    ]);
    assert.equal(f.full, true);
    assert.equal(f.revision, 4);
    assert.deepEqual(f.changes.map((c) => c.id), ['2']);
  });
});

describe('single etcd', () => {
  let etcd: EtcdProcess;
  let client: EtcdClient;
  before(async () => {
    etcd = track(await startEtcd({ args: [PROGRESS] }));
    client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    toStop.push({ stop: () => client.close() });
  });

  test('initial load: paginated at one revision while writes go on, then watch from R+1', async () => {
    const P = '/load';
    const entries: [string, string][] = [];
    for (let i = 0; i < 1200; i++) entries.push([`${P}/routes/${i}`, JSON.stringify({ uri: `/r/${i}` })]);
    for (let i = 0; i < 30; i++) entries.push([`${P}/upstreams/${i}`, JSON.stringify({ nodes: { [`n${i}:80`]: 1 } })]);
    await putMany(client, entries);
    await etcdctl(etcd.endpoint, 'put', `${P}/routes`, 'init_dir'); // APISIX-style directory key
    await etcdctl(etcd.endpoint, 'put', P, 'init_dir');
    await etcdctl(etcd.endpoint, 'put', `${P}/_instances/gw-1`, '{"id":"gw-1"}');
    await etcdctl(etcd.endpoint, 'put', `${P}/plugins/x`, '{}');
    await etcdctl(etcd.endpoint, 'put', `${P}x/routes/1`, '{}'); // same leading bytes, other prefix
    await etcdctl(etcd.endpoint, 'put', `${P}/services/bad`, '{not json');

    // keep writing while the source lists: pages must still come from one revision
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) await client.put(`${P}/routes/w${n++}`, '{"w":true}');
    })();
    const rec = new Recorder();
    const src = source({ endpoints: [etcd.clientUrl], prefix: P, pageSize: 500 });
    await src.start(rec.events);
    writing = false;
    await writer;

    const full = rec.sets[0]!;
    assert.equal(full.full, true);
    assert.equal(full.source, 'etcd');
    const atR = await client.rangePrefix(`${P}/`, { pageSize: 10_000 });
    const expected = (await client.range(`${P}/`, { prefix: true, revision: full.revision })).kvs.filter((kv) =>
      /^\/load\/(routes|services|upstreams)\/[^/]+$/.test(kv.key),
    );
    assert.ok(expected.length >= 1231, `at least the 1231 objects written first, got ${expected.length}`);
    assert.equal(full.changes.length, expected.length, 'the full set is exactly the state at its revision');
    for (const c of full.changes) assert.ok(c.modRevision <= full.revision);
    assert.ok(!full.changes.some((c) => c.id === 'gw-1' || (c.kind as string) === 'plugins'));
    const bad = full.changes.find((c) => c.kind === 'services' && c.id === 'bad')!;
    assert.match(bad.parseError!, /services\/bad: invalid JSON/);
    assert.equal(bad.value, undefined);

    // everything written during and after the list arrives by watch, from R + 1 on
    await rec.waitRevision(atR.revision);
    for (const cs of rec.sets.slice(1)) {
      assert.equal(cs.full, false);
      assert.ok(cs.changes.every((c) => c.modRevision > full.revision));
    }
    assert.deepEqual(rec.values(), await etcdObjects(client, P));
    await src.stop();
  });

  test('live put, delete, txn, invalid JSON: one ChangeSet per revision', async () => {
    const P = '/live';
    await etcdctl(etcd.endpoint, 'put', `${P}/upstreams/1`, '{"nodes":{"a:80":1}}');
    const rec = new Recorder();
    const src = source({ endpoints: [etcd.clientUrl], prefix: P });
    await src.start(rec.events);
    assert.equal(rec.sets.length, 1);
    assert.deepEqual(rec.sets[0]!.changes.map((c) => c.id), ['1']);

    const put = await client.put(`${P}/routes/1`, '{"uri":"/a","upstream_id":"1"}');
    await rec.waitRevision(put.revision);
    assert.deepEqual(rec.sets.at(-1), {
      source: 'etcd',
      revision: put.revision,
      full: false,
      // the fingerprint of etcd's own text, which a relist compares instead of serializing again
      changes: [{ kind: 'routes', id: '1', modRevision: put.revision, value: { uri: '/a', upstream_id: '1' }, fingerprint: fingerprint('{"uri":"/a","upstream_id":"1"}') }],
    });

    await etcdctl(etcd.endpoint, 'del', `${P}/routes/1`);
    const delRev = (await client.range(`${P}/`, { countOnly: true })).header.revision;
    await rec.waitRevision(delRev);
    assert.deepEqual(rec.sets.at(-1)!.changes, [{ kind: 'routes', id: '1', modRevision: delRev, deleted: true }]);

    // a route and the upstream it needs, in one transaction → one ChangeSet
    const txn = await client.txn({
      success: [
        { put: { key: `${P}/upstreams/2`, value: '{"nodes":{"b:80":1}}' } },
        { put: { key: `${P}/routes/2`, value: '{"uri":"/b","upstream_id":"2"}' } },
        { put: { key: `${P}/_instances/gw`, value: 'x' } },
      ],
    });
    assert.equal(txn.succeeded, true);
    await rec.waitRevision(txn.header.revision);
    const last = rec.sets.at(-1)!;
    assert.equal(last.revision, txn.header.revision);
    assert.deepEqual(last.changes.map((c) => `${c.kind}/${c.id}@${c.modRevision}`).sort(), [
      `routes/2@${txn.header.revision}`,
      `upstreams/2@${txn.header.revision}`,
    ]);

    await etcdctl(etcd.endpoint, 'put', `${P}/routes/3`, '{"uri": "/c",');
    const badRev = (await client.range(`${P}/`, { countOnly: true })).header.revision;
    await rec.waitRevision(badRev);
    const bad = rec.sets.at(-1)!.changes[0]!;
    assert.equal(bad.id, '3');
    assert.match(bad.parseError!, /routes\/3: invalid JSON/);
    assert.equal(rec.fulls.length, 1);
    assert.equal(rec.states.filter((s) => s.connected).length, 1, 'connected reported once');
    await src.stop();
  });

  test('a burst of 200 puts to a slow consumer: merged, nothing lost', async () => {
    const P = '/burst';
    const rec = new Recorder();
    const src = source({ endpoints: [etcd.clientUrl], prefix: P });
    await src.start(rec.events);
    rec.delay = 15;
    const entries: [string, string][] = [];
    for (let i = 0; i < 200; i++) entries.push([`${P}/routes/${i % 70}`, JSON.stringify({ uri: `/${i}`, i })]);
    for (let i = 0; i < 20; i++) entries.push([`${P}/upstreams/${i}`, '{"nodes":{}}']);
    await putMany(client, entries, 8);
    await client.delete(`${P}/routes/5`);
    const final = (await client.range(`${P}/`, { countOnly: true })).header.revision;
    await rec.waitRevision(final, 15_000);
    assert.deepEqual(rec.values(), await etcdObjects(client, P));
    for (let i = 1; i < rec.sets.length; i++) assert.ok(rec.sets[i]!.revision > rec.sets[i - 1]!.revision);
    assert.ok(rec.sets.length < 200, `bursts were merged (${rec.sets.length} ChangeSets)`);
    await src.stop();
  });

  test('lease helpers for instance registration', async () => {
    const lease = await client.grantLease(10);
    assert.match(lease.id, /^\d+$/);
    await client.put('/fleet/_instances/gw-1', '{"id":"gw-1"}', { lease: lease.id });
    assert.equal(await client.keepAliveOnce(lease.id), 10);
    const { kvs } = await client.range('/fleet/_instances/', { prefix: true });
    assert.deepEqual(kvs.map((kv) => [kv.key, kv.value, kv.lease]), [['/fleet/_instances/gw-1', '{"id":"gw-1"}', lease.id]]);
    await client.revokeLease(lease.id);
    assert.equal((await client.range('/fleet/_instances/', { prefix: true })).kvs.length, 0);
    assert.equal(await client.keepAliveOnce(lease.id), 0);
  });
});

describe('failures', () => {
  test('SIGKILL + restart on the same data dir: resumes at mod_revision + 1, no dup, no gap', async () => {
    const etcd = track(await startEtcd({ args: [PROGRESS] }));
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    toStop.push({ stop: () => client.close() });
    const P = '/kill';
    for (let i = 0; i < 5; i++) await client.put(`${P}/routes/${i}`, `{"i":${i}}`);
    const rec = new Recorder();
    // a long first backoff, so the writes below happen while the source is away
    const src = source({ endpoints: [etcd.clientUrl], prefix: P, backoff: { initial: 2500, max: 2500 } });
    await src.start(rec.events);
    const R = rec.revision;
    await client.put(`${P}/routes/live`, '{}');
    // move etcd's revision without an event for us: resuming from a header revision would skip
    await client.put('/elsewhere/x', '1');
    await rec.waitRevision(R + 1);

    await etcd.kill('SIGKILL');
    await rec.waitState(false);
    await etcd.restart();
    const written: number[] = [];
    for (let i = 0; i < 8; i++) {
      await etcdctl(etcd.endpoint, 'put', `${P}/upstreams/u${i}`, `{"n":${i}}`);
      written.push((await client.range(`${P}/upstreams/u${i}`)).kvs[0]!.modRevision);
    }
    await rec.waitState(true, 10_000);
    await client.put(`${P}/routes/after`, '{}');
    const final = (await client.range(`${P}/`, { countOnly: true })).header.revision;
    await rec.waitRevision(final);

    assert.equal(rec.fulls.length, 1, 'resumed, not relisted');
    const revs = rec.sets.slice(1).flatMap((cs) => cs.changes.map((c) => c.modRevision));
    assert.deepEqual(revs, [R + 1, ...written, final], 'every revision exactly once, in order');
    assert.deepEqual(rec.values(), await etcdObjects(client, P));
    assert.deepEqual(rec.states.map((s) => s.connected), [true, false, true], 'one state report per change');
    assert.equal(rec.states[1]!.error?.code, 'PORTICO_ERR_ETCD_UNAVAILABLE');
    await src.stop();
  });

  test('compacted while disconnected → full relist shows deletions, then watch goes on', async () => {
    const etcd = track(await startEtcd({ args: [PROGRESS] }));
    const proxy: TcpProxy = await startTcpProxy(etcd.clientPort);
    toStop.push({ stop: () => proxy.close() });
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    toStop.push({ stop: () => client.close() });
    const P = '/compact';
    for (const id of ['a', 'b', 'c']) await etcdctl(etcd.endpoint, 'put', `${P}/routes/${id}`, `{"id":"${id}"}`);
    const rec = new Recorder();
    const src = source({ endpoints: [proxy.url], prefix: P });
    await src.start(rec.events);
    const first = rec.sets[0]!;
    const modC = first.changes.find((c) => c.id === 'c')!.modRevision;

    proxy.setMode('refuse');
    await rec.waitState(false);
    await etcdctl(etcd.endpoint, 'del', `${P}/routes/a`);
    await etcdctl(etcd.endpoint, 'put', `${P}/routes/b`, '{"id":"b2"}');
    await etcdctl(etcd.endpoint, 'put', `${P}/routes/d`, '{"id":"d"}');
    const rev = (await client.range(`${P}/`, { countOnly: true })).header.revision;
    await etcdctl(etcd.endpoint, 'compact', String(rev));
    proxy.setMode('pass');

    await waitFor('relist', () => rec.fulls.length === 2);
    const relist = rec.fulls[1]!;
    assert.equal(relist.revision, rev);
    assert.deepEqual(relist.changes.map((c) => [c.id, c.value]).sort(), [
      ['b', { id: 'b2' }],
      ['c', { id: 'c' }],
      ['d', { id: 'd' }],
    ]);
    assert.equal(relist.changes.find((c) => c.id === 'c')!.modRevision, modC, 'unchanged object keeps its modRevision');
    await rec.waitState(true);
    const put = await client.put(`${P}/routes/e`, '{}');
    await rec.waitRevision(put.revision);
    assert.deepEqual(rec.values(), await etcdObjects(client, P));
    await src.stop();
  });

  test('etcd wiped (new data dir, same port) → full relist at a lower revision', async () => {
    const old = await startEtcd({ args: [PROGRESS] });
    const P = '/wipe';
    const client = new EtcdClient({ endpoints: [old.clientUrl] });
    toStop.push({ stop: () => client.close() });
    for (let i = 0; i < 20; i++) await client.put(`${P}/routes/${i}`, '{}');
    const rec = new Recorder();
    const src = source({ endpoints: [old.clientUrl], prefix: P, backoff: { initial: 300, max: 300 } });
    await src.start(rec.events);
    const before = rec.revision;
    assert.ok(before > 20);

    await old.stop();
    const fresh = track(await startEtcd({ clientPort: old.clientPort, args: [PROGRESS] }));
    await etcdctl(fresh.endpoint, 'put', `${P}/routes/new`, '{"fresh":true}');

    await waitFor('relist', () => rec.fulls.length === 2);
    const relist = rec.fulls[1]!;
    assert.ok(relist.revision < before, `revision ${relist.revision} < ${before}`);
    // the relist may come before or after the put: either way the old objects are gone
    assert.ok(relist.changes.every((c) => c.id === 'new'));
    await waitFor('route new', () => rec.objects.has('routes/new'));
    assert.equal(rec.objects.size, 1);
    await rec.waitState(true);
    const put = await client.put(`${P}/routes/x`, '{}');
    await rec.waitRevision(put.revision);
    assert.deepEqual(rec.values(), await etcdObjects(client, P));
    await src.stop();
  });

  test('a black-holed connection is detected within seconds (probe, then progress silence)', async () => {
    const etcd = track(await startEtcd({ args: [PROGRESS] }));
    const proxy = await startTcpProxy(etcd.clientPort);
    toStop.push({ stop: () => proxy.close() });
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    toStop.push({ stop: () => client.close() });
    const P = '/hole';

    for (const variant of [
      { probeInterval: 500, silenceTimeout: 0 },
      { probeInterval: 0, silenceTimeout: 2500 },
    ]) {
      const rec = new Recorder();
      const src = source({ endpoints: [proxy.url], prefix: P, ...variant });
      await src.start(rec.events);
      await rec.waitState(true);
      proxy.setMode('blackhole');
      const t0 = Date.now();
      await rec.waitState(false, 6000);
      const detected = Date.now() - t0;
      assert.ok(detected < 4500, `detected after ${detected} ms`);
      const put = await client.put(`${P}/routes/${variant.probeInterval}`, '{}');
      proxy.setMode('pass');
      await rec.waitRevision(put.revision, 10_000);
      assert.equal(rec.fulls.length, 1);
      await src.stop();
    }
  });

  test('unreachable at start: start() rejects, the source keeps trying and syncs later', async () => {
    const { freePort } = await import('../helpers/etcd.ts');
    const port = await freePort();
    const rec = new Recorder();
    const src = source({ endpoints: [`http://127.0.0.1:${port}`], prefix: '/late' });
    await assert.rejects(src.start(rec.events), { code: 'PORTICO_ERR_ETCD_UNAVAILABLE' });
    assert.equal(rec.states.at(-1)?.connected, false);
    const etcd = track(await startEtcd({ clientPort: port }));
    await etcdctl(etcd.endpoint, 'put', '/late/routes/1', '{}');
    await waitFor('first full sync', () => rec.fulls.length === 1);
    await rec.waitState(true);
    await src.stop();
  });
});

describe('cluster and auth', () => {
  test('3-member cluster: kill the member in use → updates continue through the others', async () => {
    const cluster = track(await startEtcdCluster(3, [PROGRESS]));
    const [m0, m1] = cluster.members as [EtcdProcess, EtcdProcess];
    const P = '/cluster';
    await etcdctl(m1.endpoint, 'put', `${P}/routes/1`, '{}');
    const rec = new Recorder();
    const src = source({ endpoints: cluster.clientUrls, prefix: P });
    await src.start(rec.events);
    await rec.waitState(true);
    assert.equal(src.client.endpoint, m0.clientUrl);

    await m0.kill('SIGKILL');
    // the first proposal after losing the leader may be dropped during the election: retry like a user
    await waitForAsync('put through m1', () => etcdctl(m1.endpoint, '--command-timeout=1s', 'put', `${P}/routes/2`, '{"via":"m1"}'));
    await waitFor('route 2', () => rec.objects.has('routes/2'), 10_000);
    await rec.waitState(true);
    assert.notEqual(src.client.endpoint, m0.clientUrl);
    assert.equal(rec.fulls.length, 1);
    const client = new EtcdClient({ endpoints: cluster.clientUrls.slice(1) });
    assert.deepEqual(rec.values(), await etcdObjects(client, P));
    await client.close();
    await src.stop();
  });

  test('auth: user/password, expired tokens re-authenticated, restart survived', async () => {
    const etcd = track(await startEtcd({ args: [PROGRESS, '--auth-token=simple', '--auth-token-ttl=1'] }));
    await etcdctl(etcd.endpoint, 'user', 'add', 'root:s3cret');
    await etcdctl(etcd.endpoint, 'auth', 'enable');
    const P = '/auth';
    await etcdctl(etcd.endpoint, '--user=root:s3cret', 'put', `${P}/routes/1`, '{}');

    await assert.rejects(new EtcdClient({ endpoints: [etcd.clientUrl] }).range('/x'), { code: 'PORTICO_ERR_ETCD_AUTH' });
    const wrong = source({ endpoints: [etcd.clientUrl], prefix: P, user: 'root', password: 'nope' });
    await assert.rejects(wrong.start(new Recorder().events), { code: 'PORTICO_ERR_ETCD_AUTH' });
    await wrong.stop();

    const client = new EtcdClient({ endpoints: [etcd.clientUrl], user: 'root', password: 's3cret' });
    toStop.push({ stop: () => client.close() });
    await client.range('/x');
    await sleep(2500); // the token expires (ttl 1 s, idle)
    const put = await client.put(`${P}/routes/2`, '{}');

    const rec = new Recorder();
    const src = source({ endpoints: [etcd.clientUrl], prefix: P, user: 'root', password: 's3cret', probeInterval: 2500 });
    await src.start(rec.events);
    assert.deepEqual(rec.sets[0]!.changes.map((c) => c.id).sort(), ['1', '2']);
    assert.equal(rec.sets[0]!.revision, put.revision);
    await sleep(2000); // expired again; the next probe must re-authenticate, not disconnect
    await etcdctl(etcd.endpoint, '--user=root:s3cret', 'put', `${P}/routes/3`, '{}');
    await waitFor('route 3', () => rec.objects.has('routes/3'));
    assert.equal(rec.states.filter((s) => !s.connected).length, 0);

    // after a restart every simple token is gone: the watch is refused until we re-authenticate
    await etcd.restart();
    await rec.waitState(false);
    await etcdctl(etcd.endpoint, '--user=root:s3cret', 'put', `${P}/routes/4`, '{}');
    await waitFor('route 4', () => rec.objects.has('routes/4'), 10_000);
    await rec.waitState(true);
    assert.equal(rec.fulls.length, 1);
    await src.stop();
  });
});

test('TLS with a client certificate (mutual TLS)', async () => {
  const certs = makeTestCerts();
  const etcd = track(await startEtcd({ tls: { ...certs, clientCertAuth: true }, args: [PROGRESS] }));
  assert.match(etcd.clientUrl, /^https:/);
  const tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
  const ctl = [`--cacert=${certs.ca}`, `--cert=${certs.clientCert}`, `--key=${certs.clientKey}`];
  await etcdctl(etcd.endpoint, ...ctl, 'put', '/tls/routes/1', '{"uri":"/tls"}');

  // without the client certificate the handshake is refused
  const noCert = new EtcdClient({ endpoints: [etcd.clientUrl], tls: { ca: certs.ca }, timeout: 2 });
  await assert.rejects(noCert.range('/tls/'), { code: 'PORTICO_ERR_ETCD_UNAVAILABLE' });
  await noCert.close();

  const rec = new Recorder();
  const src = source({ endpoints: [etcd.clientUrl], prefix: '/tls', tls });
  await src.start(rec.events);
  assert.deepEqual(rec.sets[0]!.changes.map((c) => c.value), [{ uri: '/tls' }]);
  await etcdctl(etcd.endpoint, ...ctl, 'put', '/tls/routes/2', '{}');
  await waitFor('route 2', () => rec.objects.has('routes/2'));
  await src.stop();
});

test('stop() leaves no handles: a process that starts and stops a source exits', async () => {
  const etcd = track(await startEtcd({ args: [PROGRESS] }));
  const fixture = path.join(path.dirname(fileURLToPath(import.meta.url)), 'etcd-stop.fixture.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, etcd.clientUrl], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PORTICO_LOG_LEVEL: 'error' },
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | string>((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('hung');
    }, 15_000);
    child.on('exit', (c) => {
      clearTimeout(t);
      resolve(c ?? -1);
    });
  });
  assert.equal(code, 0, out);
  assert.match(out, /synced.*stopped-in-backoff.*stopped/s);
});
