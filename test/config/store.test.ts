import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Change, ChangeSet } from '../../src/config/changeset.ts';
import { ConfigStore } from '../../src/config/store.ts';

const up = (port = 1980) => ({ nodes: { [`127.0.0.1:${port}`]: 1 } });
let rev = 0;
function cs(changes: Array<Omit<Change, 'modRevision'> & { modRevision?: number }>, full = false): ChangeSet {
  rev++;
  return { source: 'test', revision: rev, full, changes: changes.map((c) => ({ modRevision: rev, ...c })) };
}

describe('ConfigStore', () => {
  test('applies valid objects and publishes a snapshot with the revision', () => {
    const store = new ConfigStore();
    const r = store.apply(cs([{ kind: 'upstreams', id: 'u1', value: up() }, { kind: 'routes', id: 'r1', value: { uri: '/a', upstream_id: 'u1' } }]));
    assert.equal(r.snapshot.revision, rev);
    assert.deepEqual([...r.snapshot.routes.keys()], ['r1']);
    assert.deepEqual([...r.diff.routes], ['r1']);
    assert.deepEqual([...r.diff.upstreams], ['u1']);
    assert.deepEqual(store.rejections(), []);
  });

  test('an invalid new version is rejected with a reason and the previous version keeps serving', () => {
    const store = new ConfigStore();
    store.apply(cs([{ kind: 'routes', id: '7', value: { uri: '/a', upstream: up() } }]));
    const r = store.apply(cs([{ kind: 'routes', id: '7', value: { uri: '/b', upstream: { nodes: { 'a:80': -1 } } } }]));
    assert.equal(r.snapshot.routes.get('7')!.value.uri, '/a');
    assert.equal(r.diff.routes.size, 0);
    const [rej] = store.rejections();
    assert.equal(rej!.reason, 'routes/7: /upstream/nodes/a:80: must be >= 0');
    assert.equal(rej!.code, 'PORTICO_ERR_SCHEMA');
    // a valid version clears the rejection
    store.apply(cs([{ kind: 'routes', id: '7', value: { uri: '/c', upstream: up() } }]));
    assert.equal(store.snapshot.routes.get('7')!.value.uri, '/c');
    assert.deepEqual(store.rejections(), []);
  });

  test('a parse error is a rejection, not a crash', () => {
    const store = new ConfigStore();
    store.apply(cs([{ kind: 'routes', id: '1', parseError: 'invalid JSON: Unexpected token' }]));
    assert.equal(store.rejections()[0]!.code, 'PORTICO_ERR_PARSE');
    assert.equal(store.snapshot.routes.size, 0);
    assert.equal(store.rejectionCount.get('PORTICO_ERR_PARSE'), 1);
  });

  test('a dangling reference is reported, and resolves when the target arrives later', () => {
    const store = new ConfigStore();
    store.apply(cs([{ kind: 'routes', id: 'r1', value: { uri: '/a', upstream_id: 'u9' } }]));
    assert.equal(store.snapshot.routes.size, 0);
    assert.deepEqual(store.rejections().map((r) => [r.code, r.reason]), [['PORTICO_ERR_REFERENCE', "routes/r1: /upstream_id: upstream 'u9' not found"]]);
    const r = store.apply(cs([{ kind: 'upstreams', id: 'u9', value: up() }]));
    assert.ok(r.snapshot.routes.has('r1'));
    assert.deepEqual([...r.diff.routes], ['r1']);
    assert.deepEqual(store.rejections(), []);
  });

  test('re-pointing a route at a missing upstream keeps the version in force', () => {
    const store = new ConfigStore();
    store.apply(cs([{ kind: 'upstreams', id: 'u1', value: up() }, { kind: 'routes', id: 'r1', value: { uri: '/a', upstream_id: 'u1' } }]));
    store.apply(cs([{ kind: 'routes', id: 'r1', value: { uri: '/a', upstream_id: 'nope' } }]));
    assert.equal(store.snapshot.routes.get('r1')!.value.upstream_id, 'u1');
    assert.equal(store.rejections()[0]!.code, 'PORTICO_ERR_REFERENCE');
  });

  test('deleting an upstream takes down the routes that need it, with a reason', () => {
    const store = new ConfigStore();
    store.apply(cs([{ kind: 'upstreams', id: 'u1', value: up() }, { kind: 'routes', id: 'r1', value: { uri: '/a', upstream_id: 'u1' } }]));
    const r = store.apply(cs([{ kind: 'upstreams', id: 'u1', deleted: true }]));
    assert.equal(r.snapshot.routes.size, 0);
    assert.deepEqual([...r.diff.routes], ['r1']);
    assert.match(store.rejections()[0]!.reason, /upstream 'u1' not found/);
  });

  test('routes through a service: the service must exist and supply an upstream', () => {
    const store = new ConfigStore();
    store.apply(cs([{ kind: 'services', id: 's1', value: { hosts: ['a.com'] } }, { kind: 'routes', id: 'r1', value: { uri: '/a', service_id: 's1' } }]));
    assert.match(store.rejections()[0]!.reason, /neither the route nor service 's1' has an upstream/);
    store.apply(cs([{ kind: 'services', id: 's1', value: { hosts: ['a.com'], upstream: up() } }]));
    assert.ok(store.snapshot.routes.has('r1'));
  });

  test('a full listing skips unchanged objects and deletes the missing ones', () => {
    const store = new ConfigStore();
    store.apply({ source: 't', revision: 10, full: true, changes: [
      { kind: 'upstreams', id: 'u1', modRevision: 5, value: up() },
      { kind: 'routes', id: 'r1', modRevision: 6, value: { uri: '/a', upstream_id: 'u1' } },
      { kind: 'routes', id: 'r2', modRevision: 7, value: { uri: '/b', upstream_id: 'u1' } },
    ] });
    const before = store.snapshot.routes.get('r1');
    const r = store.apply({ source: 't', revision: 12, full: true, changes: [
      { kind: 'upstreams', id: 'u1', modRevision: 5, value: up() },
      { kind: 'routes', id: 'r1', modRevision: 6, value: { uri: '/a', upstream_id: 'u1' } },
    ] });
    assert.deepEqual([...r.diff.routes], ['r2']);
    assert.equal(r.diff.upstreams.size, 0);
    assert.equal(r.snapshot.routes.get('r1'), before, 'unchanged object is the same object');
    assert.equal(r.snapshot.revision, 12);
  });

  test('a full listing applies an object whose modRevision is unchanged but whose content is not (etcd wiped)', () => {
    const store = new ConfigStore();
    store.apply({ source: 't', revision: 30, full: true, changes: [{ kind: 'routes', id: '1', modRevision: 2, value: { uri: '/one', upstream: up() } }] });
    const r = store.apply({ source: 't', revision: 3, full: true, changes: [{ kind: 'routes', id: '1', modRevision: 2, value: { uri: '/uno', upstream: up() } }] });
    assert.deepEqual([...r.diff.routes], ['1']);
    assert.equal(r.snapshot.routes.get('1')!.value.uri, '/uno');
  });

  test('a relist skips an object whose last version was invalid or failed to compile, and takes its fix', () => {
    const store = new ConfigStore();
    const listing = (bad: object, failing: object, mod = 2) => ({ source: 't', revision: 20 + mod, full: true, changes: [
      { kind: 'upstreams' as const, id: 'u1', modRevision: 1, value: up() },
      { kind: 'routes' as const, id: 'bad', modRevision: mod, value: bad },
      { kind: 'routes' as const, id: 'failing', modRevision: mod, value: failing },
    ] });
    store.apply(listing({ uri: '/ok', upstream_id: 'u1' }, { uri: '/f', upstream_id: 'u1' }, 1));
    // newer versions: one schema-invalid (the older one keeps serving), one the data plane cannot compile
    store.apply(listing({ uri: 42, upstream_id: 'u1' }, { uri: '/f2', upstream_id: 'u1' }));
    assert.equal(store.snapshot.routes.get('bad')!.value.uri, '/ok');
    store.rejectCompileFailures([{ kind: 'routes', id: 'failing', modRevision: 2, reason: 'routes/failing: cannot compile' }]);
    assert.equal(store.snapshot.routes.has('failing'), false);
    const rejectedBefore = store.rejections().map((r) => r.id).sort();
    assert.deepEqual(rejectedBefore, ['bad', 'failing']);
    // the same listing again (a relist after a compaction): nothing is new, nothing changes
    const again = store.apply(listing({ uri: 42, upstream_id: 'u1' }, { uri: '/f2', upstream_id: 'u1' }));
    assert.equal(again.diff.routes.size, 0, 'neither version is taken as new');
    assert.equal(store.snapshot.routes.get('bad')!.value.uri, '/ok');
    assert.equal(store.snapshot.routes.has('failing'), false);
    assert.deepEqual(store.rejections().map((r) => r.id).sort(), rejectedBefore);
    // fixed at the source: both apply, the rejections go
    const fixed = store.apply(listing({ uri: '/ok3', upstream_id: 'u1' }, { uri: '/f3', upstream_id: 'u1' }, 3));
    assert.deepEqual([...fixed.diff.routes].sort(), ['bad', 'failing']);
    assert.equal(store.snapshot.routes.get('failing')!.value.uri, '/f3');
    assert.deepEqual(store.rejections(), []);
  });

  test('published snapshots are never mutated', () => {
    const store = new ConfigStore();
    const s1 = store.apply(cs([{ kind: 'routes', id: 'r1', value: { uri: '/a', upstream: up() } }])).snapshot;
    store.apply(cs([{ kind: 'routes', id: 'r2', value: { uri: '/b', upstream: up() } }, { kind: 'routes', id: 'r1', deleted: true }]));
    assert.deepEqual([...s1.routes.keys()], ['r1']);
    assert.deepEqual([...store.snapshot.routes.keys()], ['r2']);
  });

  test('schema rules follow APISIX: uri xor uris, unknown fields, methods, id must match key', () => {
    const store = new ConfigStore();
    store.apply(cs([
      { kind: 'routes', id: 'a', value: { uri: '/a', uris: ['/b'], upstream: up() } },
      { kind: 'routes', id: 'b', value: { uri: '/a', upstream: up(), hostt: 'x' } },
      { kind: 'routes', id: 'c', value: { uri: '/a', methods: ['FETCH'], upstream: up() } },
      { kind: 'routes', id: 'd', value: { id: 'other', uri: '/a', upstream: up() } },
      { kind: 'upstreams', id: 'e', value: { type: 'fancy', nodes: { 'a:1': 1 } } },
    ]));
    const reasons = Object.fromEntries(store.rejections().map((r) => [r.id, r.reason]));
    assert.equal(reasons.a, "routes/a: /: only one of 'uri' and 'uris' may be set");
    assert.equal(reasons.b, "routes/b: /: unknown field 'hostt'");
    assert.match(reasons.c!, /^routes\/c: \/methods\/0: must be one of "GET"/);
    assert.equal(reasons.d, "routes/d: /id: 'other' does not match the object's key id 'd'");
    assert.equal(reasons.e, "upstreams/e: /type: balancer 'fancy' is not supported (supported: roundrobin, chash, least_conn, ewma)");
  });
});

