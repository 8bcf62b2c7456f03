/**
 * Issue 10, "APISIX conformance gaps", as a user meets them: the real gateway (both proxy
 * transports) and the real `portico validate` CLI. The table tests of the rules themselves are in
 * test/config/apisix-conformance.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
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

for (const transport of ['socket', 'node'] as const) {
  // t/admin/upstream-array-nodes.t TEST 6-8 and t/admin/upstream2.t TEST 6-8: an upstream with no
  // nodes is accepted, a route may use it, and a request gets 503 ("no valid upstream node")
  describe(`empty nodes (${transport} transport): 503 until nodes arrive`, () => {
    let up: TestUpstream;
    let gw: GatewayProcess;
    const file = (filled: boolean) => ({
      upstreams: [
        { id: '1', nodes: filled ? { [up.address]: 1 } : [], type: 'roundrobin' },
        { id: 'map', nodes: {}, type: 'chash', hash_on: 'vars', key: 'remote_addr' },
      ],
      routes: [
        { id: '1', methods: ['GET'], upstream_id: '1', uri: '/index.html' },
        { id: 'map', upstream_id: 'map', uri: '/map' },
        { id: 'inline', upstream: { nodes: {} }, uri: '/inline' },
      ],
    });
    before(async () => {
      up = await startUpstream('up');
      gw = await startGateway({ routes: file(false), proxy: { transport } });
    });
    after(async () => {
      await gw?.cleanup();
      await up?.close();
    });

    test('accepted (no rejection), and every request is answered 503 with APISIX’s error body', async () => {
      assert.deepEqual((await gw.status()).rejected, []);
      for (const uri of ['/index.html', '/map', '/inline']) {
        const r = await get(`${gw.url}${uri}`);
        assert.equal(r.status, 503, uri);
        assert.equal(r.body, '{"error_msg":"503 Service Unavailable"}\n', uri);
      }
      assert.equal(up.requests.length, 0);
    });

    test('nodes written later are served at once', async () => {
      writeRoutes(gw.routesPath, file(true));
      await waitUntil(async () => (await get(`${gw.url}/index.html`)).status === 200, 5000, 'the filled upstream to serve');
      assert.equal((await get(`${gw.url}/map`)).status, 503, 'the other empty upstream still answers 503');
    });
  });
}

describe('routes file with an unknown top-level key, on a running gateway', () => {
  let up: TestUpstream;
  let gw: GatewayProcess;
  const good = () => ({ upstreams: [{ id: 'u', nodes: { [up.address]: 1 } }], routes: [{ id: 'r', uri: '/hello', upstream_id: 'u' }] });
  before(async () => {
    up = await startUpstream('up');
    gw = await startGateway({ routes: good() });
  });
  after(async () => {
    await gw?.cleanup();
    await up?.close();
  });

  test('a typo (`rotues:`) is reported in /status and the routes keep serving; the fix applies', async () => {
    assert.equal((await get(`${gw.url}/hello`)).status, 200);
    const before = (await gw.status()).revision;
    // read as the file's meaning, the typo would delete every route: the file is refused instead
    const { routes, ...rest } = good();
    writeRoutes(gw.routesPath, { ...rest, rotues: [...routes, { id: 'new', uri: '/new', upstream_id: 'u' }] });
    const st = await waitUntil(async () => {
      const s = await gw.status();
      return s.source_error ? s : undefined;
    }, 5000, 'source_error in /status');
    assert.equal(st.source_error!.code, 'PORTICO_ERR_PARSE');
    assert.match(st.source_error!.message, /unknown top-level key 'rotues' \(did you mean 'routes'\?\)/);
    assert.equal(st.revision, before);
    assert.equal((await get(`${gw.url}/hello`)).status, 200, 'the last good routes are still served');
    assert.equal((await get(`${gw.url}/new`)).status, 404);
    writeRoutes(gw.routesPath, { ...rest, routes: [...routes, { id: 'new', uri: '/new', upstream_id: 'u' }] });
    await waitUntil(async () => (await get(`${gw.url}/new`)).status === 200, 5000, 'the fixed file to be served');
    assert.equal((await gw.status()).source_error, undefined);
  });
});

describe('portico validate', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portico-conformance-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, doc: unknown) => {
    const file = path.join(dir, name);
    writeFileSync(file, typeof doc === 'string' ? doc : stringify(doc));
    return file;
  };

  test('an unknown top-level key: exit 1, one line naming it', async () => {
    const file = write('typo.yaml', 'upstreams:\n  - id: u\n    nodes: {"127.0.0.1:1980": 1}\nrotues:\n  - id: r\n    uri: /x\n    upstream_id: u\n');
    const r = await portico('validate', file);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.equal(
      r.stdout,
      `${file}: unknown top-level key 'rotues' (did you mean 'routes'?) (known: routes, services, upstreams, consumers, plugin_configs, global_rules, ssls, stream_routes) [PORTICO_ERR_PARSE]\n`,
    );
  });

  test('empty nodes: exit 0', async () => {
    const file = write('empty.yaml', { upstreams: [{ id: 'u', nodes: {} }, { id: 'v', nodes: [] }], routes: [{ id: 'r', uri: '/x', upstream_id: 'u' }] });
    const r = await portico('validate', file);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /OK: 1 routes, 2 upstreams, 0 services valid/);
  });

  test('labels, bare IPv6 hosts and a query string in a uri: exit 1, each reason naming its path', async () => {
    const file = write('bad.yaml', {
      upstreams: [
        { id: 'v6-list', nodes: [{ host: '::1', port: 1980, weight: 1 }] },
        { id: 'v6-map', nodes: { '::1:1980': 1 } },
        { id: 'ok', nodes: { '[::1]:1980': 1 }, labels: { env: 'production' } },
      ],
      routes: [
        { id: 'label', uri: '/l', upstream_id: 'ok', labels: { env: 'prod uction' } },
        { id: 'query', uri: '/a?b=1', upstream_id: 'ok' },
      ],
    });
    const r = await portico('validate', file);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.ok(lines.includes(`upstreams/v6-list: /nodes/0/host: IPv6 address must be enclosed with '[' and ']': write "[::1]" [PORTICO_ERR_SEMANTIC]`), r.stdout);
    assert.ok(lines.includes(`upstreams/v6-map: /nodes/::1:1980: IPv6 address must be enclosed with '[' and ']': write "[::1:1980]" or "[::1]:1980" [PORTICO_ERR_SEMANTIC]`), r.stdout);
    assert.ok(lines.includes('routes/label: /labels/env: must match pattern "^[^\\x00-\\x20\\x7f]+$" [PORTICO_ERR_SCHEMA]'), r.stdout);
    assert.ok(lines.some((l) => l.startsWith(`routes/query: /uri: '?' is matched literally here`) && l.includes('[["arg_b", "==", "1"]]')), r.stdout);
    assert.match(r.stdout, /4 error\(s\); 0 routes, 1 upstreams, 0 services valid/);
  });
});
