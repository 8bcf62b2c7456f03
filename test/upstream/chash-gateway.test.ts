import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createChash } from '../../src/upstream/balancer/chash.ts';
import type { PickRequest } from '../../src/upstream/types.ts';
import { REFUSED_PORT } from '../proxy/helpers.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

/*
 * chash through the gateway process, on both transports, the way APISIX's docs configure it
 * (upstream `type: chash` with `hash_on` + `key`): a key always reaches the same upstream, keys
 * spread over the nodes, a key whose node is down is retried on the next node of the ring, and an
 * upstream whose key cannot work is rejected with the reason in /status.
 */

const NAMES = ['a', 'b', 'c'] as const;
const USERS = Array.from({ length: 10 }, (_, i) => `user-${i}`);

/** a loopback port nobody listens on: connections to it are refused (see test/proxy/helpers.ts) */
async function closedPort(): Promise<number> {
  return REFUSED_PORT;
}

for (const transport of ['socket', 'node'] as const) {
  describe(`chash through the gateway (${transport} transport)`, () => {
    const ups: TestUpstream[] = [];
    let gw: GatewayProcess;
    let deadPort: number;
    const nodes = () => ups.map((up) => ({ host: '127.0.0.1', port: up.port, weight: 1 }));
    const chash = (hashOn: string, key?: string) => ({ type: 'chash', hash_on: hashOn, ...(key === undefined ? {} : { key }), nodes: nodes() });

    before(async () => {
      for (const name of NAMES) ups.push(await startUpstream(name));
      deadPort = await closedPort();
      gw = await startGateway({
        proxy: { transport },
        routes: {
          routes: [
            { id: 'header', uri: '/header/*', upstream: chash('header', 'x-user') },
            { id: 'arg', uri: '/arg/*', upstream: chash('vars', 'arg_id') },
            { id: 'cookie', uri: '/cookie/*', upstream: chash('cookie', 'sid') },
            { id: 'combo', uri: '/combo/*', upstream: chash('vars_combinations', '${http_x_user}-$arg_id') },
            { id: 'consumer', uri: '/consumer/*', plugins: { 'key-auth': {} }, upstream: chash('consumer') },
            { id: 'shared', uri: '/shared/*', upstream_id: 'by-user' },
            {
              id: 'retry',
              uri: '/retry/*',
              upstream: { ...chash('header', 'x-user'), nodes: [...nodes(), { host: '127.0.0.1', port: deadPort, weight: 2 }] },
            },
            { id: 'bad-var', uri: '/bad-var', upstream: chash('vars', 'nope') },
            { id: 'bad-header', uri: '/bad-header', upstream: chash('header', 'x user') },
          ],
          upstreams: [
            { id: 'by-user', ...chash('header', 'x-user') },
            { id: 'bad-cookie', ...chash('cookie') },
          ],
          consumers: USERS.map((user) => ({ username: user.replace('-', '_'), plugins: { 'key-auth': { key: `key-${user}` } } })),
        },
      });
    });

    after(async () => {
      await gw?.cleanup();
      for (const up of ups) await up.close();
    });

    async function served(path: string, headers: Record<string, string> = {}): Promise<string> {
      const res = await fetch(`${gw.url}${path}`, { headers });
      assert.equal(res.status, 200, `${path} ${JSON.stringify(headers)}`);
      return ((await res.json()) as { upstream: string }).upstream;
    }

    /** sends `times` requests per key; asserts each key stayed on one upstream; returns key → upstream */
    async function stickiness(keys: string[], times: number, send: (key: string, i: number) => Promise<string>): Promise<Map<string, string>> {
      const placed = new Map<string, string>();
      for (const key of keys) {
        const seen = new Set<string>();
        for (let i = 0; i < times; i++) seen.add(await send(key, i));
        assert.equal(seen.size, 1, `key ${key} was served by ${[...seen].join(', ')}`);
        placed.set(key, [...seen][0]!);
      }
      const used = new Set(placed.values());
      assert.ok(used.size >= 2, `${keys.length} keys all went to ${[...used].join(', ')}`);
      return placed;
    }

    test('hash_on header: each x-user stays on one upstream (20 requests each), users spread, as the ring computes', async () => {
      const placed = await stickiness(USERS, 20, (user, i) => served(`/header/${i}`, { 'x-user': user }));
      // the gateway's choice is the ring's: the same nodes ("127.0.0.1:port") give the same answer here
      const ring = createChash(
        ups.map((up) => ({ host: '127.0.0.1', port: up.port, weight: 1, key: up.address })),
        { hashOn: 'header', key: 'x-user' },
      );
      for (const user of USERS) {
        const node = ring.pick(undefined, { header: (name: string) => (name === 'x-user' ? user : undefined) } as PickRequest)!;
        assert.equal(placed.get(user), ups.find((up) => up.port === node.port)!.name, user);
      }
    });

    test('hash_on header without the header: every request from one client lands on one upstream (remote_addr)', async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) seen.add(await served(`/header/none-${i}`));
      assert.equal(seen.size, 1);
    });

    test('an upstream object referenced by upstream_id hashes the same way', async () => {
      const direct = await stickiness(USERS, 3, (user, i) => served(`/header/${i}`, { 'x-user': user }));
      const shared = await stickiness(USERS, 3, (user, i) => served(`/shared/${i}`, { 'x-user': user }));
      assert.deepEqual(shared, direct);
    });

    test('hash_on vars, key arg_id: each id stays on one upstream whatever the path', async () => {
      await stickiness(USERS, 10, (id, i) => served(`/arg/p${i}?x=${i}&id=${id}`));
    });

    test('hash_on cookie, key sid', async () => {
      await stickiness(USERS, 10, (sid, i) => served(`/cookie/${i}`, { cookie: `theme=dark${i}; sid=${sid}` }));
    });

    test('hash_on vars_combinations: both parts decide', async () => {
      const pairs = USERS.flatMap((user) => ['1', '2'].map((id) => `${user}|${id}`));
      await stickiness(pairs, 5, (pair, i) => {
        const [user, id] = pair.split('|') as [string, string];
        return served(`/combo/${i}?id=${id}`, { 'x-user': user });
      });
      // one user, many ids: the id takes part in the key
      const byId = new Set<string>();
      for (let id = 0; id < 20; id++) byId.add(await served(`/combo/x?id=${id}`, { 'x-user': 'same-user' }));
      assert.ok(byId.size >= 2, 'the id did not change the node');
    });

    test('hash_on consumer: the consumer key-auth identified', async () => {
      await stickiness(USERS, 5, (user) => served('/consumer/x', { apikey: `key-${user}` }));
      assert.equal((await fetch(`${gw.url}/consumer/x`)).status, 401);
    });

    test('a key whose node refuses connections is retried on the next node of the ring, the same one each time', async () => {
      const before = ups.map((up) => up.requests.length);
      const placed = await stickiness(USERS, 5, (user, i) => served(`/retry/${i}`, { 'x-user': user }));
      assert.equal(ups.reduce((sum, up, i) => sum + up.requests.length - before[i]!, 0), USERS.length * 5, 'one upstream request per client request');
      // the ring of the same nodes says which users belong to the dead node, and where they go next
      const ringNodes = [...ups.map((up) => ({ host: '127.0.0.1', port: up.port, weight: 1 })), { host: '127.0.0.1', port: deadPort, weight: 2 }].map((n) => ({ ...n, key: `127.0.0.1:${n.port}` }));
      const ring = createChash(ringNodes, { hashOn: 'header', key: 'x-user' });
      const dead = ringNodes[3]!;
      let orphans = 0;
      for (const user of USERS) {
        const request = { header: (name: string) => (name === 'x-user' ? user : undefined) } as PickRequest;
        const first = ring.pick(undefined, request)!;
        const expected = first === dead ? ring.pick(new Set([dead]), request)! : first;
        if (first === dead) orphans++;
        assert.equal(placed.get(user), ups.find((up) => up.port === expected.port)!.name, user);
      }
      assert.ok(orphans >= 1, 'no user hashed to the dead node: the test proves nothing');
    });

    test('an upstream whose key cannot work is rejected with the reason in /status; the others serve', async () => {
      const { rejected } = await gw.status();
      const byId = Object.fromEntries(rejected.map((r) => [`${r.kind}/${r.id}`, r]));
      assert.equal(byId['routes/bad-var']?.code, 'PORTICO_ERR_SEMANTIC');
      assert.match(byId['routes/bad-var']!.reason, /^routes\/bad-var: \/upstream\/key: unsupported variable "nope"; supported: remote_addr/);
      assert.match(byId['routes/bad-header']?.reason ?? '', /^routes\/bad-header: \/upstream\/key: "x user" is not a valid header name/);
      assert.match(byId['upstreams/bad-cookie']?.reason ?? '', /^upstreams\/bad-cookie: \/key: required when hash_on is cookie/);
      assert.equal(rejected.length, 3, JSON.stringify(rejected));
      assert.equal((await fetch(`${gw.url}/bad-var`)).status, 404);
    });
  });
}
