/**
 * Plugins with `proxy.workers: 2`: every worker runs the chains, and the primary's /status counts
 * the failures of all of them (a user's plugin that throws, examples/plugins/tenant.ts).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

const EXAMPLES = path.resolve(import.meta.dirname, '../../examples/plugins');

describe('plugins with two workers', () => {
  let up: TestUpstream;
  let gw: GatewayProcess;
  before(async () => {
    up = await startUpstream('up');
    gw = await startGateway({
      workers: 2,
      routes: { routes: [{ id: 't', uri: '/t', upstream: { nodes: { [up.address]: 1 } }, plugins: { tenant: { allow: ['acme'] } } }] },
      extra: { plugin_dirs: [EXAMPLES] },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await up?.close();
  });

  it('answers the same in every worker, and /status sums the failures of both', async () => {
    // new connections: the kernel spreads them over the two workers
    const statuses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => fetch(`${gw.url}/t`, { headers: { 'x-tenant': i % 2 === 0 ? 'acme' : 'unavailable', connection: 'close' } }).then((r) => r.status)),
    );
    assert.deepEqual(statuses.filter((s) => s === 200).length, 10);
    assert.deepEqual(statuses.filter((s) => s === 500).length, 10);
    const pids = new Set((await gw.status()).workers?.map((w) => w.pid));
    assert.equal(pids.size, 2);
    await waitUntil(async () => (await gw.status()).plugin_failures?.tenant === 10, 5000, 'the primary to count the 10 failures of both workers');
  });
});
