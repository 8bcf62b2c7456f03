import assert from 'node:assert/strict';
import http, { type ServerResponse } from 'node:http';
import { after, describe, test } from 'node:test';
import { waitUntil } from '../helpers/wait.ts';
import { gatewayWithUpstream } from './send.ts';

/*
 * limit-conn through the real gateway: an upstream that holds requests to /…/slow until the test
 * releases them, so requests are in progress exactly as long as the test wants.
 */

describe('limit-conn', () => {
  /** held responses of the slow upstream, by request url */
  const held = new Map<string, ServerResponse>();

  function release(url: string): void {
    const res = held.get(url);
    assert.ok(res, `upstream holds ${url}`);
    held.delete(url);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('released');
  }

  // held answers are dropped before the gateway stops (hooks run in the order they are registered)
  after(() => {
    for (const res of held.values()) res.destroy();
  });
  const rig = gatewayWithUpstream(
    (up) => {
      const upstream = { nodes: { [up.address]: 1 } };
      const route = (id: string, conf: Record<string, unknown>) => ({ id, uri: `/${id}/*`, plugins: { 'limit-conn': conf }, upstream });
      return {
        routes: {
          routes: [
            route('one', { conn: 1, burst: 0, default_conn_delay: 0.1, key: 'remote_addr' }),
            route('burst', { conn: 1, burst: 1, default_conn_delay: 0.3, only_use_default_delay: true, key: 'remote_addr' }),
            route('msg', { conn: 1, burst: 0, default_conn_delay: 0.1, key: 'http_x_user', rejected_code: 429, rejected_msg: 'busy' }),
            route('gone', { conn: 1, burst: 0, default_conn_delay: 0.1, key: 'remote_addr' }),
            // schema violations
            route('bad-conn', { conn: 0, burst: 0, default_conn_delay: 0.1, key: 'remote_addr' }),
            route('no-delay', { conn: 1, burst: 0, key: 'remote_addr' }),
            route('bad-policy', { conn: 1, burst: 0, default_conn_delay: 0.1, key: 'remote_addr', policy: 'redis', redis_host: '127.0.0.1' }),
          ],
        },
      };
    },
    {
      name: 'slow',
      handler: (req, res) => {
        req.resume();
        if (req.url!.includes('slow')) held.set(req.url!, res);
        else res.writeHead(200, { 'content-type': 'text/plain' }).end('fast');
      },
    },
  );

  const waitHeld = (url: string) => waitUntil(() => held.has(url), 3000, `upstream to hold ${url}`);

  test('conn 1 burst 0: a second concurrent request is rejected; once the first ends, a new one passes', async () => {
    const first = fetch(`${rig.gw.url}/one/slow1`);
    await waitHeld('/one/slow1');
    const t0 = performance.now();
    const second = await fetch(`${rig.gw.url}/one/fast`);
    assert.equal(second.status, 503);
    assert.ok(performance.now() - t0 < 300, 'rejected at once');
    release('/one/slow1');
    const r1 = await first;
    assert.equal(r1.status, 200);
    assert.equal(await r1.text(), 'released');
    // the log phase releases the slot as the response ends; allow it a moment
    await waitUntil(async () => (await fetch(`${rig.gw.url}/one/fast`)).status === 200, 1000, 'slot released', 20);
  });

  test('burst 1: the request over conn waits default_conn_delay, one more is rejected', async () => {
    const first = fetch(`${rig.gw.url}/burst/slow1`);
    await waitHeld('/burst/slow1');
    const t0 = performance.now();
    const delayed = fetch(`${rig.gw.url}/burst/fast`).then(async (r) => ({ status: r.status, ms: performance.now() - t0, body: await r.text() }));
    await new Promise((r) => setTimeout(r, 50));
    const third = await fetch(`${rig.gw.url}/burst/fast`);
    assert.equal(third.status, 503, 'conn + burst in progress: rejected');
    const d = await delayed;
    assert.equal(d.status, 200, d.body);
    assert.ok(d.ms >= 280 && d.ms < 800, `delayed ~300 ms: ${d.ms} ms`);
    release('/burst/slow1');
    assert.equal((await first).status, 200);
  });

  test('rejected_code and rejected_msg; key http_x_user counts clients apart', async () => {
    const alice = fetch(`${rig.gw.url}/msg/slow-alice`, { headers: { 'x-user': 'alice' } });
    await waitHeld('/msg/slow-alice');
    const r = await fetch(`${rig.gw.url}/msg/fast`, { headers: { 'x-user': 'alice' } });
    assert.equal(r.status, 429);
    assert.deepEqual(await r.json(), { error_msg: 'busy' });
    assert.equal((await fetch(`${rig.gw.url}/msg/fast`, { headers: { 'x-user': 'bob' } })).status, 200);
    release('/msg/slow-alice');
    assert.equal((await alice).status, 200);
  });

  /** a request on its own connection, cut by the client while the upstream holds it */
  async function leave(url: string, how: 'reset' | 'close'): Promise<void> {
    const req = http.get(url, { agent: false });
    req.on('error', () => {});
    await waitHeld(new URL(url).pathname);
    if (how === 'reset') req.socket!.resetAndDestroy();
    else req.destroy();
  }

  test('a client that resets mid-request frees its slot at once', async () => {
    await leave(`${rig.gw.url}/gone/slow-rst`, 'reset');
    // the upstream still holds the request: only the client's leaving can free the slot
    await waitUntil(async () => (await fetch(`${rig.gw.url}/gone/fast`)).status === 200, 3000, 'slot freed by the log phase', 50);
  });

  test('a client that closes (FIN) mid-request frees its slot, at the latest when the upstream answers', async () => {
    await leave(`${rig.gw.url}/gone/slow-fin`, 'close');
    // the socket transport takes a FIN after a complete request as a half-close (the answer is
    // still written, then log runs); the node transport ends the request at once
    await new Promise((r) => setTimeout(r, 100));
    if (held.has('/gone/slow-fin')) release('/gone/slow-fin');
    await waitUntil(async () => (await fetch(`${rig.gw.url}/gone/fast`)).status === 200, 3000, 'slot freed by the log phase', 50);
  });

  test('schema violations are rejected with the field', async () => {
    const st = await rig.gw.status();
    const reason = (id: string) => st.rejected.find((r) => r.id === id)?.reason ?? '(not rejected)';
    assert.match(reason('bad-conn'), /\/plugins\/limit-conn\/conn: must be > 0/);
    assert.match(reason('no-delay'), /\/plugins\/limit-conn: must have required property 'default_conn_delay'/);
    assert.match(reason('bad-policy'), /\/plugins\/limit-conn\/policy: redis is not supported/);
    for (const ok of ['one', 'burst', 'msg']) assert.equal(reason(ok), '(not rejected)', ok);
  });
});