describe('semantic checks', () => {
  test('what the router would refuse is rejected at validation, with the field path', () => {
    const store = new ConfigStore();
    store.apply(cs([
      { kind: 'routes', id: 'cidr', value: { uri: '/a', remote_addrs: ['10.0.0.0/33'], upstream: up() } },
      { kind: 'routes', id: 'op', value: { uri: '/a', vars: [['arg_x', '=~', 'y']], upstream: up() } },
      { kind: 'routes', id: 're', value: { uri: '/a', vars: [['arg_x', '~~', '(']], upstream: up() } },
      { kind: 'routes', id: 'ok', value: { uri: '/a', vars: [['arg_x', '==', 'y']], remote_addrs: ['::1', '10.0.0.0/8'], upstream: up() } },
    ]));
    const reasons = Object.fromEntries(store.rejections().map((r) => [r.id, r]));
    assert.match(reasons.cidr!.reason, /^routes\/cidr: \/remote_addrs\/0: invalid CIDR/);
    assert.equal(reasons.cidr!.code, 'PORTICO_ERR_SEMANTIC');
    assert.match(reasons.op!.reason, /^routes\/op: \/vars\/0: invalid operator '=~'/);
    assert.match(reasons.re!.reason, /^routes\/re: \/vars\/0: invalid regular expression/);
    assert.equal(reasons.ok, undefined);
    assert.ok(store.snapshot.routes.has('ok'));
  });

  test('a new version of an upstream leaves its dependents alone; its removal and return re-resolve them', () => {
    const store = new ConfigStore();
    const routes = Array.from({ length: 1000 }, (_, i) => ({ kind: 'routes' as const, id: `r${i}`, value: { uri: `/r/${i}`, upstream_id: 'u' } }));
    store.apply(cs([{ kind: 'upstreams', id: 'u', value: up() }, ...routes]));
    assert.equal(store.snapshot.routes.size, 1000);
    // references resolve by existence: a replaced upstream changes nothing for the 1,000 routes
    const replaced = store.apply(cs([{ kind: 'upstreams', id: 'u', value: up(1981) }]));
    assert.deepEqual([replaced.diff.upstreams.size, replaced.diff.routes.size], [1, 0]);
    // a route whose own version changes is still re-resolved
    const one = store.apply(cs([{ kind: 'routes', id: 'r1', value: { uri: '/moved', upstream_id: 'u' } }]));
    assert.deepEqual([...one.diff.routes], ['r1']);
    // gone: every dependent keeps its last good version (reference rejection), back: resolved again
    const gone = store.apply(cs([{ kind: 'upstreams', id: 'u', deleted: true }]));
    assert.equal(gone.snapshot.upstreams.size, 0);
    assert.equal(store.rejections().filter((r) => r.code === 'PORTICO_ERR_REFERENCE').length, 1000);
    store.apply(cs([{ kind: 'upstreams', id: 'u', value: up(1982) }]));
    assert.deepEqual(store.rejections(), []);
    assert.equal(store.snapshot.routes.size, 1000);
  });
});

