import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LazyTimer } from '../../src/proxy/http1/lazy-timer.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

/** A LazyTimer of `ms` whose expiries are recorded (ms since `t0`). */
function recorder(ms: number) {
  const t0 = performance.now();
  const expired: number[] = [];
  const timer = new LazyTimer<number[]>(ms, (list) => list.push(performance.now() - t0), expired);
  return { timer, expired, t0 };
}

test('LazyTimer expires once, ms after restart()', async () => {
  const { timer, expired } = recorder(80);
  timer.restart();
  await waitUntil(() => expired.length === 1, 2000, 'the expiry');
  assert.ok(expired[0]! >= 79, `expired after ${expired[0]} ms`);
  await sleep(200);
  assert.equal(expired.length, 1, 'expired again without a restart');
});

test('LazyTimer: a restart postpones the expiry to ms after the last restart (never earlier)', async () => {
  const { timer, expired, t0 } = recorder(100);
  timer.restart();
  await sleep(40);
  timer.restart();
  await sleep(40);
  const last = performance.now() - t0;
  timer.restart(); // the node timer armed at 0 fires at ~100 and must wait until ~last + 100
  await waitUntil(() => expired.length === 1, 2000, 'the expiry');
  assert.ok(expired[0]! >= last + 99, `expired at ${expired[0]!.toFixed(1)} ms, last restart at ${last.toFixed(1)} ms`);
  await sleep(250);
  assert.equal(expired.length, 1);
});

test('LazyTimer: stop() and clear() prevent the expiry; restart() after either runs again', async () => {
  const stopped = recorder(50);
  stopped.timer.restart();
  stopped.timer.stop();
  const cleared = recorder(50);
  cleared.timer.restart();
  cleared.timer.clear();
  await sleep(200);
  assert.equal(stopped.expired.length, 0);
  assert.equal(cleared.expired.length, 0);
  stopped.timer.restart();
  cleared.timer.restart();
  await waitUntil(() => stopped.expired.length === 1 && cleared.expired.length === 1, 2000, 'both expiries');
});

test('LazyTimer: restarted after expiring, it expires again', async () => {
  const { timer, expired } = recorder(40);
  timer.restart();
  await waitUntil(() => expired.length === 1, 2000, 'the first expiry');
  timer.restart();
  await waitUntil(() => expired.length === 2, 2000, 'the second expiry');
  assert.ok(expired[1]! - expired[0]! >= 39);
});
