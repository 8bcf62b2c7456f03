import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { get } from '../helpers/http.ts';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { YOUNG_GENERATION_FLAG, workerExecArgv } from '../../src/server/worker-fork.ts';
import { SnapshotHandoff } from '../../src/server/snapshot-handoff.ts';
import { updateOf } from '../../src/config/replica.ts';
import { emptySnapshot } from '../../src/config/snapshot.ts';


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

describe("a worker's first snapshot, handed over in a file (server/snapshot-handoff.ts)", () => {
  let up: TestUpstream;
  const many = () => ({ routes: Array.from({ length: 300 }, (_, i) => ({ id: `r${i}`, uri: `/r/${i}`, upstream: { nodes: { [up.address]: 1 } } })) });
  before(async () => (up = await startUpstream('up')));
  after(async () => up?.close());

  test('one file per snapshot for the workers greeted with it, removed once each applied it or exited', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-handoff-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = dir;
    const handoff = new SnapshotHandoff();
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    try {
      const first = emptySnapshot('test');
      const second = { ...emptySnapshot('test'), revision: 2 };
      const a = handoff.fileFor(first, 1)!;
      assert.equal(handoff.fileFor(first, 2), a, 'the same snapshot: the same file');
      assert.equal(path.dirname(a), dir);
      assert.deepEqual(JSON.parse(readFileSync(a, 'utf8')), JSON.parse(JSON.stringify(updateOf(first, undefined))));
      const b = handoff.fileFor(second, 3)!;
      assert.notEqual(b, a);
      handoff.done(1);
      assert.ok(existsSync(a), 'worker 2 has still to read it');
      handoff.done(2);
      assert.ok(!existsSync(a), 'removed once both applied it');
      assert.ok(existsSync(b));
      handoff.close();
      assert.ok(!existsSync(b), 'close removes the rest');
    } finally {
      handoff.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a gateway hands its workers the first snapshot in a file, removed once applied; a replacement worker gets its own', async () => {
    const tmp = mkdtempSync(path.join(os.tmpdir(), 'portico-handoff-'));
    const created: string[] = [];
    const watcher = watch(tmp, (_event, name) => {
      if (name?.startsWith('portico-snapshot-') && existsSync(path.join(tmp, name)) && !created.includes(name)) created.push(name);
    });
    const gw = await startGateway({ routes: many(), workers: 2, env: { TMPDIR: tmp } });
    try {
      // one file when both workers were greeted together, two when the second said hello after the first had applied its own
      assert.ok(created.length >= 1 && created.length <= 2, created.join(', '));
      for (const name of created) assert.match(name, new RegExp(`^portico-snapshot-${gw.pid}-`));
      const initial = created.length;
      const left = () => readdirSync(tmp).filter((f) => f.startsWith('portico-snapshot-'));
      await waitUntil(() => left().length === 0, 3000, 'the file removed');
      for (const i of [0, 150, 299]) assert.equal((await get(`${gw.url}/r/${i}`)).status, 200);
      assert.doesNotMatch(gw.output(), /over IPC/);

      const [victim] = await pids(gw);
      process.kill(victim!, 'SIGKILL');
      await waitUntil(async () => {
        const st = await gw.status();
        return st.workers!.length === 2 && !st.workers!.some((w) => w.pid === victim) && st.workers!.every((w) => w.listening && w.revision === st.revision);
      }, 10_000, 'a replacement worker');
      assert.equal(created.length, initial + 1, 'the replacement read a file of its own');
      await waitUntil(() => left().length === 0, 3000, 'that file removed');
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => get(`${gw.url}/r/${i * 15}`)));
      assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
    } finally {
      watcher.close();
      await gw.cleanup();
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('when no file can be written, the snapshot goes over IPC', async () => {
    // a file where the temp folder should be: nothing can be created in it, even as root (tsx, which
    // runs the sources here, caches in the temp folder unless told not to)
    const notDir = path.join(mkdtempSync(path.join(os.tmpdir(), 'portico-handoff-')), 'file');
    writeFileSync(notDir, '');
    const gw = await startGateway({ routes: many(), workers: 2, env: { TMPDIR: notDir, TSX_DISABLE_CACHE: '1' } });
    try {
      assert.match(gw.output(), /cannot write the snapshot for the workers to a file; sending it over IPC/);
      const st = await gw.status();
      assert.ok(st.workers!.every((w) => w.listening && w.revision === st.revision));
      for (const i of [0, 150, 299]) assert.equal((await get(`${gw.url}/r/${i}`)).status, 200);
    } finally {
      await gw.cleanup();
      rmSync(path.dirname(notDir), { recursive: true, force: true });
    }
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
