/**
 * ip-restriction through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/ip-restriction): a whitelist with a custom message, a
 * blacklist, IPv4 and IPv6 addresses and CIDRs (the gateway listens on 127.0.0.1 and ::1, so
 * both families are real clients), `response_code`, and invalid configs rejected with the reason.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { expectRoutesRejected, gatewayWithUpstream, invalidRoutes, ipv6Url, pluginRoute, send, type InvalidConfig } from './send.ts';

describe('ip-restriction (gateway process)', () => {
  let v6url: string;

  const routes = (extra: object[] = []) => {
    const r = pluginRoute('ip-restriction', rig.up.address);
    return {
      routes: [
        // docs: "Restrict Access by Whitelisting"
        r('docs-whitelist', { whitelist: ['192.168.0.1/24'], message: 'Access denied' }),
        r('loopback-v4', { whitelist: ['127.0.0.0/8'] }),
        r('loopback-v6', { whitelist: ['::1/128'] }),
        r('both-families', { whitelist: ['127.0.0.1', '::1'] }),
        r('black-v4', { blacklist: ['10.0.0.0/8', '127.0.0.1'] }),
        r('black-v6', { blacklist: ['fe80::/10', '::1'] }),
        r('black-other', { blacklist: ['192.168.1.241', '2001:db8::/32'] }),
        r('code-404', { blacklist: ['127.0.0.1/32', '::1'], response_code: 404, message: 'Not here' }),
        ...extra,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes(), proxy: { listen: ['127.0.0.1:0', '[::1]:0'] } }));
  before(() => (v6url = ipv6Url(rig.gw)));

  const DENIED = { message: 'Your IP address is not allowed' };
  // [what, route, client family, status, body (JSON) when denied]
  const cases: Array<[string, string, 'v4' | 'v6', number, object | undefined]> = [
    ['docs: a client outside the whitelist gets 403 and the custom message', 'docs-whitelist', 'v4', 403, { message: 'Access denied' }],
    ['docs: the same for an IPv6 client', 'docs-whitelist', 'v6', 403, { message: 'Access denied' }],
    ['an IPv4 client inside a whitelisted CIDR', 'loopback-v4', 'v4', 200, undefined],
    ['an IPv6 client is not in an IPv4 CIDR', 'loopback-v4', 'v6', 403, DENIED],
    ['an IPv6 client inside a whitelisted IPv6 CIDR', 'loopback-v6', 'v6', 200, undefined],
    ['an IPv4 client is not in an IPv6 CIDR', 'loopback-v6', 'v4', 403, DENIED],
    ['a mixed whitelist, IPv4 client', 'both-families', 'v4', 200, undefined],
    ['a mixed whitelist, IPv6 client', 'both-families', 'v6', 200, undefined],
    ['a blacklisted IPv4 address gets the default message', 'black-v4', 'v4', 403, DENIED],
    ['an IPv4 blacklist does not block IPv6 clients', 'black-v4', 'v6', 200, undefined],
    ['a blacklisted IPv6 address', 'black-v6', 'v6', 403, DENIED],
    ['an IPv6 blacklist does not block IPv4 clients', 'black-v6', 'v4', 200, undefined],
    ['a client not on the blacklist (v4)', 'black-other', 'v4', 200, undefined],
    ['a client not on the blacklist (v6)', 'black-other', 'v6', 200, undefined],
    ['response_code 404 with a custom message', 'code-404', 'v4', 404, { message: 'Not here' }],
    ['response_code 404 for IPv6 too', 'code-404', 'v6', 404, { message: 'Not here' }],
  ];

  for (const [what, route, family, status, body] of cases) {
    test(what, async () => {
      const before = rig.up.requests.length;
      const a = await send(`${family === 'v4' ? rig.gw.url : v6url}/${route}`);
      assert.equal(a.status, status, a.body);
      if (body === undefined) {
        assert.equal(rig.up.requests.length, before + 1, 'allowed requests reach the upstream');
      } else {
        assert.deepEqual(JSON.parse(a.body), body);
        assert.match(String(a.headers['content-type']), /application\/json/);
        assert.equal(rig.up.requests.length, before, 'denied requests never reach the upstream');
      }
    });
  }

  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-none', { message: 'x' }, 'exactly one of whitelist or blacklist must be configured'],
      ['bad-both', { whitelist: ['127.0.0.1'], blacklist: ['10.0.0.1'] }, 'exactly one of whitelist or blacklist must be configured'],
      ['bad-ip', { whitelist: ['127.0.0.1', '300.1.1.1'] }, 'whitelist: invalid ip address: 300.1.1.1'],
      ['bad-prefix', { blacklist: ['10.0.0.0/33'] }, 'blacklist: invalid ip address: 10.0.0.0/33'],
      ['bad-code', { whitelist: ['127.0.0.1'], response_code: 500 }, '/plugins/ip-restriction/response_code: must be <= 404'],
      ['bad-message', { whitelist: ['127.0.0.1'], message: '' }, '/plugins/ip-restriction/message: must NOT have fewer than 1 characters'],
      ['bad-empty', { whitelist: [] }, '/plugins/ip-restriction/whitelist: must NOT have fewer than 1 items'],
    ];
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes('ip-restriction', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await send(`${rig.gw.url}/bad-ip`)).status, 404, 'a rejected route does not exist');
    assert.equal((await send(`${rig.gw.url}/loopback-v4`)).status, 200, 'the valid routes keep serving');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
