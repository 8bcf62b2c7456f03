import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { get } from '../helpers/http.ts';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';


const pids = async (gw: GatewayProcess) => ((await gw.status()).workers ?? []).map((w) => w.pid).sort();

describe('proxy.workers: 2', () => {
  let up: TestUpstream;
  let slow: TestUpstream;
  let gw: GatewayProcess;
  const routes = (extra: object[] = []) => ({
    routes: [
      { id: 'a', uri: '/a', upstream: { nodes: { [up.address]: 1 } } },
      { id: 'slow', uri: '/slow', upstream: { nodes: { [slow.address]: 1 } } },
      ...extra,
    ],
  });

  before(async () => {
    up = await startUpstream('up');
    slow = await startUpstream('slow', (req, res) => {
      req.resume();
      setTimeout(() => res.end('finished'), 800);
    });
    gw = await startGateway({ routes: routes(), workers: 2 });
  });
  after(async () => {
    await gw?.cleanup();
    await up?.close();
    await slow?.close();
  });

  test('one config pipeline, two worker processes serving on one port', async () => {
    const st = await gw.status();
    assert.equal(st.ready, true);
    assert.equal(st.workers!.length, 2);
    assert.ok(st.workers!.every((w) => w.listening && w.revision === st.revision));
    assert.equal(new Set(st.workers!.map((w) => w.pid)).size, 2);
    assert.ok(!st.workers!.some((w) => w.pid === gw.pid), 'workers are separate processes');
    for (let i = 0; i < 20; i++) assert.equal((await get(`${gw.url}/a`)).status, 200);
  });

  test('a live change reaches every worker', async () => {
    writeRoutes(gw.routesPath, routes([{ id: 'b', uri: '/b', upstream: { nodes: { [up.address]: 1 } } }]));
    await waitUntil(async () => {
      const st = await gw.status();
      return st.counts.routes === 3 && st.workers!.every((w) => w.revision === st.revision);
    }, 3000, 'both workers at the new revision');
    // 40 fresh connections: with two workers accepting, both are exercised
    const results = await Promise.all(Array.from({ length: 40 }, () => get(`${gw.url}/b`)));
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
  });

  test('a worker that dies is replaced and brought up to date', async () => {
    const [victim] = await pids(gw);
    process.kill(victim!, 'SIGKILL');
    await waitUntil(async () => {
      const now = await pids(gw);
      const st = await gw.status();
      return now.length === 2 && !now.includes(victim!) && st.workers!.every((w) => w.listening && w.revision === st.revision);
    }, 10_000, 'a replacement worker');
    const results = await Promise.all(Array.from({ length: 40 }, () => get(`${gw.url}/b`)));
    assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
  });

  test('SIGTERM drains in-flight requests in the workers and exits 0', async () => {
    const inflight = get(`${gw.url}/slow`);
    await waitUntil(() => slow.requests.length === 1, 5000, 'request at the upstream');
    const workers = await pids(gw);
    const code = gw.stop('SIGTERM');
    const res = await inflight;
    assert.equal(res.status, 200);
    assert.equal(res.body, 'finished');
    assert.equal(await code, 0);
    for (const pid of workers) assert.throws(() => process.kill(pid, 0), /ESRCH/, `worker ${pid} exited`);
  });
});