describe('a first listing staged page by page', () => {
  /** A listing with every outcome: valid, schema-invalid, unparsable, over the limits, dangling, through a service. */
  function listing(revision: number): ChangeSet {
    const changes: Change[] = [
      { kind: 'upstreams', id: 'u1', modRevision: 2, value: up() },
      { kind: 'services', id: 's1', modRevision: 3, value: { upstream_id: 'u1' } },
      { kind: 'routes', id: 'ok', modRevision: 4, value: { uri: '/ok', upstream_id: 'u1' } },
      { kind: 'routes', id: 'via', modRevision: 5, value: { uri: '/via', service_id: 's1' } },
      { kind: 'routes', id: 'bad', modRevision: 6, value: { uri: '/bad', upstream: { nodes: { 'a:80': -1 } } } },
      { kind: 'routes', id: 'json', modRevision: 7, parseError: 'routes/json: invalid JSON: Unexpected token' },
      { kind: 'routes', id: 'deep', modRevision: 8, value: { uri: '/deep', upstream_id: 'u1', desc: 'x'.repeat(2_000_000) } },
      { kind: 'routes', id: 'dangling', modRevision: 9, value: { uri: '/d', upstream_id: 'nope' } },
      ...Array.from({ length: 20 }, (_, i) => ({ kind: 'routes' as const, id: `r${i}`, modRevision: 10 + i, value: { uri: `/r/${i}`, upstream_id: 'u1' } })),
    ];
    return { source: 'etcd', revision, full: true, changes };
  }
  const view = (store: ConfigStore) => ({
    revision: store.snapshot.revision,
    routes: [...store.snapshot.routes.keys()].sort(),
    services: [...store.snapshot.services.keys()],
    upstreams: [...store.snapshot.upstreams.keys()],
    rejected: store.rejections().map((r) => [r.code, r.id, r.reason, r.modRevision]),
    counts: [...store.rejectionCount].sort(),
  });

  test('publishes what applying the listing at once publishes, and nothing before', () => {
    const whole = new ConfigStore();
    const expected = whole.apply(listing(40));
    const staged = new ConfigStore();
    const cs = listing(40);
    const valid: string[] = [];
    for (let i = 0; i < cs.changes.length; i += 3) {
      const out: { id: string }[] = [];
      staged.stage(cs.changes.slice(i, i + 3), out as never);
      valid.push(...out.map((o) => o.id));
    }
    // staged, not applied: no snapshot, no rejection yet
    assert.equal(staged.snapshot.revision, 0);
    assert.equal(staged.snapshot.routes.size, 0);
    assert.deepEqual(staged.rejections(), []);
    assert.deepEqual(valid.sort(), ['dangling', 'ok', 's1', 'u1', 'via', ...Array.from({ length: 20 }, (_, i) => `r${i}`)].sort());
    const r = staged.apply(cs);
    assert.deepEqual(view(staged), view(whole));
    assert.deepEqual([...r.diff.routes].sort(), [...expected.diff.routes].sort());
    assert.deepEqual(r.rejected.map((x) => x.id).sort(), ['bad', 'dangling', 'deep', 'json']);
    assert.deepEqual(new Set(view(staged).rejected.map((x) => x[0])), new Set(['PORTICO_ERR_SCHEMA', 'PORTICO_ERR_PARSE', 'PORTICO_ERR_LIMIT', 'PORTICO_ERR_REFERENCE']));
    // and it goes on as a store that applied the listing: a relist skips what did not change
    const relist = listing(41);
    staged.stage(relist.changes);
    const again = staged.apply(relist);
    assert.deepEqual([again.diff.routes.size, again.diff.upstreams.size], [0, 0]);
    assert.equal(again.snapshot.routes.get('ok'), r.snapshot.routes.get('ok'), 'an unchanged object stays the same object');
  });

  test('a listing that failed half way and was listed again leaves nothing of the first attempt', () => {
    const store = new ConfigStore();
    const first = listing(40);
    // the first attempt staged 'gone' (deleted before the second attempt) and a broken 'bad'
    store.stage([{ kind: 'routes', id: 'gone', modRevision: 3, value: { uri: '/gone', upstream: up() } }, ...first.changes.slice(0, 5)]);
    const second: ChangeSet = { source: 'etcd', revision: 50, full: true, changes: [
      { kind: 'upstreams', id: 'u1', modRevision: 2, value: up() },
      { kind: 'routes', id: 'bad', modRevision: 45, value: { uri: '/bad', upstream_id: 'u1' } },
    ] };
    store.stage(second.changes);
    const r = store.apply(second);
    assert.deepEqual([...r.snapshot.routes.keys()], ['bad']);
    assert.deepEqual(store.rejections(), []);
    assert.deepEqual([...store.rejectionCount], []);
    // the dropped staging left no dependents behind: the upstream's removal touches 'bad' only
    const gone = store.apply({ source: 'etcd', revision: 51, full: false, changes: [{ kind: 'upstreams', id: 'u1', modRevision: 51, deleted: true }] });
    assert.deepEqual(store.rejections().map((x) => [x.code, x.id]), [['PORTICO_ERR_REFERENCE', 'bad']]);
    assert.equal(gone.snapshot.routes.size, 0);
  });

  test('a store that applied anything (the snapshot from disk, say) only prevalidates a listing', () => {
    const store = new ConfigStore();
    store.apply({ source: 'etcd', revision: 30, full: true, changes: [
      { kind: 'upstreams', id: 'u1', modRevision: 2, value: up() },
      { kind: 'routes', id: 'old', modRevision: 3, value: { uri: '/old', upstream_id: 'u1' } },
    ] });
    const cs = listing(40);
    store.stage(cs.changes);
    // nothing entered before apply: 'old' still served, no new rejection
    assert.deepEqual([...store.snapshot.routes.keys()], ['old']);
    assert.deepEqual(store.rejections(), []);
    const r = store.apply(cs);
    assert.deepEqual(view(store).routes, view((() => { const s = new ConfigStore(); s.apply(listing(40)); return s; })()).routes);
    assert.ok(r.diff.routes.has('old'), 'missing from the listing: deleted');
  });
});
