/**
 * The gateway process against a REAL etcd that gets killed, compacted, wiped, replaced by a
 * cluster member, or is down when the gateway starts. Everything is asserted the way a user sees
 * it: HTTP responses from the proxy and the /status JSON.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { etcdctl, freePort, startEtcd, startEtcdCluster, startTcpProxy, type EtcdProcess } from '../helpers/etcd.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';
import type { StatusReport } from '../../src/observability/status.ts';

const P = '/portico';

/** Processes and folders of one test, released in reverse order whatever happened. */
class Cleanup {
  private readonly fns: Array<() => unknown> = [];
  add(fn: () => unknown): void {
    this.fns.push(fn);
  }
  async run(): Promise<void> {
    for (const fn of this.fns.reverse()) {
      try {
        await fn();
      } catch {
        /* release the rest */
      }
    }
  }
}

/** Runs `body` with a fresh Cleanup, always released. */
function scoped(body: (c: Cleanup) => Promise<void>): () => Promise<void> {
  return async () => {
    const c = new Cleanup();
    try {
      await body(c);
    } finally {
      await c.run();
    }
  };
}

const routeJson = (uri: string, up: TestUpstream) => JSON.stringify({ uri, upstream: { nodes: { [up.address]: 1 } } });

/** etcdctl put; resolves with the revision of the write. */
async function put(endpoint: string, key: string, value: string): Promise<number> {
  const out = await etcdctl(endpoint, '-w', 'json', 'put', key, value);
  return Number((JSON.parse(out) as { header: { revision: number | string } }).header.revision);
}

async function del(endpoint: string, key: string): Promise<void> {
  const out = await etcdctl(endpoint, 'del', key);
  assert.equal(out.trim(), '1', `deleted ${key}`);
}

/** etcd's current revision (header of a count-only range). */
async function etcdRevision(endpoint: string): Promise<number> {
  const out = await etcdctl(endpoint, '-w', 'json', 'get', '/portico-test/no-such-key');
  return Number((JSON.parse(out) as { header: { revision: number | string } }).header.revision);
}

