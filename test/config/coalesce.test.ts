import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LatestWriter } from '../../src/coalesce.ts';
import { sleep } from '../helpers/wait.ts';

test('LatestWriter: a burst costs one write of the newest value, after the burst', async () => {
  const written: number[] = [];
  const w = new LatestWriter<number>(async (v) => void written.push(v), () => {}, 30, 1000);
  for (let i = 1; i <= 10; i++) {
    w.schedule(i);
    await sleep(5);
  }
  assert.deepEqual(written, [], 'nothing written while changes keep coming');
  await sleep(60);
  assert.deepEqual(written, [10]);
});

test('LatestWriter: a steady stream is still written, at the latest maxDelay after a change', async () => {
  const written: number[] = [];
  const w = new LatestWriter<number>(async (v) => void written.push(v), () => {}, 50, 100);
  const t0 = Date.now();
  let i = 0;
  while (Date.now() - t0 < 350) {
    w.schedule(++i);
    await sleep(10);
  }
  assert.ok(written.length >= 2, `written ${written.length} times during a 350 ms stream`);
  assert.ok(written.every((v, k) => k === 0 || v > written[k - 1]!), 'newer values only');
  await w.flush();
  assert.equal(written.at(-1), i, 'flush writes the newest value');
});

test('LatestWriter: flush writes what is pending now, even a value that came during a write', async () => {
  const written: number[] = [];
  let release!: () => void;
  const w = new LatestWriter<number>(
    async (v) => {
      written.push(v);
      if (v === 1) await new Promise<void>((r) => (release = r));
    },
    () => {},
    1000,
    5000,
  );
  w.schedule(1);
  const flushed = w.flush();
  await sleep(5);
  w.schedule(2);
  release();
  await flushed;
  assert.deepEqual(written, [1, 2]);
});

test('LatestWriter: a failed write is reported and the next value still goes out', async () => {
  const errors: string[] = [];
  const written: number[] = [];
  const w = new LatestWriter<number>(
    async (v) => {
      if (v === 1) throw new Error('disk full');
      written.push(v);
    },
    (e) => errors.push(e.message),
    5,
  );
  w.schedule(1);
  await w.flush();
  w.schedule(2);
  await w.flush();
  assert.deepEqual(errors, ['disk full']);
  assert.deepEqual(written, [2]);
  assert.equal(w.lastError, undefined);
});
