import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { test } from 'node:test';
import { collectGarbage } from '../../src/server/heap.ts';

/** An object only a WeakRef holds (a WeakRef keeps its target until the current job ends: hence the tick). */
async function unreachable(make: () => object): Promise<WeakRef<object>> {
  const ref = new WeakRef(make());
  await tick();
  return ref;
}

test('collectGarbage runs a full collection (no --expose-gc needed): an unreachable object is gone after it', async () => {
  assert.equal((globalThis as { gc?: unknown }).gc, undefined, 'the test process runs without --expose-gc');
  const first = await unreachable(() => Array.from({ length: 100_000 }, (_, i) => i));
  const ms = collectGarbage();
  assert.equal(first.deref(), undefined);
  assert.ok(ms >= 0 && ms < 5000, String(ms));
  // and again, with the function kept
  const second = await unreachable(() => ({ large: 'x'.repeat(1_000_000) }));
  collectGarbage();
  assert.equal(second.deref(), undefined);
});
