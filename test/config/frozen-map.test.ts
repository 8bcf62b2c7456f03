import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FrozenMap } from '../../src/config/frozen-map.ts';

test('FrozenMap behaves like a Map under random edits, and old versions never change', () => {
  let seed = 42;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  let frozen = FrozenMap.empty<number>();
  const model = new Map<string, number>();
  const versions: Array<[FrozenMap<number>, Map<string, number>]> = [];
  for (let step = 0; step < 3000; step++) {
    const edits = new Map<string, number | undefined>();
    for (let i = rand(5) + 1; i > 0; i--) {
      const key = `k${rand(400)}`;
      edits.set(key, rand(4) === 0 ? undefined : step);
    }
    frozen = frozen.update(edits);
    for (const [k, v] of edits) v === undefined ? model.delete(k) : model.set(k, v);
    if (step % 250 === 0) versions.push([frozen, new Map(model)]);
    assert.equal(frozen.size, model.size);
  }
  for (const [k, v] of model) assert.equal(frozen.get(k), v);
  assert.deepEqual(new Map(frozen), model);
  for (const [old, copy] of versions) assert.deepEqual(new Map(old.entries()), copy, 'an earlier version was mutated');
  assert.equal(frozen.update(new Map()), frozen);
});
