import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gatewayWithUpstream, pluginRoute } from './send.ts';

/*
 * limit-req through the real gateway: bursts of concurrent requests, each timed from the moment
 * the burst was sent, show which requests were delayed (and by how much) and which were rejected.
 */

interface Timed {
  status: number;
  /** ms from the burst's start to the answer */
  ms: number;
  body: string;
}

async function burst(url: string, n: number, headers: Record<string, string> = {}): Promise<Timed[]> {
  const t0 = performance.now();
  const answers = await Promise.all(
    Array.from({ length: n }, async () => {
      const res = await fetch(url, { headers });
      const body = await res.text();
      return { status: res.status, ms: performance.now() - t0, body };
    }),
  );
  return answers.sort((x, y) => x.ms - y.ms);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('limit-req', () => {
  const rig = gatewayWithUpstream((up) => {
    const route = pluginRoute('limit-req', up.address);
    return {
      routes: {
        routes: [
          route('delay', { rate: 2, burst: 2, key: 'remote_addr' }),
          route('nodelay', { rate: 2, burst: 2, key: 'remote_addr', nodelay: true }),
          route('msg', { rate: 1, burst: 0, key: 'http_x_user', rejected_code: 429, rejected_msg: 'slow down' }),
          // schema violations
          route('bad-rate', { rate: 0, burst: 1, key: 'remote_addr' }),
          route('bad-burst', { rate: 1, burst: -1, key: 'remote_addr' }),
          route('no-key', { rate: 1, burst: 1 }),
          route('bad-policy', { rate: 1, burst: 1, key: 'remote_addr', policy: 'redis', redis_host: '127.0.0.1' }),
          route('bad-key-type', { rate: 1, burst: 1, key: 'remote_addr', key_type: 'constant' }),
        ],
      },
    };
  });

  test('rate 2 burst 2: the excess waits excess/rate (0.5 s, 1 s), beyond the burst 503', async () => {
    const answers = await burst(`${rig.gw.url}/delay`, 4);
    const ok = answers.filter((a) => a.status === 200);
    const rejected = answers.filter((a) => a.status !== 200);
    assert.equal(ok.length, 3, JSON.stringify(answers));
    assert.deepEqual(rejected.map((r) => r.status), [503]);
    assert.ok(rejected[0]!.ms < 400, `the rejection is immediate: ${rejected[0]!.ms} ms`);
    assert.ok(ok[0]!.ms < 400, `the first is not delayed: ${ok[0]!.ms} ms`);
    assert.ok(ok[1]!.ms >= 450 && ok[1]!.ms < 950, `the second waits ~500 ms: ${ok[1]!.ms} ms`);
    assert.ok(ok[2]!.ms >= 950 && ok[2]!.ms < 1500, `the third waits ~1000 ms: ${ok[2]!.ms} ms`);
  });

  test('nodelay: the same burst is answered at once, beyond the burst 503', async () => {
    const answers = await burst(`${rig.gw.url}/nodelay`, 4);
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 200, 200, 503]);
    for (const a of answers) assert.ok(a.ms < 400, `not delayed: ${a.ms} ms`);
    // the bucket drains at 2/s: 1.6 s later (excess 2 - 3.2 < 0) it takes a full burst again
    await sleep(1600);
    assert.deepEqual((await burst(`${rig.gw.url}/nodelay`, 4)).map((a) => a.status).sort(), [200, 200, 200, 503]);
  });

  test('rejected_code and rejected_msg; key http_x_user counts clients apart', async () => {
    assert.equal((await fetch(`${rig.gw.url}/msg`, { headers: { 'x-user': 'alice' } })).status, 200);
    const r = await fetch(`${rig.gw.url}/msg`, { headers: { 'x-user': 'alice' } });
    assert.equal(r.status, 429);
    assert.deepEqual(await r.json(), { error_msg: 'slow down' });
    assert.equal((await fetch(`${rig.gw.url}/msg`, { headers: { 'x-user': 'bob' } })).status, 200);
  });

  test('schema violations are rejected with the field', async () => {
    const st = await rig.gw.status();
    const reason = (id: string) => st.rejected.find((r) => r.id === id)?.reason ?? '(not rejected)';
    assert.match(reason('bad-rate'), /\/plugins\/limit-req\/rate: must be > 0/);
    assert.match(reason('bad-burst'), /\/plugins\/limit-req\/burst: must be >= 0/);
    assert.match(reason('no-key'), /\/plugins\/limit-req: must have required property 'key'/);
    assert.match(reason('bad-policy'), /\/plugins\/limit-req\/policy: redis is not supported/);
    assert.match(reason('bad-key-type'), /\/plugins\/limit-req\/key_type: must be one of "var", "var_combination"/);
    for (const ok of ['delay', 'nodelay', 'msg']) assert.equal(reason(ok), '(not rejected)', ok);
  });
});
