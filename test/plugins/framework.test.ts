/**
 * The plugin framework through the gateway process, config from a real etcd: consumers and global
 * rules apply live, plugin_config ← service ← route merging, references and schema checks, the
 * enabled set of portico.yaml, and a user's own plugin from plugin_dirs (examples/plugins/tenant.ts)
 * that throws on some requests: 500 for those only, counted in /status.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { etcdctl, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

const EXAMPLES = path.resolve(import.meta.dirname, '../../examples/plugins');
const P = '/portico';

interface Reply {
  status: number;
  headers: Headers;
  json: Record<string, unknown> | undefined;
}

async function call(url: string, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json };
}

/** The header the upstream received (the echo upstream answers with what it got). */
function upstreamSaw(r: Reply, name: string): unknown {
  return (r.json?.headers as Record<string, unknown> | undefined)?.[name];
}

describe('plugin framework (etcd, both kinds of plugins)', () => {
  let etcd: EtcdProcess;
  let up: TestUpstream;
  let gw: GatewayProcess;
  const put = (key: string, value: unknown) => etcdctl(etcd.endpoint, 'put', `${P}/${key}`, JSON.stringify(value));
  const del = (key: string) => etcdctl(etcd.endpoint, 'del', `${P}/${key}`);

  before(async () => {
    etcd = await startEtcd();
    up = await startUpstream('up');
    await put('upstreams/u1', { nodes: { [up.address]: 1 } });
    await put('routes/auth', { uri: '/auth', upstream_id: 'u1', plugins: { 'key-auth': {} } });
    await put('routes/tenant', { uri: '/tenant', upstream_id: 'u1', plugins: { tenant: { allow: ['acme'] } } });
    gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl], prefix: P }, extra: { plugin_dirs: [EXAMPLES] } });
  });
  after(async () => {
    await gw?.cleanup();
    await up?.close();
    await etcd?.stop();
  });

  it('a consumer put in etcd: its key works on the next request; deleted: 401 again', async () => {
    assert.equal((await call(`${gw.url}/auth`, { apikey: 'k-jack' })).status, 401);
    await put('consumers/jack', { username: 'jack', plugins: { 'key-auth': { key: 'k-jack' } } });
    await waitUntil(async () => (await call(`${gw.url}/auth`, { apikey: 'k-jack' })).status === 200, 3000, 'the new consumer');
    const ok = await call(`${gw.url}/auth`, { apikey: 'k-jack' });
    assert.equal(upstreamSaw(ok, 'x-consumer-username'), 'jack');
    await del('consumers/jack');
    await waitUntil(async () => (await call(`${gw.url}/auth`, { apikey: 'k-jack' })).status === 401, 3000, 'the consumer gone');
    assert.equal((await gw.status()).counts.consumers, 0);
  });

  it("a consumer's own plugins join the chain once it is identified", async () => {
    await put('consumers/ann', { username: 'ann', plugins: { 'key-auth': { key: 'k-ann' }, tenant: { allow: ['globex'] } } });
    await waitUntil(async () => (await call(`${gw.url}/auth`, { apikey: 'k-ann', 'x-tenant': 'globex' })).status === 200, 3000, 'ann');
    // ann's tenant plugin runs on a route that has only key-auth
    assert.equal((await call(`${gw.url}/auth`, { apikey: 'k-ann', 'x-tenant': 'acme' })).status, 403);
    assert.equal((await call(`${gw.url}/auth`, { apikey: 'k-ann' })).status, 401);
    await del('consumers/ann');
  });

  it('a global rule applies to every route at once, and goes when deleted', async () => {
    await put('routes/open', { uri: '/open', upstream_id: 'u1' });
    await waitUntil(async () => (await call(`${gw.url}/open`)).status === 200, 3000, 'the open route');
    await put('global_rules/g1', { plugins: { tenant: { allow: ['acme'], header: 'X-Org' } } });
    await waitUntil(async () => (await call(`${gw.url}/open`)).status === 401, 3000, 'the global rule');
    const ok = await call(`${gw.url}/open`, { 'x-org': 'acme' });
    assert.equal(ok.status, 200);
    assert.equal(upstreamSaw(ok, 'x-tenant-checked'), 'acme');
    assert.equal(ok.headers.get('x-tenant'), 'acme', "the plugin's header_filter ran on the upstream's response");
    await del('global_rules/g1');
    await waitUntil(async () => (await call(`${gw.url}/open`)).status === 200, 3000, 'the global rule gone');
  });

  it('plugin_config ← service ← route: the route wins per plugin, the others fill in', async () => {
    await put('plugin_configs/pc1', { plugins: { tenant: { allow: ['from-plugin-config'] } } });
    await put('services/s1', { upstream_id: 'u1', plugins: { tenant: { allow: ['from-service'] } } });
    await put('routes/m1', { uri: '/m1', service_id: 's1', plugin_config_id: 'pc1' });
    await put('routes/m2', { uri: '/m2', service_id: 's1', plugin_config_id: 'pc1', plugins: { tenant: { allow: ['from-route'] } } });
    await put('routes/m3', { uri: '/m3', upstream_id: 'u1', plugin_config_id: 'pc1' });
    await waitUntil(async () => (await call(`${gw.url}/m3`, { 'x-tenant': 'from-plugin-config' })).status === 200, 3000, 'the routes');
    assert.equal((await call(`${gw.url}/m1`, { 'x-tenant': 'from-service' })).status, 200);
    assert.equal((await call(`${gw.url}/m1`, { 'x-tenant': 'from-plugin-config' })).status, 403);
    assert.equal((await call(`${gw.url}/m2`, { 'x-tenant': 'from-route' })).status, 200);
    assert.equal((await call(`${gw.url}/m2`, { 'x-tenant': 'from-service' })).status, 403);
    // a plugin_config change reaches the routes using it
    await put('plugin_configs/pc1', { plugins: { tenant: { allow: ['changed'] } } });
    await waitUntil(async () => (await call(`${gw.url}/m3`, { 'x-tenant': 'changed' })).status === 200, 3000, 'the plugin_config change');
  });

  it('bad plugin config is rejected object by object, with the plugin and field in the reason', async () => {
    await put('routes/bad1', { uri: '/bad1', upstream_id: 'u1', plugins: { 'no-such-plugin': {} } });
    await put('routes/bad2', { uri: '/bad2', upstream_id: 'u1', plugins: { 'key-auth': { header: 12 } } });
    await put('routes/bad3', { uri: '/bad3', upstream_id: 'u1', plugin_config_id: 'missing' });
    await put('consumers/bad4', { username: 'bad4', plugins: { 'key-auth': {} } });
    await put('global_rules/bad5', { plugins: { tenant: { allow: [] } } });
    await waitUntil(async () => (await gw.status()).rejected.length >= 5, 3000, 'five rejections');
    const reasons = (await gw.status()).rejected.map((r) => `${r.reason} [${r.code}]`).join('\n');
    assert.match(reasons, /routes\/bad1: \/plugins\/no-such-plugin: unknown plugin 'no-such-plugin' \[PORTICO_ERR_SCHEMA\]/);
    assert.match(reasons, /routes\/bad2: \/plugins\/key-auth\/header: must be string \[PORTICO_ERR_SCHEMA\]/);
    assert.match(reasons, /routes\/bad3: \/plugin_config_id: plugin_config 'missing' not found/);
    assert.match(reasons, /consumers\/bad4: \/plugins\/key-auth: must have required property 'key' \[PORTICO_ERR_SCHEMA\]/);
    assert.match(reasons, /global_rules\/bad5: \/plugins\/tenant\/allow: must NOT have fewer than 1 items \[PORTICO_ERR_SCHEMA\]/);
    // the rest is untouched
    assert.equal((await call(`${gw.url}/tenant`, { 'x-tenant': 'acme' })).status, 200);
    for (const k of ['routes/bad1', 'routes/bad2', 'routes/bad3', 'consumers/bad4', 'global_rules/bad5']) await del(k);
  });

  it("a user's plugin that throws answers 500 for that request only, counted in /status", async () => {
    const before = (await gw.status()).plugin_failures?.tenant ?? 0;
    const [ok, boom, ok2, missing, denied] = await Promise.all([
      call(`${gw.url}/tenant`, { 'x-tenant': 'acme' }),
      call(`${gw.url}/tenant`, { 'x-tenant': 'unavailable' }),
      call(`${gw.url}/tenant`, { 'x-tenant': 'acme' }),
      call(`${gw.url}/tenant`),
      call(`${gw.url}/tenant`, { 'x-tenant': 'initech' }),
    ]);
    assert.deepEqual([ok.status, boom.status, ok2.status, missing.status, denied.status], [200, 500, 200, 401, 403]);
    assert.equal(upstreamSaw(ok, 'x-tenant-checked'), 'acme');
    assert.deepEqual(missing.json, { message: 'Missing X-Tenant' });
    assert.equal((await gw.status()).plugin_failures?.tenant, before + 1);
    const metrics = await (await fetch(gw.statusUrl.replace(/\/status$/, '') + '/metrics')).text();
    assert.match(metrics, /portico_plugin_failures_total\{plugin="tenant"\} [1-9]/);
  });
});

