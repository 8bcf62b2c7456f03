/**
 * consumer-restriction through the gateway process, as APISIX's docs
 * (apisix.apache.org/docs/apisix/plugins/consumer-restriction) and t/plugin/consumer-restriction.t show it:
 * restrict by consumer name (whitelist, blacklist), by consumer and HTTP method, by service id
 * (the plugin on the consumer, merged into the chain once key-auth identified it), by route id;
 * 401 when there is nothing to check; rejected_code / rejected_msg; lists changed live; schema
 * violations in /status.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';
import { expectRejected, expectRoutesRejected, fetchJson, gatewayWithUpstream, invalidRoutes, type InvalidConfig } from './send.ts';

const JOHN = { apikey: 'john-key' };
const JANE = { apikey: 'jane-key' };
const BOB = { apikey: 'bob-key' };
const SRV = { apikey: 'srv-key' };

describe('consumer-restriction (gateway process)', () => {
  const routes = (over: { whitelist?: string[]; extraRoutes?: object[]; extraConsumers?: object[] } = {}) => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    const route = (id: string, uri: string, restriction: object, auth = true) => ({
      id,
      uri,
      plugins: { ...(auth ? { 'key-auth': {} } : {}), 'consumer-restriction': restriction },
      upstream,
    });
    return {
      services: [
        { id: 'srv-1', plugins: { 'key-auth': {} }, upstream },
        { id: 'srv-2', plugins: { 'key-auth': {} }, upstream },
      ],
      routes: [
        route('consumer-restricted-route', '/get', { whitelist: over.whitelist ?? ['JaneDoe'] }),
        route('blacklisted', '/blacklist', { blacklist: ['JohnDoe'] }),
        route('custom-reject', '/custom-reject', { blacklist: ['JohnDoe'], rejected_code: 418, rejected_msg: 'no John here' }),
        route('by-method', '/anything', { allowed_by_methods: [{ user: 'JohnDoe', methods: ['GET'] }, { user: 'JaneDoe', methods: ['POST'] }] }),
        // whitelisted consumers skip allowed_by_methods (APISIX's order of checks)
        route('whitelist-and-method', '/white-method', { whitelist: ['JohnDoe'], allowed_by_methods: [{ user: 'JohnDoe', methods: ['POST'] }] }),
        route('no-auth', '/no-auth', { whitelist: ['JohnDoe'] }, false),
        route('route-ok', '/route-ok', { type: 'route_id', whitelist: ['route-ok'] }, false),
        route('route-no', '/route-no', { type: 'route_id', blacklist: ['route-no'] }, false),
        route('svc-no-service', '/svc-none', { type: 'service_id', whitelist: ['srv-1'] }, false),
        { id: 'srv-1-route', uri: '/srv-1', service_id: 'srv-1' },
        { id: 'srv-2-route', uri: '/srv-2', service_id: 'srv-2' },
        ...(over.extraRoutes ?? []),
      ],
      consumers: [
        { username: 'JohnDoe', plugins: { 'key-auth': { key: 'john-key' } } },
        { username: 'JaneDoe', plugins: { 'key-auth': { key: 'jane-key' } } },
        { username: 'BobDoe', plugins: { 'key-auth': { key: 'bob-key' } } },
        // the docs' service_id example on a consumer of its own: a consumer's plugin replaces the
        // route's of the same name (APISIX), so on JohnDoe it would override every route's list
        { username: 'SrvUser', plugins: { 'key-auth': { key: 'srv-key' }, 'consumer-restriction': { type: 'service_id', whitelist: ['srv-1'] } } },
        ...(over.extraConsumers ?? []),
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }));

  const forbidden = 'The consumer_name is forbidden.';
  // [what, method, path, headers, status, message of a refusal]
  const cases: Array<[string, string, string, Record<string, string>, number, string?]> = [
    ['docs whitelist: JohnDoe is refused', 'GET', '/get', JOHN, 403, forbidden],
    ['docs whitelist: JaneDoe passes', 'GET', '/get', JANE, 200],
    ['blacklist: JohnDoe is refused', 'GET', '/blacklist', JOHN, 403, forbidden],
    ['blacklist: JaneDoe passes', 'GET', '/blacklist', JANE, 200],
    ['rejected_code and rejected_msg', 'GET', '/custom-reject', JOHN, 418, 'no John here'],
    ['docs methods: JohnDoe POST is refused', 'POST', '/anything', JOHN, 403, forbidden],
    ['docs methods: JohnDoe GET passes', 'GET', '/anything', JOHN, 200],
    ['docs methods: JaneDoe POST passes', 'POST', '/anything', JANE, 200],
    ['docs methods: JaneDoe GET is refused', 'GET', '/anything', JANE, 403, forbidden],
    ['methods: a consumer not listed may use any method', 'DELETE', '/anything', BOB, 200],
    ['whitelisted: allowed_by_methods is not consulted', 'GET', '/white-method', JOHN, 200],
    ['not whitelisted: refused', 'POST', '/white-method', JANE, 403, forbidden],
    ['no consumer (no auth plugin): 401', 'GET', '/no-auth', {}, 401, 'The request is rejected, please check the consumer_name for this request'],
    ['the auth plugin answers first without a key', 'GET', '/get', {}, 401, 'Missing API key in request'],
    ['route_id whitelisted', 'GET', '/route-ok', {}, 200],
    ['route_id blacklisted', 'GET', '/route-no', {}, 403, 'The route_id is forbidden.'],
    ['service_id on a route without service: 401', 'GET', '/svc-none', {}, 401, 'The request is rejected, please check the service_id for this request'],
    ['docs service_id (plugin on the consumer): srv-1 passes', 'GET', '/srv-1', SRV, 200],
    ['docs service_id (plugin on the consumer): srv-2 is refused', 'GET', '/srv-2', SRV, 403, 'The service_id is forbidden.'],
    ["the consumer's plugin replaces the route's: its service_id list applies on /get", 'GET', '/get', SRV, 401, 'The request is rejected, please check the service_id for this request'],
    ['service_id: a consumer without the plugin is not restricted', 'GET', '/srv-2', JANE, 200],
  ];
  for (const [what, method, path, headers, status, message] of cases) {
    test(what, async () => {
      const r = await fetchJson(rig.gw.url + path, { method, headers });
      assert.equal(r.status, status, JSON.stringify(r.json));
      if (message !== undefined) assert.deepEqual(r.json, { message });
      else if (headers.apikey) assert.ok(r.json.headers?.['x-consumer-username'], 'the upstream answered, with the consumer');
    });
  }

  test('a whitelist changed in the routes file applies to the next requests', async () => {
    writeRoutes(rig.gw.routesPath, routes({ whitelist: ['JohnDoe'] }));
    await waitUntil(async () => (await fetchJson(`${rig.gw.url}/get`, { headers: JOHN })).status === 200, 2000, 'JohnDoe allowed', 50);
    assert.equal((await fetchJson(`${rig.gw.url}/get`, { headers: JANE })).status, 403);
    writeRoutes(rig.gw.routesPath, routes());
    await waitUntil(async () => (await fetchJson(`${rig.gw.url}/get`, { headers: JOHN })).status === 403, 2000, 'JohnDoe refused again', 50);
  });

  test('schema violations are rejected with the reason in /status', async () => {
    const invalid: InvalidConfig[] = [
      ['no-list', {}, '/plugins/consumer-restriction: one of whitelist, blacklist or allowed_by_methods is required'],
      ['empty-list', { whitelist: [] }, '/plugins/consumer-restriction/whitelist: must NOT have fewer than 1 items'],
      ['bad-type', { type: 'ip', whitelist: ['a'] }, '/plugins/consumer-restriction/type: must be one of "consumer_name", "service_id", "route_id", "consumer_group_id"'],
      ['bad-code', { whitelist: ['a'], rejected_code: 100 }, '/plugins/consumer-restriction/rejected_code: must be >= 200'],
      ['bad-method', { allowed_by_methods: [{ user: 'a', methods: ['FETCH'] }] }, '/plugins/consumer-restriction/allowed_by_methods/0/methods/0: must be one of'],
    ];
    writeRoutes(
      rig.gw.routesPath,
      routes({
        extraRoutes: invalidRoutes('consumer-restriction', rig.up.address, invalid),
        extraConsumers: [{ username: 'badrestrict', plugins: { 'key-auth': { key: 'k9' }, 'consumer-restriction': { whitelist: 'srv-1' } } }],
      }),
    );
    await expectRoutesRejected(rig.gw, invalid);
    await expectRejected(rig.gw, [['consumers', 'badrestrict', '/plugins/consumer-restriction/whitelist: must be array']]);
    assert.equal((await fetchJson(`${rig.gw.url}/get`, { headers: JANE })).status, 200, 'the valid objects keep serving');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
