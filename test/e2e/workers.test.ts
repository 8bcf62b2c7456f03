import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { get } from '../helpers/http.ts';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';
import { readFileSync } from 'node:fs';
import { YOUNG_GENERATION_FLAG, workerExecArgv } from '../../src/server/cluster.ts';


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

  test('workers run with a 2 MB young generation (YOUNG_GENERATION_FLAG) and the primary\'s own flags', async () => {
    const st = await gw.status();
    for (const w of st.workers!) {
      const argv = readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(argv.includes(YOUNG_GENERATION_FLAG), `worker ${w.pid}: ${argv.join(' ')}`);
      // the primary's node flags (those before its script) come along
      const primary = readFileSync(`/proc/${gw.pid}/cmdline`, 'utf8').split('\0');
      const script = primary.findIndex((a, i) => i > 0 && !a.startsWith('-'));
      for (const flag of primary.slice(1, script)) assert.ok(argv.includes(flag), flag);
      // its entry is the data plane's (server/worker-main), not the CLI
      assert.ok(argv.some((a) => /server\/worker-main\.(ts|js)$/.test(a)), argv.join(' '));
      assert.ok(!argv.includes('--config'), argv.join(' '));
    }
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

describe('worker node flags', () => {
  test('a young-generation size the operator chose (flag or NODE_OPTIONS) is kept, never overridden', () => {
    assert.deepEqual(workerExecArgv(['--import', 'tsx'], undefined), ['--import', 'tsx', YOUNG_GENERATION_FLAG]);
    assert.deepEqual(workerExecArgv([], ''), [YOUNG_GENERATION_FLAG]);
    assert.deepEqual(workerExecArgv(['--max-semi-space-size=16'], undefined), ['--max-semi-space-size=16']);
    assert.deepEqual(workerExecArgv(['--max_semi_space_size=8'], undefined), ['--max_semi_space_size=8']);
    assert.deepEqual(workerExecArgv([], '--enable-source-maps --max-semi-space-size=32'), []);
    assert.deepEqual(workerExecArgv([], '--max-old-space-size=512'), [YOUNG_GENERATION_FLAG]);
  });

  test('NODE_OPTIONS with a semi-space size: the workers get no flag of ours', async () => {
    const up = await startUpstream('up');
    const gw = await startGateway({ routes: { routes: [{ id: 'a', uri: '/a', upstream: { nodes: { [up.address]: 1 } } }] }, workers: 2, env: { NODE_OPTIONS: '--max-semi-space-size=8' } });
    try {
      const st = await gw.status();
      assert.equal(st.workers!.length, 2);
      for (const w of st.workers!) assert.ok(!readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0').includes(YOUNG_GENERATION_FLAG));
      assert.equal((await get(`${gw.url}/a`)).status, 200);
    } finally {
      await gw.cleanup();
      await up.close();
    }
  });
});