describe('portico.yaml plugins: the enabled set', () => {
  it('an object using a plugin that is not enabled is rejected; the enabled ones work', async () => {
    const up = await startUpstream('up');
    const gw = await startGateway({
      routes: {
        routes: [
          { id: 'ka', uri: '/ka', plugins: { 'key-auth': {} }, upstream: { nodes: { [up.address]: 1 } } },
          { id: 'ba', uri: '/ba', plugins: { 'basic-auth': {} }, upstream: { nodes: { [up.address]: 1 } } },
        ],
      },
      extra: { plugins: ['key-auth'] },
    });
    try {
      const rejected = (await gw.status()).rejected;
      assert.equal(rejected.length, 1);
      assert.match(rejected[0]!.reason, /routes\/ba: \/plugins\/basic-auth: plugin 'basic-auth' is not enabled/);
      assert.equal((await call(`${gw.url}/ka`)).status, 401);
    } finally {
      await gw.cleanup();
      await up.close();
    }
  });
});

describe('plugin_dirs and the CLI', () => {
  const ROOT = path.resolve(import.meta.dirname, '../..');
  const portico = (...args: string[]): Promise<{ code: number; out: string }> =>
    new Promise((resolve) => {
      execFile(process.execPath, [path.join(ROOT, 'bin/portico.js'), ...args], { timeout: 30_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      );
    });
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'portico-plugins-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('portico validate knows the plugins of plugin_dirs and checks their configs', async () => {
    writeFileSync(path.join(dir, 'routes.yaml'), 'routes:\n  - { id: ok, uri: /ok, upstream: { nodes: { "127.0.0.1:1980": 1 } }, plugins: { tenant: { allow: [acme] } } }\n  - { id: bad, uri: /bad, upstream: { nodes: { "127.0.0.1:1980": 1 } }, plugins: { tenant: { allow: "acme" } } }\n');
    writeFileSync(path.join(dir, 'portico.yaml'), `plugin_dirs: [${JSON.stringify(EXAMPLES)}]\nconfig: { source: file, file: { path: routes.yaml } }\n`);
    const r = await portico('validate', path.join(dir, 'portico.yaml'));
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /routes\/bad: \/plugins\/tenant\/allow: must be array \[PORTICO_ERR_SCHEMA\]/);
    assert.match(r.out, /1 error\(s\); 1 routes/);
  });

  it('a plugin file that exports no plugin stops the start, with the file and the reason', async () => {
    const bad = path.join(dir, 'bad-plugins');
    mkdirSync(bad, { recursive: true });
    writeFileSync(path.join(bad, 'nothing.mjs'), 'export const x = 1;\n');
    writeFileSync(path.join(dir, 'portico-bad.yaml'), `plugin_dirs: [bad-plugins]\nproxy: { listen: ["127.0.0.1:0"] }\nstatus: { listen: "127.0.0.1:0" }\nconfig: { source: file, file: { path: routes.yaml } }\n`);
    const r = await portico('start', '--config', path.join(dir, 'portico-bad.yaml'));
    assert.equal(r.code, 1);
    assert.match(r.out, /plugin_dirs: .*nothing\.mjs exports no plugin .*\[PORTICO_ERR_CONFIG_INVALID\]/);
  });

  it('a plugin that names an existing plugin, or has no priority, is refused at start', async () => {
    const dup = path.join(dir, 'dup-plugins');
    mkdirSync(dup, { recursive: true });
    writeFileSync(path.join(dup, 'dup.mjs'), "export default { name: 'key-auth', priority: 1, schema: { type: 'object' } };\n");
    writeFileSync(path.join(dir, 'portico-dup.yaml'), `plugin_dirs: [dup-plugins]\nconfig: { source: file, file: { path: routes.yaml } }\n`);
    const r = await portico('validate', path.join(dir, 'portico-dup.yaml'));
    assert.equal(r.code, 1);
    assert.match(r.out, /plugin 'key-auth' from .*dup\.mjs: a plugin of that name already exists/);
  });
});
