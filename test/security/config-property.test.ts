/**
 * Issue 6, item 1, the general guard: whatever the validator accepts, the runtime compiles.
 * Objects are generated from the schemas (valid and near-valid, seeded); for every one the
 * validator accepts, compiling a snapshot that holds it in a Runtime must report no failure, in
 * the router mode it was validated for (and in every mode when validated without one, as the
 * `validate` CLI does for a routes file alone). The validator itself must never throw.
 *
 * A few seconds by default; PORTICO_FUZZ_SECONDS=60 runs longer, PORTICO_FUZZ_SEED=n replays a run.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Kind } from '../../src/config/changeset.ts';
import type { FrozenMap } from '../../src/config/frozen-map.ts';
import { RouteSchema } from '../../src/config/schema/route.ts';
import { ServiceSchema } from '../../src/config/schema/service.ts';
import { UpstreamSchema } from '../../src/config/schema/upstream.ts';
import { emptyDiff, emptySnapshot, type Snapshot, type StoredObject } from '../../src/config/snapshot.ts';
import { validateObject } from '../../src/config/validate.ts';
import { Runtime } from '../../src/runtime/runtime.ts';
import type { RouterMode } from '../../src/router/types.ts';
import { generate, seededRng } from './config-generator.ts';

const MODES: RouterMode[] = ['radixtree_host_uri', 'radixtree_uri', 'radixtree_uri_with_parameter'];
const SCHEMAS = { routes: RouteSchema, services: ServiceSchema, upstreams: UpstreamSchema } as const;
const SECONDS = Number(process.env.PORTICO_FUZZ_SECONDS ?? 3);
const SEED = Number(process.env.PORTICO_FUZZ_SEED ?? 20260601);
const MAX_OBJECTS = SECONDS > 3 ? Infinity : 20_000;

/**
 * A snapshot holding the object, plus a route that uses it when it is an upstream or a service
 * (a service's hosts and upstream are compiled through its routes).
 */
function snapshotWith(kind: Kind, id: string, value: unknown): { snapshot: Snapshot; diff: ReturnType<typeof emptyDiff> } {
  const base = emptySnapshot('property');
  const diff = emptyDiff();
  const add = (s: Snapshot, k: Kind, i: string, v: unknown): Snapshot => {
    diff[k].add(i);
    const entry: StoredObject<unknown> = { id: i, modRevision: 1, value: v };
    return { ...s, [k]: (s[k] as FrozenMap<StoredObject<unknown>>).update(new Map([[i, entry]])) };
  };
  let snapshot = add(base, kind, id, value);
  if (kind === 'upstreams') snapshot = add(snapshot, 'routes', 'user', { uri: '/user', upstream_id: id });
  if (kind === 'services') snapshot = add(snapshot, 'routes', 'user', { uri: '/user', service_id: id });
  return { snapshot, diff };
}

/** What compiling fails on; a throw (the pre-fix runtime) counts as a failure too. */
function compileFailures(mode: RouterMode, kind: Kind, id: string, value: unknown): string[] {
  const { snapshot, diff } = snapshotWith(kind, id, value);
  try {
    const failures = new Runtime(mode).apply(snapshot, diff) as unknown as Array<{ reason: string }> | undefined;
    return (failures ?? []).map((f) => f.reason);
  } catch (err) {
    return [`threw: ${(err as Error).message}`];
  }
}

test('validate ok => the runtime compiles it (generated valid and near-valid objects)', () => {
  const rng = seededRng(SEED);
  const deadline = Date.now() + SECONDS * 1000;
  const counts = { generated: 0, valid: { routes: 0, services: 0, upstreams: 0 } as Record<Kind, number> };
  while (Date.now() < deadline && counts.generated < MAX_OBJECTS) {
    const kind = (['routes', 'services', 'upstreams'] as const)[counts.generated % 3]!;
    const near = rng() < 0.5 ? 0.08 : 0;
    const value = generate(SCHEMAS[kind] as never, rng, { nearValid: near }) as Record<string, unknown>;
    // a route needs a uri and something to do; leave a few without, near-valid
    if (kind === 'routes' && rng() < 0.9) {
      if (value.uri === undefined && value.uris === undefined) value.uri = '/';
      if (!value.upstream && value.upstream_id === undefined && value.service_id === undefined && !value.plugins) value.upstream_id = 1;
    }
    const id = String((value as { id?: unknown }).id ?? `g${counts.generated}`);
    counts.generated++;
    for (const mode of [undefined, ...MODES]) {
      let verdict: ReturnType<typeof validateObject>;
      try {
        verdict = (validateObject as (k: Kind, i: string, v: unknown, m?: RouterMode) => ReturnType<typeof validateObject>)(kind, id, value, mode);
      } catch (err) {
        assert.fail(`seed ${SEED}: the validator threw (${(err as Error).message}) on ${kind}/${id} ${JSON.stringify(value)}`);
      }
      if (!verdict.ok) continue;
      if (mode === undefined) counts.valid[kind]++;
      for (const m of mode ? [mode] : MODES) {
        const failures = compileFailures(m, kind, id, value);
        assert.deepEqual(
          failures,
          [],
          `seed ${SEED}: validated${mode ? ` for ${mode}` : ''} but does not compile in ${m}: ${kind}/${id} ${JSON.stringify(value)}`,
        );
      }
    }
  }
  // the generator must produce enough valid objects of every kind for the property to mean something
  for (const kind of ['routes', 'services', 'upstreams'] as const) {
    assert.ok(counts.valid[kind] >= 50, `only ${counts.valid[kind]} valid ${kind} out of ${counts.generated} generated`);
  }
  console.log(`property: ${counts.generated} objects generated in ${SECONDS}s, valid: ${JSON.stringify(counts.valid)} (seed ${SEED})`);
});
