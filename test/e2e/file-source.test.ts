import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

function portico(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(ROOT, 'bin/portico.js'), ...args], { timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('YAML file source, end to end', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let gw: GatewayProcess;
  const routes = () => ({
    upstreams: [{ id: 'a', nodes: { [a.address]: 1 } }, { id: 'b', nodes: { [b.address]: 1 } }],
    routes: [{ id: 'r1', uri: '/hello', upstream_id: 'a' }],
  });

  before(async () => {
    a = await startUpstream('a');
    b = await startUpstream('b');
    gw = await startGateway({ routes: routes() });
  });
  after(async () => {
    await gw?.cleanup();
    await a?.close();
    await b?.close();
  });

  test('serves the routes of the file; unknown paths get APISIX 404 JSON', async () => {
    const res = await fetch(`${gw.url}/hello`);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { upstream: string }).upstream, 'a');
    const miss = await fetch(`${gw.url}/nope`);
    assert.equal(miss.status, 404);
    assert.deepEqual(await miss.json(), { error_msg: '404 Route Not Found' });
  });

  test('an edit (atomic rename, like editors) is applied within 200 ms', async () => {
    const next = routes();
    next.routes.push({ id: 'r2', uri: '/live', upstream_id: 'b' });
    const t0 = performance.now();
    writeRoutes(gw.routesPath, next);
    await waitUntil(async () => (await fetch(`${gw.url}/live`)).status === 200, 2000, '/live to be served', 2);
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 200, `applied after ${elapsed.toFixed(1)} ms`);
    const st = await gw.status();
    assert.equal(st.source, 'file');
    assert.equal(st.counts.routes, 2);
    assert.match(st.source_detail ?? '', /^[0-9a-f]{16}$/);
  });

  test('an in-place write (no rename) is applied too', async () => {
    const next = routes();
    next.routes.push({ id: 'r3', uri: '/inplace', upstream_id: 'a' });
    writeFileSync(gw.routesPath, JSON.stringify(next)); // JSON is YAML
    await waitUntil(async () => (await fetch(`${gw.url}/inplace`)).status === 200, 2000, '/inplace to be served');
  });

  test('a YAML syntax error keeps the last good config and is reported in /status', async () => {
    const before = (await gw.status()).revision;
    const good = readFileSync(gw.routesPath, 'utf8');
    writeFileSync(gw.routesPath, 'routes: [ {id: r1, uri: /hello\n');
    const st = await waitUntil(async () => {
      const s = await gw.status();
      return s.source_error ? s : undefined;
    }, 2000, 'source_error in /status');
    assert.equal(st.source_error!.code, 'PORTICO_ERR_PARSE');
    assert.equal(st.revision, before);
    assert.equal(st.stale, true);
    assert.equal(st.connected, false);
    assert.equal((await fetch(`${gw.url}/inplace`)).status, 200, 'last good config still served');
    // reverting the broken edit to exactly what is in force makes the source healthy again
    writeFileSync(gw.routesPath, good);
    const healed = await waitUntil(async () => {
      const s = await gw.status();
      return s.source_error === undefined ? s : undefined;
    }, 2000, 'source_error cleared');
    assert.equal(healed.connected, true);
    assert.equal(healed.stale, false);
    assert.equal(healed.revision, before, 'nothing re-applied');
  });

  test('a schema-invalid object is rejected with its reason; its previous version keeps serving', async () => {
    const next = routes();
    next.routes = [{ id: 'r1', uri: '/hello', upstream_id: 'a', methods: ['FETCH'] } as never, { id: 'r4', uri: '/dangling', upstream_id: 'zzz' }];
    writeRoutes(gw.routesPath, next);
    const st = await waitUntil(async () => {
      const s = await gw.status();
      return s.rejected.length === 2 ? s : undefined;
    }, 2000, 'two rejections');
    assert.equal(st.source_error, undefined, 'the file itself is fine now');
    const byId = Object.fromEntries(st.rejected.map((r) => [r.id, r]));
    assert.equal(byId.r1!.code, 'PORTICO_ERR_SCHEMA');
    assert.match(byId.r1!.reason, /^routes\/r1: \/methods\/0: must be one of/);
    assert.equal(byId.r4!.code, 'PORTICO_ERR_REFERENCE');
    assert.equal(byId.r4!.reason, "routes/r4: /upstream_id: upstream 'zzz' not found");
    assert.equal((await fetch(`${gw.url}/hello`)).status, 200, 'previous r1 still served');
    assert.equal((await fetch(`${gw.url}/inplace`)).status, 404, 'r3 was removed from the file');
    assert.ok(st.rejections_total.PORTICO_ERR_SCHEMA! >= 1);
  });

  test('the last good snapshot is on disk', async () => {
    await waitUntil(() => {
      const snap = JSON.parse(readFileSync(gw.snapshotPath, 'utf8')) as { objects: { routes: Array<{ id: string }> } };
      return snap.objects.routes.some((r) => r.id === 'r1');
    }, 2000, 'snapshot file');
  });
});

