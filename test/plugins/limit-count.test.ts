import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { startRedis, type RedisProcess } from '../helpers/redis.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';
import { gatewayWithUpstream } from './send.ts';

/*
 * limit-count through the real gateway: policy local in one gateway, policy redis shared by two
 * gateway processes against a real redis-server, which is stopped and started again.
 */

interface Answer {
  status: number;
  limit: string | null;
  remaining: string | null;
  reset: string | null;
  body: string;
}

async function call(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, { headers });
  return {
    status: res.status,
    limit: res.headers.get('x-ratelimit-limit'),
    remaining: res.headers.get('x-ratelimit-remaining'),
    reset: res.headers.get('x-ratelimit-reset'),
    body: await res.text(),
  };
}

/** 200 with the quota headers as given (remaining, limit) */
function assertAllowed(a: Answer, remaining: number, limit: number, what: string): void {
  assert.equal(a.status, 200, `${what}: ${a.status} ${a.body}`);
  assert.equal(a.limit, String(limit), `${what}: X-RateLimit-Limit`);
  assert.equal(a.remaining, String(remaining), `${what}: X-RateLimit-Remaining`);
}

describe('limit-count, policy local', () => {
  let upstream: Record<string, unknown>;
  const route = (id: string, conf: Record<string, unknown>) => ({ id, uri: `/${id}`, plugins: { 'limit-count': conf }, upstream });
  const baseRoutes = () => [
    route('r1', { count: 3, time_window: 60 }),
    route('msg', { count: 1, time_window: 60, rejected_code: 429, rejected_msg: 'too many requests' }),
    route('user', { count: 1, time_window: 60, key: 'http_x_user' }),
    route('combo', { count: 1, time_window: 60, key_type: 'var_combination', key: '$http_x_user-$arg_app' }),
    route('quiet', { count: 1, time_window: 60, show_limit_quota_header: false }),
    route('short', { count: 1, time_window: 1 }),
    // count from a request header, 2 without it (APISIX: count may be a variable)
    route('var-count', { count: '${http_x_quota ?? 2}', time_window: 60, key: 'http_x_user' }),
    route('g1', { count: 2, time_window: 60, group: 'shared' }),
    route('g2', { count: 2, time_window: 60, group: 'shared' }),
    // schema violations
    route('bad-count', { count: 0, time_window: 60 }),
    route('bad-window', { count: 1 }),
    route('bad-code', { count: 1, time_window: 60, rejected_code: 600 }),
    route('bad-policy', { count: 1, time_window: 60, policy: 'memcached' }),
    route('bad-redis', { count: 1, time_window: 60, policy: 'redis' }),
    route('bad-key', { count: 1, time_window: 60, key: 'server_addr' }),
  ];

  const rig = gatewayWithUpstream((up) => {
    upstream = { nodes: { [up.address]: 1 } };
    return { routes: { routes: baseRoutes() } };
  });

  /** rewrites the routes file and waits until the new revision is served (probe route answers) */
  async function rewrite(routes: unknown[], probe: string): Promise<void> {
    writeRoutes(rig.gw.routesPath, { routes: [...routes, { id: probe, uri: `/${probe}`, upstream }] });
    await waitUntil(async () => (await fetch(`${rig.gw.url}/${probe}`)).status === 200, 5000, `route ${probe} served`, 50);
  }

  test('count requests pass with the quota headers, the next is rejected with rejected_code', async () => {
    for (let i = 0; i < 3; i++) {
      const a = await call(`${rig.gw.url}/r1`);
      assertAllowed(a, 2 - i, 3, `request ${i + 1}`);
      const reset = Number(a.reset);
      assert.ok(reset > 0 && reset <= 60, `X-RateLimit-Reset ${a.reset}`);
    }
    const rejected = await call(`${rig.gw.url}/r1`);
    assert.equal(rejected.status, 503);
    assert.equal(rejected.limit, '3');
    assert.equal(rejected.remaining, '0');
    assert.ok(Number(rejected.reset) > 0 && Number(rejected.reset) <= 60);
    assert.equal(rig.up.requests.filter((r) => r.url === '/r1').length, 3, 'the rejected request never reached the upstream');

    await call(`${rig.gw.url}/msg`);
    const m = await call(`${rig.gw.url}/msg`);
    assert.equal(m.status, 429);
    assert.deepEqual(JSON.parse(m.body), { error_msg: 'too many requests' });
  });

  test('a raised count applies at once and the counter goes on; an unrelated change keeps it', async () => {
    // r1 is exhausted (3 of 3) by the test above
    assert.equal((await call(`${rig.gw.url}/r1`)).status, 503);
    const raised = baseRoutes().map((r) => (r.id === 'r1' ? route('r1', { count: 5, time_window: 60 }) : r));
    await rewrite(raised, 'probe1');
    // 3 used: 2 more under the new count, not 5
    assertAllowed(await call(`${rig.gw.url}/r1`), 1, 5, 'after raise');
    // another route added: r1's counter is kept
    await rewrite([...raised, route('other', { count: 9, time_window: 60 })], 'probe2');
    assertAllowed(await call(`${rig.gw.url}/r1`), 0, 5, 'after unrelated change');
    assert.equal((await call(`${rig.gw.url}/r1`)).status, 503);
  });

  test('key http_x_user counts each client apart; without the header the client address is the key', async () => {
    assertAllowed(await call(`${rig.gw.url}/user`, { 'x-user': 'alice' }), 0, 1, 'alice');
    assert.equal((await call(`${rig.gw.url}/user`, { 'x-user': 'alice' })).status, 503);
    assertAllowed(await call(`${rig.gw.url}/user`, { 'x-user': 'bob' }), 0, 1, 'bob');
    assertAllowed(await call(`${rig.gw.url}/user`), 0, 1, 'no header');
    assert.equal((await call(`${rig.gw.url}/user`)).status, 503);
    // var_combination: both variables make the key
    assertAllowed(await call(`${rig.gw.url}/combo?app=1`, { 'x-user': 'alice' }), 0, 1, 'alice app 1');
    assertAllowed(await call(`${rig.gw.url}/combo?app=2`, { 'x-user': 'alice' }), 0, 1, 'alice app 2');
    assert.equal((await call(`${rig.gw.url}/combo?app=1`, { 'x-user': 'alice' })).status, 503);
  });

  test('show_limit_quota_header false: no headers; a window that ends lets requests through again', async () => {
    const q = await call(`${rig.gw.url}/quiet`);
    assert.equal(q.status, 200);
    assert.equal(q.limit, null);
    assert.equal(q.remaining, null);
    const q2 = await call(`${rig.gw.url}/quiet`);
    assert.equal(q2.status, 503);
    assert.equal(q2.limit, null);

    assertAllowed(await call(`${rig.gw.url}/short`), 0, 1, 'short 1');
    assert.equal((await call(`${rig.gw.url}/short`)).status, 503);
    await new Promise((r) => setTimeout(r, 1100));
    assertAllowed(await call(`${rig.gw.url}/short`), 0, 1, 'short, next window');
  });

  test('count from a variable, with a default', async () => {
    assertAllowed(await call(`${rig.gw.url}/var-count`, { 'x-user': 'a', 'x-quota': '5' }), 4, 5, 'quota 5');
    assertAllowed(await call(`${rig.gw.url}/var-count`, { 'x-user': 'b' }), 1, 2, 'default quota');
    // not a positive integer: APISIX answers 500
    assert.equal((await call(`${rig.gw.url}/var-count`, { 'x-user': 'c', 'x-quota': 'lots' })).status, 500);
  });

  test('routes of one group share their counter', async () => {
    assertAllowed(await call(`${rig.gw.url}/g1`), 1, 2, 'g1');
    assertAllowed(await call(`${rig.gw.url}/g2`), 0, 2, 'g2');
    assert.equal((await call(`${rig.gw.url}/g1`)).status, 503);
    assert.equal((await call(`${rig.gw.url}/g2`)).status, 503);
  });

  test('schema violations are rejected with the field', async () => {
    const st = await rig.gw.status();
    const reason = (id: string) => st.rejected.find((r) => r.id === id)?.reason ?? '(not rejected)';
    assert.match(reason('bad-count'), /\/plugins\/limit-count\/count: must be > 0/);
    assert.match(reason('bad-window'), /\/plugins\/limit-count: must have required property 'time_window'/);
    assert.match(reason('bad-code'), /\/plugins\/limit-count\/rejected_code: must be <= 599/);
    assert.match(reason('bad-policy'), /\/plugins\/limit-count\/policy: must be one of "local", "redis", "redis-cluster"/);
    assert.match(reason('bad-redis'), /\/plugins\/limit-count: must have required property 'redis_host'/);
    assert.match(reason('bad-key'), /\/plugins\/limit-count: unsupported variable 'server_addr'/);
    for (const ok of ['r1', 'user', 'combo']) assert.equal(reason(ok), '(not rejected)', ok);
  });
});

