/**
 * One bad object never costs the others (issue 6, items 1 and 5): the store rejects it and applies
 * the rest of its ChangeSet, whatever went wrong with it — over the limits, a throw while
 * validating, or a compile failure reported by the data plane.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Change, ChangeSet } from '../../src/config/changeset.ts';
import { FrozenMap } from '../../src/config/frozen-map.ts';
import { emptyDiff, emptySnapshot, type Snapshot, type StoredObject } from '../../src/config/snapshot.ts';
import { ConfigStore } from '../../src/config/store.ts';
import { validateObject } from '../../src/config/validate.ts';
import { Runtime } from '../../src/runtime/runtime.ts';
import type { CompileFailure } from '../../src/runtime/types.ts';
import { restartDelay } from '../../src/server/cluster.ts';
import { checkTextLimits, checkValueLimits, OBJECT_LIMITS } from '../../src/security/limits.ts';

const up = (port = 1980) => ({ nodes: { [`127.0.0.1:${port}`]: 1 } });
let rev = 0;
function cs(changes: Array<Omit<Change, 'modRevision'> & { modRevision?: number }>, full = false): ChangeSet {
  rev++;
  return { source: 'test', revision: rev, full, changes: changes.map((c) => ({ modRevision: rev, ...c })) };
}
const nested = (levels: number): unknown => JSON.parse(`${'['.repeat(levels)}${']'.repeat(levels)}`);

describe('object limits', () => {
  test('depth: 64 levels pass, 65 are rejected, without recursion (100,000 levels)', () => {
    assert.equal(checkValueLimits(nested(64)), undefined);
    assert.equal(checkValueLimits(nested(65)), '/0/0/0/0/0/…/0: nested deeper than 64 levels (the depth limit)');
    assert.match(checkValueLimits(nested(100_000))!, /nested deeper than 64 levels/);
    assert.equal(checkValueLimits({ a: { 'b/c': [[]] } }, { maxDepth: 3, maxBytes: 100 }), '/a/b~1c/0: nested deeper than 3 levels (the depth limit)');
  });

  test('size: the compact JSON size, strings in UTF-8 bytes; a cycle (YAML alias) is bounded too', () => {
    const oneMiB = OBJECT_LIMITS.maxBytes;
    assert.equal(checkValueLimits({ s: 'x'.repeat(oneMiB - 100) }), undefined);
    assert.equal(checkValueLimits({ s: 'x'.repeat(oneMiB) }), '/: over the 1 MiB size limit');
    assert.equal(checkValueLimits({ s: '\u00e9'.repeat(oneMiB / 2) }), '/: over the 1 MiB size limit');
    // an estimate from above, within a few bytes per container
    const small = { a: 'é€😀', b: [1, -22, null, true] };
    const exact = Buffer.byteLength(JSON.stringify(small));
    assert.equal(checkValueLimits(small, { maxDepth: 64, maxBytes: exact + 4 }), undefined);
    assert.equal(checkValueLimits(small, { maxDepth: 64, maxBytes: exact - 1 }), `/: over the ${exact - 1} bytes size limit`);
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    assert.match(checkValueLimits(cyclic)!, /nested deeper than 64 levels/);
    const wide: unknown[] = [];
    for (let i = 0; i < 64; i++) wide.push(wide);
    assert.match(checkValueLimits(wide)!, /over the 1 MiB size limit|nested deeper/);
    assert.equal(checkTextLimits('x'.repeat(1000)), undefined);
    assert.equal(checkTextLimits('é'.repeat(600_000)), '/: 1200000 bytes is over the 1 MiB size limit');
  });
});

describe('ConfigStore: a bad object costs only itself', () => {
  test('a value over the limits is rejected (PORTICO_ERR_LIMIT) in a full listing, which diffs values; the rest applies', () => {
    const store = new ConfigStore();
    const deep = { uri: '/deep', upstream: up(), plugins: { x: { a: nested(5000) } } };
    const r = store.apply(cs([{ kind: 'routes', id: 'deep', value: deep }, { kind: 'routes', id: 'ok', value: { uri: '/ok', upstream: up() } }], true));
    assert.deepEqual([...r.snapshot.routes.keys()], ['ok']);
    assert.equal(r.rejected.length, 1);
    assert.equal(r.rejected[0]!.code, 'PORTICO_ERR_LIMIT');
    assert.equal(r.rejected[0]!.reason, 'routes/deep: /plugins/x/a/0/0/…/0: nested deeper than 64 levels (the depth limit)');
    // the same listing again: unchanged, nothing revalidated, the rejection stays
    const again = store.apply(cs([{ kind: 'routes', id: 'deep', value: deep, modRevision: 1 }, { kind: 'routes', id: 'ok', value: { uri: '/ok', upstream: up() }, modRevision: 1 }], true));
    assert.equal(again.diff.routes.size, 0);
    assert.equal(store.rejections().length, 1);
    store.apply(cs([{ kind: 'routes', id: 'deep', deleted: true }]));
    assert.deepEqual(store.rejections(), []);
  });

  test('an exception while validating one object rejects it; the rest of the change set applies', () => {
    const store = new ConfigStore();
    const hostile = { uri: '/h', upstream: up() };
    Object.defineProperty(hostile, 'host', { enumerable: true, get: () => { throw new Error('boom'); } });
    const r = store.apply(cs([{ kind: 'routes', id: 'h', value: hostile }, { kind: 'routes', id: 'ok', value: { uri: '/ok', upstream: up() } }]));
    assert.deepEqual([...r.snapshot.routes.keys()], ['ok']);
    assert.equal(r.rejected[0]!.code, 'PORTICO_ERR_COMPILE');
    assert.equal(r.rejected[0]!.reason, 'routes/h: /: could not be read: boom');
  });

  test('what a listener could not compile is rejected (PORTICO_ERR_COMPILE) and taken out of the snapshot; its dependents follow', () => {
    const store = new ConfigStore();
    const seen: Snapshot[] = [];
    store.subscribe((snapshot, diff) => {
      seen.push(snapshot);
      const u = diff.upstreams.has('u1') ? snapshot.upstreams.get('u1') : undefined;
      return u ? [{ kind: 'upstreams', id: 'u1', modRevision: u.modRevision, reason: 'upstreams/u1: /nodes: cannot compile' }] : [];
    });
    const r = store.apply(cs([
      { kind: 'upstreams', id: 'u1', value: up() },
      { kind: 'upstreams', id: 'u2', value: up(1981) },
      { kind: 'routes', id: 'r1', value: { uri: '/a', upstream_id: 'u1' } },
      { kind: 'routes', id: 'r2', value: { uri: '/b', upstream_id: 'u2' } },
    ]));
    assert.equal(seen.length, 2, 'published, then published again without the failed object');
    assert.deepEqual([...r.snapshot.upstreams.keys()], ['u2']);
    assert.deepEqual([...r.snapshot.routes.keys()], ['r2']);
    assert.deepEqual(r.rejected.map((x) => [x.code, x.reason]), [
      ['PORTICO_ERR_COMPILE', 'upstreams/u1: /nodes: cannot compile'],
      ['PORTICO_ERR_REFERENCE', "routes/r1: /upstream_id: upstream 'u1' not found"],
    ]);
    assert.deepEqual([...r.diff.upstreams].sort(), ['u1', 'u2']);
    // a late report about a version no longer in force changes nothing
    store.apply(cs([{ kind: 'upstreams', id: 'u2', value: up(1982) }]));
    const stale: CompileFailure = { kind: 'upstreams', id: 'u2', modRevision: 1, reason: 'old' };
    assert.deepEqual(store.rejectCompileFailures([stale]), []);
    assert.ok(store.snapshot.upstreams.has('u2'));
  });

  test('a throwing listener does not stop the others', () => {
    const store = new ConfigStore();
    let reached = false;
    store.subscribe(() => {
      throw new Error('listener bug');
    });
    store.subscribe(() => {
      reached = true;
    });
    store.apply(cs([{ kind: 'upstreams', id: 'u', value: up() }]));
    assert.equal(reached, true);
  });
});

describe('Runtime: a compile failure costs only its object', () => {
  test('an upstream that does not compile (validator bypassed) is reported, keeps its previous target, and apply goes on', () => {
    const runtime = new Runtime('radixtree_uri');
    let snapshot = emptySnapshot('t');
    const put = (kind: 'routes' | 'upstreams', id: string, value: unknown, modRevision: number) => {
      const entry: StoredObject<unknown> = { id, modRevision, value };
      snapshot = { ...snapshot, [kind]: (snapshot[kind] as FrozenMap<StoredObject<unknown>>).update(new Map([[id, entry]])) };
      const diff = emptyDiff();
      diff[kind].add(id);
      return diff;
    };
    const apply = (diff: ReturnType<typeof emptyDiff>) => runtime.apply(snapshot, diff);
    assert.deepEqual(apply(put('upstreams', 'u', up(), 1)), []);
    assert.deepEqual(apply(put('routes', 'r', { uri: '/r', upstream_id: 'u' }, 2)), []);
    const failures = apply(put('upstreams', 'u', { nodes: { '127.0.0.1:80800': 1 } }, 3));
    assert.deepEqual(failures, [{ kind: 'upstreams', id: 'u', modRevision: 3, reason: 'upstreams/u: /nodes/127.0.0.1:80800: port must be 1-65535' }]);
    const match = runtime.matchRoute({ method: 'GET', path: '/r', host: 'h', headers: {}, remoteAddr: '127.0.0.1', query: '' } as never);
    assert.equal(match?.target.upstream?.nodes[0]!.port, 1980, 'the previous target keeps serving');
    // the same object through the validator: a rejection with the same reason
    const v = validateObject('upstreams', 'u', { nodes: { '127.0.0.1:80800': 1 } });
    assert.equal(v.ok ? 'ok' : v.rejection.reason, 'upstreams/u: /nodes/127.0.0.1:80800: port must be 1-65535');
  });
});

describe('worker restart backoff', () => {
  test('250 ms, doubling with each death within a minute of the previous one, up to 30 s; reset after a quiet minute', () => {
    const deaths: number[] = [];
    const delays = [0, 100, 200, 300, 400, 500, 600, 700, 800, 900].map((t) => restartDelay(deaths, t));
    assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    assert.equal(restartDelay(deaths, 900 + 60_001), 250);
  });
});
