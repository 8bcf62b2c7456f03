/**
 * key-auth through the gateway process, as APISIX's docs (apisix.apache.org/docs/apisix/plugins/key-auth)
 * show it: the key in the `apikey` header or a query argument, 401 without it or with a wrong one,
 * hide_credentials, the header's priority over the query, the anonymous consumer; and what the
 * routes file does live: a consumer added works on the next request, removed is refused, an
 * invalid config is rejected with its reason in /status.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';
import { expectRejected, expectRoutesRejected, fetchJson, gatewayWithUpstream, invalidRoutes, pluginRoute, type InvalidConfig } from './send.ts';

describe('key-auth (gateway process)', () => {
  const routes = (extraConsumers: object[] = [], extraRoutes: object[] = []) => {
    const r = pluginRoute('key-auth', rig.up.address);
    return {
      routes: [
        { ...r('key-auth-route', {}), uri: '/anything' },
        r('hidden', { hide_credentials: true }),
        r('by-query', { query: 'auth' }),
        r('hidden-query', { query: 'auth', hide_credentials: true }),
        r('custom-header', { header: 'X-Api-Key', realm: 'my-api' }),
        r('anon', { anonymous_consumer: 'anonymous' }),
        r('anon-missing', { anonymous_consumer: 'nobody' }),
        ...extraRoutes,
      ],
      consumers: [{ username: 'jack', plugins: { 'key-auth': { key: 'jack-key' } } }, { username: 'anonymous' }, ...extraConsumers],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }));

  // [what, path, request headers, status, message (401) or consumer seen upstream (200)]
  const cases: Array<[string, string, Record<string, string>, number, string]> = [
    ['docs: valid key in the header', '/anything', { apikey: 'jack-key' }, 200, 'jack'],
    ['docs: invalid key', '/anything', { apikey: 'wrong-key' }, 401, 'Invalid API key in request'],
    ['docs: no key', '/anything', {}, 401, 'Missing API key in request'],
    ['the key in the default query argument', '/anything?apikey=jack-key', {}, 200, 'jack'],
    ['an empty key is a wrong key, not a missing one', '/anything', { apikey: '' }, 401, 'Invalid API key in request'],
    ['docs priority: valid key in the custom query argument', '/by-query?auth=jack-key', {}, 200, 'jack'],
    ['docs priority: invalid key in the query', '/by-query?auth=wrong-key', {}, 401, 'Invalid API key in request'],
    ['docs priority: the header wins over a wrong query key', '/by-query?auth=wrong-key', { apikey: 'jack-key' }, 200, 'jack'],
    ['the header wins: a wrong header key is not rescued by the query', '/by-query?auth=jack-key', { apikey: 'wrong' }, 401, 'Invalid API key in request'],
    ['the default query name is not read when `query` is set', '/by-query?apikey=jack-key', {}, 401, 'Missing API key in request'],
    ['a custom header name (case-insensitive)', '/custom-header', { 'x-api-key': 'jack-key' }, 200, 'jack'],
    ['a custom header: apikey is not read', '/custom-header', { apikey: 'jack-key' }, 401, 'Missing API key in request'],
    ['anonymous consumer: no key', '/anon', {}, 200, 'anonymous'],
    ['anonymous consumer: a wrong key', '/anon', { apikey: 'wrong' }, 200, 'anonymous'],
    ['anonymous consumer: a valid key is still its consumer', '/anon', { apikey: 'jack-key' }, 200, 'jack'],
    ['anonymous consumer that does not exist', '/anon-missing', {}, 401, 'Invalid user authorization'],
  ];
  for (const [what, path, headers, status, expected] of cases) {
    test(what, async () => {
      const r = await fetchJson(rig.gw.url + path, { headers });
      assert.equal(r.status, status, JSON.stringify(r.json));
      if (status === 200) assert.equal(r.json.headers?.['x-consumer-username'], expected);
      else {
        assert.deepEqual(r.json, { message: expected });
        const realm = path.startsWith('/custom-header') ? 'my-api' : 'key';
        assert.equal(r.headers.get('www-authenticate'), `apikey realm="${realm}"`);
      }
    });
  }

  test('a client cannot claim a consumer with its own X-Consumer-Username', async () => {
    const r = await fetchJson(`${rig.gw.url}/anything`, { headers: { apikey: 'jack-key', 'X-Consumer-Username': 'admin' } });
    assert.equal(r.json.headers?.['x-consumer-username'], 'jack');
  });

  test('docs: without hide_credentials the key goes upstream; with it, the header is removed', async () => {
    const shown = await fetchJson(`${rig.gw.url}/anything`, { headers: { apikey: 'jack-key' } });
    assert.equal(shown.json.headers?.apikey, 'jack-key');
    const hidden = await fetchJson(`${rig.gw.url}/hidden`, { headers: { apikey: 'jack-key', other: 'kept' } });
    assert.equal(hidden.status, 200);
    assert.equal(hidden.json.headers?.apikey, undefined);
    assert.equal(hidden.json.headers?.other, 'kept');
    assert.equal(hidden.json.headers?.['x-consumer-username'], 'jack');
  });

  test('hide_credentials with the key in the query: the argument is removed, the others kept as sent', async () => {
    const r = await fetchJson(`${rig.gw.url}/hidden-query?a=1&auth=jack-key&b=x%2Fy&auth=again`);
    assert.equal(r.status, 200);
    assert.equal(r.json.url, '/hidden-query?a=1&b=x%2Fy');
    const only = await fetchJson(`${rig.gw.url}/hidden-query?auth=jack-key`);
    assert.equal(only.json.url, '/hidden-query');
    const shown = await fetchJson(`${rig.gw.url}/by-query?auth=jack-key`);
    assert.equal(shown.json.url, '/by-query?auth=jack-key');
  });

  test('a consumer added to the routes file: its key works on the next request; removed: 401', async () => {
    writeRoutes(rig.gw.routesPath, routes([{ username: 'jill', plugins: { 'key-auth': { key: 'jill-key' } } }]));
    const ok = await waitUntil(async () => {
      const r = await fetchJson(`${rig.gw.url}/anything`, { headers: { apikey: 'jill-key' } });
      return r.status === 200 ? r : undefined;
    }, 2000, 'jill to be accepted', 50);
    assert.equal(ok.json.headers?.['x-consumer-username'], 'jill');

    writeRoutes(rig.gw.routesPath, routes());
    const refused = await waitUntil(async () => {
      const r = await fetchJson(`${rig.gw.url}/anything`, { headers: { apikey: 'jill-key' } });
      return r.status === 401 ? r : undefined;
    }, 2000, 'jill to be refused', 50);
    assert.deepEqual(refused.json, { message: 'Invalid API key in request' });
    assert.equal((await fetchJson(`${rig.gw.url}/anything`, { headers: { apikey: 'jack-key' } })).status, 200, 'jack unaffected');
  });

  test('schema violations are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-header', { header: 123 }, '/plugins/key-auth/header: must be string'],
      ['bad-hide', { hide_credentials: 'yes' }, '/plugins/key-auth/hide_credentials: must be boolean'],
      ['bad-realm', { realm: 'a"b' }, '/plugins/key-auth/realm: must match pattern'],
    ];
    const badConsumers = [{ username: 'keyless', plugins: { 'key-auth': {} } }, { username: 'numkey', plugins: { 'key-auth': { key: 42 } } }];
    writeRoutes(rig.gw.routesPath, routes(badConsumers, invalidRoutes('key-auth', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    await expectRejected(rig.gw, [
      ['consumers', 'keyless', "/plugins/key-auth: must have required property 'key'"],
      ['consumers', 'numkey', '/plugins/key-auth/key: must be string'],
    ]);
    assert.equal((await fetchJson(`${rig.gw.url}/bad-header`, { headers: { apikey: 'jack-key' } })).status, 404);
    assert.equal((await fetchJson(`${rig.gw.url}/anything`, { headers: { apikey: 'jack-key' } })).status, 200);
    writeRoutes(rig.gw.routesPath, routes());
  });
});
