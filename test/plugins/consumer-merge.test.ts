/**
 * A consumer's own plugins join the chain once an auth plugin identified it — also when the auth
 * plugin runs as a global rule on a route that has no plugins of its own.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

const EXAMPLES = path.resolve(import.meta.dirname, '../../examples/plugins');

describe('consumer plugins on a route without plugins', () => {
  let up: TestUpstream;
  let gw: GatewayProcess;
  before(async () => {
    up = await startUpstream('up');
    gw = await startGateway({
      routes: {
        routes: [{ id: 'bare', uri: '/bare', upstream: { nodes: { [up.address]: 1 } } }],
        global_rules: [{ id: 'auth', plugins: { 'key-auth': {} } }],
        consumers: [
          { username: 'ann', plugins: { 'key-auth': { key: 'k-ann' }, tenant: { allow: ['acme'] } } },
          { username: 'bob', plugins: { 'key-auth': { key: 'k-bob' } } },
        ],
      },
      extra: { plugin_dirs: [EXAMPLES] },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await up?.close();
  });

  it("ann's tenant plugin applies to her requests only", async () => {
    const status = async (headers: Record<string, string>) => (await fetch(`${gw.url}/bare`, { headers })).status;
    assert.equal(await status({}), 401);
    assert.equal(await status({ apikey: 'k-ann' }), 401, "ann's tenant plugin: no X-Tenant");
    assert.equal(await status({ apikey: 'k-ann', 'x-tenant': 'initech' }), 403);
    assert.equal(await status({ apikey: 'k-ann', 'x-tenant': 'acme' }), 200);
    assert.equal(await status({ apikey: 'k-bob' }), 200, 'bob has no tenant plugin');
  });
});
