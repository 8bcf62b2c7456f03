/**
 * Issue 6, item 1: an upstream node with a port no socket can use (80800, 0) passed validation and
 * then threw while the runtime compiled it: the file-source gateway died, etcd workers crash-looped
 * and wrote the object into the snapshot file, a fresh etcd instance never became ready. Now the
 * validator runs the runtime's own compile, so such an object is a rejection like any other.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { etcdForSuite } from '../helpers/etcd-suite.ts';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

function portico(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/portico.js'), ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

const BAD_PORT_REASON = 'upstreams/bad: /nodes/127.0.0.1:80800: port must be 1-65535';
const rejectionOf = async (gw: GatewayProcess, kind: string, id: string) =>
  (await gw.status()).rejected.find((r) => r.kind === kind && r.id === id);

describe('a node port no socket can use is rejected, never compiled', () => {
  let up: TestUpstream;
  before(async () => {
    up = await startUpstream('up');
  });
  after(async () => {
    await up?.close();
  });

  test('portico validate exits 1 with the reason', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-badport-'));
    try {
      const file = path.join(dir, 'routes.yaml');
      writeFileSync(
        file,
        stringify({
          upstreams: [
            { id: 'bad', nodes: { '127.0.0.1:80800': 1 } },
            { id: 'zero', nodes: { '127.0.0.1:0': 1 } },
            { id: 'list', nodes: [{ host: '127.0.0.1', port: 8080, weight: 1 }, { host: '[::1]:x', weight: 1 }] },
          ],
          routes: [{ id: 'ok', uri: '/ok', upstream: { nodes: { [up.address]: 1 } } }],
        }),
      );
      const r = await portico('validate', file);
      assert.equal(r.code, 1, r.out);
      assert.ok(r.out.includes(`${BAD_PORT_REASON} [PORTICO_ERR_SEMANTIC]`), r.out);
      assert.ok(r.out.includes('upstreams/zero: /nodes/127.0.0.1:0: port must be 1-65535 [PORTICO_ERR_SEMANTIC]'), r.out);
      assert.match(r.out, /upstreams\/list: \/nodes\/1\/host: /);
      assert.match(r.out, /3 error\(s\); 1 routes, 0 upstreams, 0 services valid/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('file source: saving the file does not kill the gateway; other routes keep serving; the rejection is in /status', async () => {
    const good = { routes: [{ id: 'ok', uri: '/ok', upstream: { nodes: { [up.address]: 1 } } }] };
    const gw = await startGateway({ routes: good });
    try {
      assert.equal((await get(`${gw.url}/ok`)).status, 200);
      writeRoutes(gw.routesPath, {
        ...good,
        upstreams: [{ id: 'bad', nodes: { '127.0.0.1:80800': 1 } }],
        routes: [...good.routes, { id: 'later', uri: '/later', upstream: { nodes: { [up.address]: 1 } } }],
      });
      const rej = await waitUntil(() => rejectionOf(gw, 'upstreams', 'bad'), 5000, 'the bad upstream rejected');
      assert.equal(rej.reason, BAD_PORT_REASON);
      assert.equal(rej.code, 'PORTICO_ERR_SEMANTIC');
      assert.equal(gw.child.exitCode, null, `gateway alive\n${gw.output()}`);
      assert.equal((await get(`${gw.url}/ok`)).status, 200);
      assert.equal((await get(`${gw.url}/later`)).status, 200, 'the rest of the change applied');
      // restarted on the same file (and snapshot), it is ready and routes as before
      await gw.stop();
      const again = await startGateway({ dir: gw.dir, routes: undefined });
      try {
        assert.equal((await get(`${again.url}/ok`)).status, 200);
        assert.equal((await get(`${again.url}/later`)).status, 200);
        assert.equal((await rejectionOf(again, 'upstreams', 'bad'))?.reason, BAD_PORT_REASON);
      } finally {
        await again.stop();
      }
    } finally {
      await gw.cleanup();
      rmSync(gw.dir, { recursive: true, force: true });
    }
  });

  describe('etcd source', () => {
    const suite = etcdForSuite();

    test('one process: a new instance started with the bad key present becomes ready and serves', async () => {
      const prefix = '/one';
      await suite.client.put(`${prefix}/upstreams/bad`, JSON.stringify({ nodes: { '127.0.0.1:80800': 1 } }));
      await suite.client.put(`${prefix}/routes/ok`, JSON.stringify({ uri: '/ok', upstream: { nodes: { [up.address]: 1 } } }));
      const gw = await startGateway({ etcd: { endpoints: [suite.etcd.clientUrl], prefix } });
      try {
        assert.equal((await gw.status()).ready, true);
        assert.equal((await get(`${gw.url}/ok`)).status, 200);
        assert.equal((await rejectionOf(gw, 'upstreams', 'bad'))?.reason, BAD_PORT_REASON);
        // a live put of another bad port (0) is rejected too, and the gateway keeps applying changes
        await suite.client.put(`${prefix}/upstreams/zero`, JSON.stringify({ nodes: { '127.0.0.1:0': 1 } }));
        await suite.client.put(`${prefix}/routes/ok2`, JSON.stringify({ uri: '/ok2', upstream: { nodes: { [up.address]: 1 } } }));
        await waitUntil(async () => (await get(`${gw.url}/ok2`)).status === 200, 5000, '/ok2 served');
        assert.equal((await rejectionOf(gw, 'upstreams', 'zero'))?.code, 'PORTICO_ERR_SEMANTIC');
      } finally {
        await gw.cleanup();
      }
    });

    test('workers: 2: no crash loop, requests served, the snapshot file is not poisoned', async () => {
      const prefix = '/two';
      await suite.client.put(`${prefix}/routes/ok`, JSON.stringify({ uri: '/ok', upstream: { nodes: { [up.address]: 1 } } }));
      const gw = await startGateway({ etcd: { endpoints: [suite.etcd.clientUrl], prefix }, workers: 2 });
      try {
        const pids = (await gw.status()).workers!.map((w) => w.pid).sort();
        await suite.client.put(`${prefix}/upstreams/bad`, JSON.stringify({ nodes: { '127.0.0.1:80800': 1 } }));
        await suite.client.put(`${prefix}/routes/after`, JSON.stringify({ uri: '/after', upstream: { nodes: { [up.address]: 1 } } }));
        const rej = await waitUntil(() => rejectionOf(gw, 'upstreams', 'bad'), 5000, 'the bad upstream rejected');
        assert.equal(rej.reason, BAD_PORT_REASON);
        await waitUntil(async () => (await get(`${gw.url}/after`)).status === 200, 5000, '/after served');
        // give a crashing worker time to show itself
        await sleep(1000);
        const st = await gw.status();
        assert.deepEqual(st.workers!.map((w) => w.pid).sort(), pids, `no worker restarted\n${gw.output()}`);
        assert.equal(st.ready, true);
        const results = await Promise.all(Array.from({ length: 20 }, () => get(`${gw.url}/ok`)));
        assert.deepEqual(new Set(results.map((r) => r.status)), new Set([200]));
        // a graceful stop flushes the snapshot file: it holds what is in force, without the bad object
        assert.equal(await gw.stop(), 0);
        const snap = JSON.parse(readFileSync(gw.snapshotPath, 'utf8')) as { objects: Record<string, Array<{ id: string }>> };
        assert.deepEqual(snap.objects.upstreams, []);
        assert.deepEqual(snap.objects.routes!.map((r) => r.id).sort(), ['after', 'ok']);
      } finally {
        await gw.cleanup();
      }
    });
  });
});