describe('YAML file source broken at start', () => {
  test('the snapshot from disk is served, and fixing the file applies it', async () => {
    const a = await startUpstream('a');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-broken-start-'));
    let gw: GatewayProcess | undefined;
    try {
      const upstreams = [{ id: 'a', nodes: { [a.address]: 1 } }];
      gw = await startGateway({ dir, routes: { upstreams, routes: [{ id: 'r1', uri: '/hello', upstream_id: 'a' }] } });
      await gw.stop(); // flushes the snapshot
      writeFileSync(gw.routesPath, 'routes: [ {id: r1, uri: /hello\n');
      gw = await startGateway({ dir });
      const stale = await gw.status();
      assert.equal(stale.from_snapshot, true);
      assert.equal(stale.source_error?.code, 'PORTICO_ERR_PARSE');
      assert.equal((await fetch(`${gw.url}/hello`)).status, 200, 'the snapshot is served');
      writeRoutes(gw.routesPath, { upstreams, routes: [{ id: 'r1', uri: '/hello', upstream_id: 'a' }, { id: 'r2', uri: '/fixed', upstream_id: 'a' }] });
      await waitUntil(async () => (await fetch(`${gw!.url}/fixed`)).status === 200, 5000, 'the fixed file to be served');
      const st = await gw.status();
      assert.equal(st.from_snapshot, false);
      assert.equal(st.stale, false);
      assert.equal(st.source_error, undefined);
    } finally {
      await gw?.cleanup();
      await a.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('portico validate', () => {
  test('exit 0 and a summary for a valid file', async () => {
    const r = await portico('validate', path.join(ROOT, 'conf/routes.yaml'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /OK: 3 routes, 1 upstreams, 0 services, 1 consumers, 0 plugin_configs, 0 global_rules valid/);
  });

  test('a portico.yaml is checked together with the routes file it names', async () => {
    const r = await portico('validate', path.join(ROOT, 'conf/portico.yaml'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /gateway config OK/);
  });

  test('exit 1 with each error path and reason', async () => {
    const dir = (await import('node:fs')).mkdtempSync(path.join((await import('node:os')).tmpdir(), 'portico-validate-'));
    const file = path.join(dir, 'routes.yaml');
    writeFileSync(
      file,
      ['routes:', '  - id: 1', '    uri: /a', '    upstream: { nodes: { "a:80": -1 } }', '  - id: 2', '    uri: /b', '    upstream_id: missing', '  - uri: /c'].join('\n'),
    );
    const r = await portico('validate', file);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^routes\/1: \/upstream\/nodes\/a:80: must be >= 0 \[PORTICO_ERR_SCHEMA\]$/m);
    assert.match(r.stdout, /^routes\/2: \/upstream_id: upstream 'missing' not found \[PORTICO_ERR_REFERENCE\]$/m);
    assert.match(r.stdout, /routes\[2\]: missing 'id' \[PORTICO_ERR_PARSE\]/);
    writeFileSync(file, 'routes: [\n');
    const bad = await portico('validate', file);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /routes\.yaml/);
  });
});