/** Status code of GET gw.url + path (0 for a connection error). */
async function statusOf(gw: GatewayProcess, p: string): Promise<number> {
  try {
    const res = await fetch(`${gw.url}${p}`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

async function served(gw: GatewayProcess, paths: string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const p of paths) out[p] = await statusOf(gw, p);
  return out;
}

/** Waits until every path answers with its expected status; on timeout, fails with the diff. */
async function expectServed(gw: GatewayProcess, expected: Record<string, number>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const actual = await served(gw, Object.keys(expected));
    if (Object.entries(expected).every(([p, s]) => actual[p] === s)) return;
    if (Date.now() > deadline) assert.deepEqual(actual, expected, `${what} (after ${timeoutMs} ms)`);
    await sleep(25);
  }
}

/** Waits until /status satisfies `check`; resolves with that report. */
function statusWhen(gw: GatewayProcess, check: (s: StatusReport) => boolean, timeoutMs: number, what: string): Promise<StatusReport> {
  let last: StatusReport | undefined;
  return waitUntil(
    async () => {
      last = await gw.status();
      return check(last) ? last : undefined;
    },
    timeoutMs,
    what,
    25,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nlast /status: ${JSON.stringify(last)}`);
  });
}

async function readyCode(gw: GatewayProcess): Promise<number> {
  const res = await fetch(`${gw.statusUrl}/status/ready`);
  await res.arrayBuffer();
  return res.status;
}

const connectedAndFresh = (s: StatusReport) => s.ready && s.connected && !s.stale && !s.from_snapshot;

describe('etcd resilience, end to end (gateway process + real etcd)', () => {
  test('etcd SIGKILLed and restarted on the same data dir: old config served meanwhile, every change applied after', { timeout: 40_000 }, scoped(async (c) => {
    const up = await startUpstream('u');
    c.add(() => up.close());
    const etcd = await startEtcd();
    c.add(() => etcd.stop());
    const ep = etcd.endpoint;
    for (const id of ['a', 'b', 'c']) await put(ep, `${P}/routes/${id}`, routeJson(`/kill/${id}`, up));
    const gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl] } });
    c.add(() => gw.cleanup());
    await expectServed(gw, { '/kill/a': 200, '/kill/b': 200, '/kill/c': 200, '/kill/d': 404 }, 5000, 'initial routes');

    // changes right before the kill, not waited for: seen live or on resume, never lost
    await put(ep, `${P}/routes/d`, routeJson('/kill/d', up));
    await del(ep, `${P}/routes/b`);
    await put(ep, `${P}/routes/c`, routeJson('/kill/c2', up));
    await etcd.kill('SIGKILL');

    const down = await statusWhen(gw, (s) => !s.connected, 8000, 'connected:false after the kill');
    assert.equal(down.stale, true);
    assert.equal(down.ready, true, 'still ready: the last config keeps serving');
    assert.match(down.source_error?.code ?? '', /^PORTICO_ERR_ETCD/);
    assert.equal(await readyCode(gw), 200);
    assert.equal(await statusOf(gw, '/kill/a'), 200, 'unchanged route still served while etcd is down');

    await etcd.restart();
    // changes right after the restart
    await del(ep, `${P}/routes/a`);
    const last = await put(ep, `${P}/routes/e`, routeJson('/kill/e', up));

    await expectServed(
      gw,
      { '/kill/a': 404, '/kill/b': 404, '/kill/c': 404, '/kill/c2': 200, '/kill/d': 200, '/kill/e': 200 },
      15_000,
      'every change made around the kill applied',
    );
    const st = await statusWhen(gw, connectedAndFresh, 10_000, 'connected and fresh again');
    assert.ok(st.revision >= last, `revision ${st.revision} >= ${last}`);
    assert.equal(st.counts.routes, 3);
    assert.equal(st.source_error, undefined);
    assert.deepEqual(st.rejected, []);
  }));

  test('compacted while the gateway was cut off: relist shows deletions, updates and additions', { timeout: 40_000 }, scoped(async (c) => {
    const up = await startUpstream('u');
    c.add(() => up.close());
    const etcd = await startEtcd();
    c.add(() => etcd.stop());
    const proxy = await startTcpProxy(etcd.clientPort);
    c.add(() => proxy.close());
    const ep = etcd.endpoint;
    for (const id of ['keep', 'gone', 'changed']) await put(ep, `${P}/routes/${id}`, routeJson(`/cmp/${id}`, up));
    const gw = await startGateway({ etcd: { endpoints: [proxy.url] } });
    c.add(() => gw.cleanup());
    await expectServed(gw, { '/cmp/keep': 200, '/cmp/gone': 200, '/cmp/changed': 200 }, 5000, 'initial routes');

    proxy.setMode('refuse');
    await statusWhen(gw, (s) => !s.connected && s.stale, 8000, 'disconnected behind the proxy');
    await del(ep, `${P}/routes/gone`);
    await put(ep, `${P}/routes/changed`, routeJson('/cmp/changed2', up));
    await put(ep, `${P}/routes/new`, routeJson('/cmp/new', up));
    const rev = await etcdRevision(ep);
    await etcdctl(ep, 'compact', String(rev));
    // nothing changed for the user while cut off
    assert.deepEqual(await served(gw, ['/cmp/keep', '/cmp/gone', '/cmp/changed', '/cmp/new']), {
      '/cmp/keep': 200,
      '/cmp/gone': 200,
      '/cmp/changed': 200,
      '/cmp/new': 404,
    });
    proxy.setMode('pass');

    await expectServed(
      gw,
      { '/cmp/keep': 200, '/cmp/gone': 404, '/cmp/changed': 404, '/cmp/changed2': 200, '/cmp/new': 200 },
      15_000,
      'state after the relist equals etcd',
    );
    const st = await statusWhen(gw, connectedAndFresh, 10_000, 'connected and fresh again');
    assert.ok(st.revision >= rev, `revision ${st.revision} >= ${rev}`);
    assert.equal(st.counts.routes, 3);
    assert.match(gw.output(), /compacted past our revision: relisting/);
    // and the watch goes on after the relist
    await put(ep, `${P}/routes/after`, routeJson('/cmp/after', up));
    await expectServed(gw, { '/cmp/after': 200 }, 5000, 'a change after the relist');
  }));

  /**
   * The gateway reaches etcd through a proxy so the swap happens while it is cut off: the new etcd
   * already holds its content when the gateway comes back (a relist with objects, not an empty
   * relist followed by watch events).
   */
  async function wipeScenario(c: Cleanup, freshContent: (ep: string, up: TestUpstream) => Promise<void>) {
    const up = await startUpstream('u');
    c.add(() => up.close());
    const old = await startEtcd();
    let oldStopped = false;
    c.add(() => (oldStopped ? undefined : old.stop()));
    const proxy = await startTcpProxy(old.clientPort);
    c.add(() => proxy.close());
    assert.equal(await put(old.endpoint, `${P}/routes/1`, routeJson('/wipe/one', up)), 2);
    await put(old.endpoint, `${P}/routes/2`, routeJson('/wipe/two', up));
    for (let i = 0; i < 10; i++) await put(old.endpoint, `${P}/routes/3`, routeJson('/wipe/three', up));
    const gw = await startGateway({ etcd: { endpoints: [proxy.url] } });
    c.add(() => gw.cleanup());
    await expectServed(gw, { '/wipe/one': 200, '/wipe/two': 200, '/wipe/three': 200 }, 5000, 'initial routes');
    const before = (await gw.status()).revision;

    proxy.setMode('refuse');
    await statusWhen(gw, (s) => !s.connected, 8000, 'disconnected');
    await old.stop();
    oldStopped = true;
    const fresh = await startEtcd({ clientPort: old.clientPort });
    c.add(() => fresh.stop());
    await freshContent(fresh.endpoint, up);
    proxy.setMode('pass');
    return { gw, fresh, up, before };
  }

  test('etcd wiped (new data dir, same client port) with different content: gateway equals the new etcd at a lower revision', { timeout: 40_000 }, scoped(async (c) => {
    const { gw, fresh, up, before } = await wipeScenario(c, async (ep, up) => {
      await put(ep, `${P}/routes/5`, routeJson('/wipe/five', up));
      await put(ep, `${P}/routes/6`, routeJson('/wipe/six', up));
    });
    await expectServed(
      gw,
      { '/wipe/one': 404, '/wipe/two': 404, '/wipe/three': 404, '/wipe/five': 200, '/wipe/six': 200 },
      15_000,
      'state equals the wiped etcd',
    );
    const st = await statusWhen(gw, connectedAndFresh, 10_000, 'connected and fresh again');
    assert.ok(st.revision < before, `revision went down: ${st.revision} < ${before}`);
    assert.equal(st.counts.routes, 2);
    assert.match(gw.output(), /revision went backwards/);
    await put(fresh.endpoint, `${P}/routes/7`, routeJson('/wipe/seven', up));
    await expectServed(gw, { '/wipe/seven': 200 }, 5000, 'the watch goes on on the new etcd');
  }));

  test(
    'etcd wiped: an id re-created at the same mod_revision with other content is applied',
    { timeout: 40_000 },
    scoped(async (c) => {
      const { gw } = await wipeScenario(c, async (ep, up) => {
        // routes/1 again, at the same mod_revision as the old routes/1 (2), with another uri
        assert.equal(await put(ep, `${P}/routes/1`, routeJson('/wipe/uno', up)), 2);
      });
      await expectServed(
        gw,
        { '/wipe/one': 404, '/wipe/two': 404, '/wipe/three': 404, '/wipe/uno': 200 },
        5000,
        'state equals the wiped etcd',
      );
    }),
  );

  test('3-member cluster: SIGKILL the member in use under load → no failed request, updates continue', { timeout: 60_000 }, scoped(async (c) => {
    const up = await startUpstream('u');
    c.add(() => up.close());
    const cluster = await startEtcdCluster(3);
    c.add(() => cluster.stop());
    const [m0, m1] = cluster.members as [EtcdProcess, EtcdProcess, EtcdProcess];
    await put(m1.endpoint, `${P}/routes/1`, routeJson('/ha/1', up));
    const gw = await startGateway({ etcd: { endpoints: cluster.clientUrls } });
    c.add(() => gw.cleanup());
    await expectServed(gw, { '/ha/1': 200 }, 5000, 'initial route');
    assert.doesNotMatch(gw.output(), /etcd disconnected/);

    const codes = new Map<number, number>();
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const s = await statusOf(gw, '/ha/1');
        codes.set(s, (codes.get(s) ?? 0) + 1);
      }
    };
    const load = Promise.all(Array.from({ length: 4 }, worker));
    await sleep(1000);
    await m0.kill('SIGKILL');
    await sleep(2500);
    stop = true;
    await load;
    const total = [...codes.values()].reduce((a, b) => a + b, 0);
    assert.deepEqual([...codes.keys()], [200], `every response 200: ${JSON.stringify(Object.fromEntries(codes))}`);
    assert.ok(total > 200, `${total} requests`);

    // the gateway was watching m0 (the first endpoint): it saw it go
    await waitUntil(() => gw.output().includes('etcd disconnected'), 8000, 'disconnect logged');
    const line = gw.output().split('\n').find((l) => l.includes('etcd disconnected'))!;
    assert.ok(line.includes(m0.clientUrl), line);

    // the first proposal after losing the leader may be dropped during the election: retry like a user
    await waitUntil(
      () => etcdctl(m1.endpoint, '--command-timeout=1s', 'put', `${P}/routes/2`, routeJson('/ha/2', up)),
      10_000,
      'put through m1',
      100,
    );
    await expectServed(gw, { '/ha/1': 200, '/ha/2': 200 }, 10_000, 'a route put after the kill is live');
    const st = await statusWhen(gw, connectedAndFresh, 10_000, 'connected and fresh through another member');
    assert.equal(st.counts.routes, 2);
  }));

  test('gateway restarted while etcd is down: serves the on-disk snapshot (stale), converges when etcd is back', { timeout: 60_000 }, scoped(async (c) => {
    const up = await startUpstream('u');
    c.add(() => up.close());
    const etcd = await startEtcd();
    c.add(() => etcd.stop());
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-gw-snap-'));
    c.add(() => rmSync(dir, { recursive: true, force: true }));
    const ep = etcd.endpoint;
    for (const id of ['a', 'b']) await put(ep, `${P}/routes/${id}`, routeJson(`/snap/${id}`, up));

    const gw1 = await startGateway({ etcd: { endpoints: [etcd.clientUrl] }, dir });
    c.add(() => gw1.cleanup());
    await expectServed(gw1, { '/snap/a': 200, '/snap/b': 200 }, 5000, 'initial routes');
    await waitUntil(
      () => {
        const snap = JSON.parse(readFileSync(gw1.snapshotPath, 'utf8')) as { objects: { routes: Array<{ id: string }> } };
        const ids = snap.objects.routes.map((r) => r.id).sort();
        return ids.join() === 'a,b';
      },
      5000,
      'snapshot file with routes a and b',
      25,
    );
    assert.equal(await gw1.stop(), 0);
    await etcd.kill('SIGKILL');

    const gw2 = await startGateway({ etcd: { endpoints: [etcd.clientUrl] }, dir, noWaitReady: true });
    c.add(() => gw2.cleanup());
    const st = await statusWhen(gw2, (s) => s.ready, 10_000, 'ready from the snapshot');
    assert.equal(st.stale, true);
    assert.equal(st.from_snapshot, true);
    assert.equal(st.connected, false);
    assert.equal(st.counts.routes, 2);
    assert.equal(await readyCode(gw2), 200);
    assert.deepEqual(await served(gw2, ['/snap/a', '/snap/b', '/snap/c']), { '/snap/a': 200, '/snap/b': 200, '/snap/c': 404 });

    await etcd.restart();
    await del(ep, `${P}/routes/a`);
    await put(ep, `${P}/routes/c`, routeJson('/snap/c', up));
    await expectServed(gw2, { '/snap/a': 404, '/snap/b': 200, '/snap/c': 200 }, 15_000, 'converged with etcd');
    const fresh = await statusWhen(gw2, connectedAndFresh, 10_000, 'connected, not stale, not from the snapshot');
    assert.equal(fresh.counts.routes, 2);
  }));

  test('gateway started with etcd down and no snapshot: not ready, 404s, until etcd comes up', { timeout: 40_000 }, scoped(async (c) => {
    const up = await startUpstream('u');
    c.add(() => up.close());
    const port = await freePort();
    const gw = await startGateway({ etcd: { endpoints: [`http://127.0.0.1:${port}`] }, noWaitReady: true });
    c.add(() => gw.cleanup());
    // give it a few failed attempts
    await sleep(500);
    const st = await gw.status();
    assert.equal(st.ready, false);
    assert.equal(st.stale, true);
    assert.equal(st.connected, false);
    assert.equal(st.from_snapshot, false);
    assert.equal(st.counts.routes, 0);
    assert.equal(await readyCode(gw), 503);
    const miss = await fetch(`${gw.url}/late/1`);
    assert.equal(miss.status, 404);
    assert.deepEqual(await miss.json(), { error_msg: '404 Route Not Found' });

    const etcd = await startEtcd({ clientPort: port });
    c.add(() => etcd.stop());
    await put(etcd.endpoint, `${P}/routes/1`, routeJson('/late/1', up));
    await waitUntil(async () => (await readyCode(gw)) === 200, 15_000, '/status/ready 200', 25);
    await expectServed(gw, { '/late/1': 200 }, 10_000, 'route served once etcd is up');
    const fresh = await statusWhen(gw, connectedAndFresh, 10_000, 'connected and fresh');
    assert.equal(fresh.counts.routes, 1);
  }));
});
