/**
 * Issue 6, item 1: with `workers: 2`, a worker that died on a bad snapshot was replaced every
 * 250 ms, forever, and died again. Compile failures no longer kill a worker; a worker that still
 * dies repeatedly is replaced after 250 ms, then 500 ms, 1 s, ... up to 30 s (each death within a
 * minute of the previous one doubles the delay), and the gateway says so in its log.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

let up: TestUpstream;
let gw: GatewayProcess;
before(async () => {
  up = await startUpstream('up');
  gw = await startGateway({ routes: { routes: [{ id: 'a', uri: '/a', upstream: { nodes: { [up.address]: 1 } } }] }, workers: 2 });
});
after(async () => {
  await gw?.cleanup();
  await up?.close();
});

test('a worker that keeps dying is replaced with a growing delay, not in a tight loop', async () => {
  const pids = async () => ((await gw.status()).workers ?? []).map((w) => w.pid);
  const replaced: number[] = [];
  for (let i = 0; i < 3; i++) {
    const [victim] = await pids();
    const killedAt = Date.now();
    process.kill(victim!, 'SIGKILL');
    await waitUntil(async () => {
      const st = await gw.status();
      const now = st.workers ?? [];
      return now.length === 2 && !now.some((w) => w.pid === victim) && now.every((w) => w.listening);
    }, 15_000, `replacement ${i + 1}`);
    replaced.push(Date.now() - killedAt);
  }
  const delays = [...gw.output().matchAll(/worker died; starting another in (\d+) ms/g)].map((m) => Number(m[1]));
  assert.deepEqual(delays, [250, 500, 1000], gw.output());
  // the third replacement waited its second, on top of the worker's start-up time
  assert.ok(replaced[2]! >= 1000, `replacement times ${replaced.join(', ')} ms`);
  assert.equal((await get(`${gw.url}/a`)).status, 200);
});