describe('limit-count, policy redis: two gateways share one counter', () => {
  let up: TestUpstream;
  let redis: RedisProcess;
  /** a second Redis that requires a password */
  let locked: RedisProcess;
  let a: GatewayProcess;
  let b: GatewayProcess;

  before(async () => {
    up = await startUpstream('up');
    redis = await startRedis();
    locked = await startRedis({ password: 's3cret' });
    const upstream = { nodes: { [up.address]: 1 } };
    const conf = (extra: Record<string, unknown>) => ({
      policy: 'redis',
      redis_host: '127.0.0.1',
      redis_port: redis.port,
      redis_timeout: 500,
      time_window: 60,
      ...extra,
    });
    const routes = {
      routes: [
        { id: 'shared', uri: '/shared', plugins: { 'limit-count': conf({ count: 4 }) }, upstream },
        { id: 'degrade', uri: '/degrade', plugins: { 'limit-count': conf({ count: 1000, allow_degradation: true }) }, upstream },
        { id: 'strict', uri: '/strict', plugins: { 'limit-count': conf({ count: 1000 }) }, upstream },
        { id: 'auth', uri: '/auth', plugins: { 'limit-count': conf({ count: 2, redis_port: locked.port, redis_password: 's3cret', redis_database: 3 }) }, upstream },
        { id: 'wrong', uri: '/wrong', plugins: { 'limit-count': conf({ count: 2, redis_port: locked.port, redis_password: 'guess' }) }, upstream },
      ],
    };
    [a, b] = await Promise.all([startGateway({ routes }), startGateway({ routes })]);
  });

  after(async () => {
    await a?.cleanup();
    await b?.cleanup();
    await redis?.stop();
    await locked?.stop();
    await up?.close();
  });

  async function exactlyFourAcrossBoth(what: string): Promise<void> {
    const seen: Answer[] = [];
    for (let i = 0; i < 8; i++) seen.push(await call(`${(i % 2 === 0 ? a : b).url}/shared`));
    assert.deepEqual(seen.map((s) => s.status), [200, 200, 200, 200, 503, 503, 503, 503], `${what}: ${seen.map((s) => s.body).join(' | ')}`);
    assert.deepEqual(seen.slice(0, 4).map((s) => s.remaining), ['3', '2', '1', '0'], what);
    assert.ok(seen.every((s) => s.limit === '4'), what);
  }

  test('count 4: four requests in all across both gateways, then both reject', async () => {
    await exactlyFourAcrossBoth('first window');
    const keys = await redis.command('KEYS', 'portico:limit-count:*');
    assert.match(keys, /portico:limit-count:routes\/shared:127\.0\.0\.1/);
  });

  test('redis down: allow_degradation lets requests through, otherwise 500; back up: limiting again', async () => {
    await redis.kill();
    for (const gw of [a, b]) {
      for (let i = 0; i < 3; i++) {
        const d = await call(`${gw.url}/degrade`);
        assert.equal(d.status, 200, `degraded: ${d.body}`);
        assert.equal(d.limit, null, 'no quota headers while degraded');
        const s = await call(`${gw.url}/strict`);
        assert.equal(s.status, 500);
        assert.deepEqual(JSON.parse(s.body), { error_msg: 'failed to limit count' });
      }
      // one log line per outage, not one per request
      assert.equal(gw.output().match(/redis unreachable/g)?.length, 1, gw.output());
    }

    await redis.start();
    // the clients reconnect by themselves; redis came back empty (no persistence): a fresh window
    for (const gw of [a, b]) {
      await waitUntil(async () => (await call(`${gw.url}/strict`)).status === 200, 5000, 'limiting through redis again', 100);
      await waitUntil(() => /reachable again/.test(gw.output()), 2000, 'recovery logged');
    }
    await exactlyFourAcrossBoth('after restart');
  });

  test('redis hung (SIGSTOP): requests wait at most redis_timeout, then 500 or degraded; resumed: counted again', async () => {
    redis.pause();
    try {
      const t0 = performance.now();
      const [s, d] = await Promise.all([call(`${a.url}/strict`), call(`${b.url}/degrade`)]);
      const ms = performance.now() - t0;
      assert.equal(s.status, 500);
      assert.equal(d.status, 200);
      assert.ok(ms >= 400 && ms < 2000, `bounded by redis_timeout 500 ms: ${ms} ms`);
    } finally {
      redis.resume();
    }
    const after = await call(`${a.url}/strict`);
    assert.equal(after.status, 200);
    assert.equal(after.limit, '1000');
  });

  test('redis_password and redis_database: counted in that database; a wrong password is a failure (500)', async () => {
    assertAllowed(await call(`${a.url}/auth`), 1, 2, 'auth a');
    assertAllowed(await call(`${b.url}/auth`), 0, 2, 'auth b');
    assert.equal((await call(`${a.url}/auth`)).status, 503);
    const inspect = async (db: number) => {
      const r = new Redis({ port: locked.port, host: '127.0.0.1', password: 's3cret', db, lazyConnect: true });
      try {
        await r.connect();
        return await r.keys('portico:limit-count:*');
      } finally {
        r.disconnect();
      }
    };
    assert.deepEqual(await inspect(3), ['portico:limit-count:routes/auth:127.0.0.1']);
    assert.deepEqual(await inspect(0), []);
    const w = await call(`${a.url}/wrong`);
    assert.equal(w.status, 500);
    assert.deepEqual(JSON.parse(w.body), { error_msg: 'failed to limit count' });
  });
});
