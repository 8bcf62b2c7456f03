/**
 * basic-auth through the gateway process, as APISIX's docs (apisix.apache.org/docs/apisix/plugins/basic-auth)
 * and t/plugin/basic-auth.t show it: `-u johndoe:john-key` passes, a wrong password or user and a
 * malformed header get APISIX's 401s with `WWW-Authenticate: Basic realm="basic"`, never a 500;
 * hide_credentials; the anonymous consumer; consumers changed live; schema violations in /status.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';
import { expectRejected, expectRoutesRejected, fetchJson, gatewayWithUpstream, invalidRoutes, pluginRoute, type InvalidConfig } from './send.ts';

const basic = (userPass: string) => `Basic ${Buffer.from(userPass).toString('base64')}`;

describe('basic-auth (gateway process)', () => {
  const routes = (extraConsumers: object[] = [], extraRoutes: object[] = []) => {
    const r = pluginRoute('basic-auth', rig.up.address);
    return {
      routes: [
        { ...r('basic-auth-route', {}), uri: '/anything' },
        r('hidden', { hide_credentials: true }),
        r('realm', { realm: 'staff only' }),
        r('anon', { anonymous_consumer: 'anonymous' }),
        ...extraRoutes,
      ],
      consumers: [
        { username: 'johndoe', plugins: { 'basic-auth': { username: 'johndoe', password: 'john-key' } } },
        // t/plugin/basic-auth.t's consumer, and passwords with ':' and non-ASCII characters
        { username: 'foo', plugins: { 'basic-auth': { username: 'foo', password: 'bar' } } },
        { username: 'colon', plugins: { 'basic-auth': { username: 'colon', password: 'a:b' } } },
        { username: 'accent', plugins: { 'basic-auth': { username: 'accent', password: 'pàss' } } },
        { username: 'anonymous' },
        ...extraConsumers,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }));

  // [what, path, Authorization (undefined: none), status, message (401) or consumer seen upstream (200)]
  const cases: Array<[string, string, string | undefined, number, string]> = [
    ['docs: valid credentials (-u johndoe:john-key)', '/anything', 'Basic am9obmRvZTpqb2huLWtleQ==', 200, 'johndoe'],
    ['docs: invalid password', '/anything', basic('johndoe:invalid-password'), 401, 'Invalid user authorization'],
    ['docs: no credentials', '/anything', undefined, 401, 'Missing authorization in request'],
    ['APISIX test 6: not the Basic scheme', '/anything', 'Bad_header YmFyOmJhcgo=', 401, 'Invalid authorization in request'],
    ['APISIX test 7: bad base64', '/anything', 'Basic aca_a', 401, 'Invalid authorization in request'],
    ['APISIX test 8: no password', '/anything', 'Basic YmFy', 401, 'Invalid authorization in request'],
    ['APISIX test 9: unknown user', '/anything', 'Basic YmFyOmJhcgo=', 401, 'Invalid user authorization'],
    ['APISIX test 10: wrong password', '/anything', 'Basic Zm9vOmZvbwo=', 401, 'Invalid user authorization'],
    ['APISIX test 11: the scheme is case-insensitive', '/anything', 'bAsIc Zm9vOmJhcg==', 200, 'foo'],
    ['whitespace around decoded fields is ignored (APISIX strips it)', '/anything', basic('foo:bar\n'), 200, 'foo'],
    ['empty password', '/anything', basic('foo:'), 401, 'Invalid authorization in request'],
    ['a longer password that starts with the right one', '/anything', basic('foo:barbar'), 401, 'Invalid user authorization'],
    ['a password with a colon (RFC 7617)', '/anything', basic('colon:a:b'), 200, 'colon'],
    ['a non-ASCII password', '/anything', basic('accent:pàss'), 200, 'accent'],
    ['only the scheme', '/anything', 'Basic', 401, 'Invalid authorization in request'],
    ['base64 of binary garbage', '/anything', `Basic ${Buffer.from([0xff, 0x00, 0xfe, 0x3a, 0x80]).toString('base64')}`, 401, 'Invalid user authorization'],
    ['an oversize header', '/anything', `Basic ${'QUFB'.repeat(2000)}`, 401, 'Invalid authorization in request'],
    ['anonymous consumer: no credentials', '/anon', undefined, 200, 'anonymous'],
    ['anonymous consumer: wrong credentials', '/anon', basic('johndoe:nope'), 200, 'anonymous'],
    ['anonymous consumer: valid credentials', '/anon', basic('johndoe:john-key'), 200, 'johndoe'],
  ];
  for (const [what, path, authorization, status, expected] of cases) {
    test(what, async () => {
      const r = await fetchJson(rig.gw.url + path, { headers: authorization === undefined ? {} : { authorization } });
      assert.equal(r.status, status, JSON.stringify(r.json));
      if (status === 200) assert.equal(r.json.headers?.['x-consumer-username'], expected);
      else {
        assert.deepEqual(r.json, { message: expected });
        assert.equal(r.headers.get('www-authenticate'), 'Basic realm="basic"');
      }
    });
  }

  test('the realm field sets the challenge', async () => {
    const r = await fetchJson(`${rig.gw.url}/realm`);
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Basic realm="staff only"');
  });

  test('docs: without hide_credentials Authorization goes upstream; with it, it is removed', async () => {
    const shown = await fetchJson(`${rig.gw.url}/anything`, { headers: { authorization: 'Basic am9obmRvZTpqb2huLWtleQ==' } });
    assert.equal(shown.json.headers?.authorization, 'Basic am9obmRvZTpqb2huLWtleQ==');
    const hidden = await fetchJson(`${rig.gw.url}/hidden`, { headers: { authorization: 'Basic am9obmRvZTpqb2huLWtleQ==' } });
    assert.equal(hidden.status, 200);
    assert.equal(hidden.json.headers?.authorization, undefined);
    assert.equal(hidden.json.headers?.['x-consumer-username'], 'johndoe');
  });

  test('a consumer added to the routes file: its credentials work on the next request; removed: 401', async () => {
    writeRoutes(rig.gw.routesPath, routes([{ username: 'jill', plugins: { 'basic-auth': { username: 'jill', password: 'jill-pw' } } }]));
    const ok = await waitUntil(async () => {
      const r = await fetchJson(`${rig.gw.url}/anything`, { headers: { authorization: basic('jill:jill-pw') } });
      return r.status === 200 ? r : undefined;
    }, 2000, 'jill to be accepted', 50);
    assert.equal(ok.json.headers?.['x-consumer-username'], 'jill');

    // a changed password: the old one stops working
    writeRoutes(rig.gw.routesPath, routes([{ username: 'jill', plugins: { 'basic-auth': { username: 'jill', password: 'new-pw' } } }]));
    await waitUntil(async () => (await fetchJson(`${rig.gw.url}/anything`, { headers: { authorization: basic('jill:new-pw') } })).status === 200, 2000, 'new password', 50);
    assert.equal((await fetchJson(`${rig.gw.url}/anything`, { headers: { authorization: basic('jill:jill-pw') } })).status, 401);

    writeRoutes(rig.gw.routesPath, routes());
    const refused = await waitUntil(async () => {
      const r = await fetchJson(`${rig.gw.url}/anything`, { headers: { authorization: basic('jill:new-pw') } });
      return r.status === 401 ? r : undefined;
    }, 2000, 'jill to be refused', 50);
    assert.deepEqual(refused.json, { message: 'Invalid user authorization' });
  });

  test('schema violations are rejected with the reason in /status', async () => {
    const invalid: InvalidConfig[] = [['bad-hide', { hide_credentials: 1 }, '/plugins/basic-auth/hide_credentials: must be boolean']];
    writeRoutes(rig.gw.routesPath, routes([{ username: 'nopw', plugins: { 'basic-auth': { username: 'nopw' } } }], invalidRoutes('basic-auth', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    await expectRejected(rig.gw, [['consumers', 'nopw', "/plugins/basic-auth: must have required property 'password'"]]);
    writeRoutes(rig.gw.routesPath, routes());
  });
});
