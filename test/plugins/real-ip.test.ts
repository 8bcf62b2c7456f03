/**
 * real-ip through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/real-ip): the client address from a URI parameter, from
 * X-Forwarded-For, and behind several proxies (`recursive`), each seen through response-rewrite's
 * `$remote_addr` header as in the docs; then APISIX's t/plugin/real-ip.t cases, where
 * ip-restriction after real-ip on the same route allows or denies by the address real-ip set
 * (a custom header, ports, IPv6, brackets, repeated X-Forwarded-For, trusted_addresses), the
 * upstream's X-Real-IP / X-Forwarded-For, a limit-count key, values that are not addresses
 * (ignored, never a 500) and invalid configs rejected with the reason in /status.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';
import { expectRoutesRejected, gatewayWithUpstream, invalidRoutes, ipv6Url, send, type InvalidConfig } from './send.ts';

describe('real-ip (gateway process)', () => {
  let v6url: string;

  const REMOTE_ADDR = { 'response-rewrite': { headers: { remote_addr: '$remote_addr' } } };
  const routes = (extra: object[] = []) => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    const r = (id: string, realIp: object, plugins: object = REMOTE_ADDR) => ({ id, uri: `/${id}`, plugins: { 'real-ip': realIp, ...plugins }, upstream });
    const only = (whitelist: string[]) => ({ 'ip-restriction': { whitelist } });
    return {
      routes: [
        // docs: "Obtain Real Client Address From URI Parameter"
        r('docs-arg', { source: 'arg_realip', trusted_addresses: ['127.0.0.0/24'] }),
        // docs: "Obtain Real Client Address From Header"
        r('docs-xff', { source: 'http_x_forwarded_for', trusted_addresses: ['127.0.0.0/24'] }),
        // docs: "Obtain Real Client Address Behind Multiple Proxies"
        r('docs-recursive', { source: 'http_x_forwarded_for', recursive: true, trusted_addresses: ['192.128.0.0/16', '127.0.0.1/32'] }),
        // t/plugin/real-ip.t
        r('t-xff-v4', { source: 'http_xff' }, only(['1.1.1.1'])),
        r('t-xff-v6', { source: 'http_xff' }, only(['::2'])),
        r('t-forwarded-v6', { source: 'http_x_forwarded_for' }, only(['::2'])),
        r('t-untrusted', { source: 'http_x_forwarded_for', trusted_addresses: ['192.128.0.0/16'] }, only(['1.1.1.1'])),
        r('t-trusted', { source: 'http_x_forwarded_for', trusted_addresses: ['192.128.0.0/16', '127.0.0.0/24'] }, only(['1.1.1.1'])),
        r('t-recursive', { source: 'http_x_forwarded_for', recursive: true, trusted_addresses: ['192.128.0.0/16', '127.0.0.0/24'] }, only(['1.1.1.1'])),
        // ours
        r('x-real-ip', { source: 'http_x_real_ip' }),
        r('cookie', { source: 'cookie_client' }),
        r('not-recursive', { source: 'http_x_forwarded_for', trusted_addresses: ['127.0.0.1', '192.128.0.0/16'] }),
        r('recursive-untrusted-list', { source: 'http_x_forwarded_for', recursive: true }),
        r('trust-v6', { source: 'http_x_real_ip', trusted_addresses: ['::1'] }),
        r('limited', { source: 'http_x_real_ip' }, { 'limit-count': { count: 1, time_window: 60, key: 'remote_addr', rejected_code: 429 } }),
        ...extra,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes(), proxy: { listen: ['127.0.0.1:0', '[::1]:0'] } }));
  before(() => (v6url = ipv6Url(rig.gw)));

  // [what, path, request headers, the client address the gateway shows ($remote_addr)]
  const seen: Array<[string, string, Record<string, string>, string]> = [
    ['docs: ?realip=1.2.3.4:9080 sets the client to 1.2.3.4', '/docs-arg?realip=1.2.3.4:9080', {}, '1.2.3.4'],
    ['docs: X-Forwarded-For: 10.26.3.19', '/docs-xff', { 'X-Forwarded-For': '10.26.3.19' }, '10.26.3.19'],
    ['docs: behind several proxies, the last untrusted address', '/docs-recursive', { 'X-Forwarded-For': '127.0.0.2, 192.128.1.1, 127.0.0.1' }, '127.0.0.2'],
    ['recursive: every address trusted gives the leftmost', '/docs-recursive', { 'X-Forwarded-For': '192.128.9.9, 192.128.1.1, 127.0.0.1' }, '192.128.9.9'],
    ['recursive: stops at the first untrusted from the right', '/docs-recursive', { 'X-Forwarded-For': '5.5.5.5, 6.6.6.6, 192.128.1.1' }, '6.6.6.6'],
    ['not recursive: the last element, trusted or not', '/not-recursive', { 'X-Forwarded-For': '5.5.5.5, 192.128.1.1' }, '192.128.1.1'],
    ['recursive without trusted_addresses: the last element', '/recursive-untrusted-list', { 'X-Forwarded-For': '5.5.5.5, 6.6.6.6' }, '6.6.6.6'],
    ['no parameter: unchanged', '/docs-arg', {}, '127.0.0.1'],
    ['no X-Forwarded-For: unchanged', '/docs-xff', {}, '127.0.0.1'],
    ['X-Real-IP as source', '/x-real-ip', { 'X-Real-IP': '203.0.113.7' }, '203.0.113.7'],
    ['an IPv6 address with a port', '/x-real-ip', { 'X-Real-IP': '[2001:db8::1]:8080' }, '2001:db8::1'],
    ['an IPv4-mapped IPv6 address is the IPv4 client', '/x-real-ip', { 'X-Real-IP': '::ffff:198.51.100.3' }, '198.51.100.3'],
    ['a cookie as source', '/cookie', { Cookie: 'a=b; client=192.0.2.44' }, '192.0.2.44'],
    ['not an address: ignored', '/x-real-ip', { 'X-Real-IP': 'example.com' }, '127.0.0.1'],
    ['five octets: ignored', '/x-real-ip', { 'X-Real-IP': '1.1.1.1.1' }, '127.0.0.1'],
    ['an out-of-range port: ignored', '/x-real-ip', { 'X-Real-IP': '1.1.1.1:65536' }, '127.0.0.1'],
    ['port 0: ignored', '/x-real-ip', { 'X-Real-IP': '1.1.1.1:0' }, '127.0.0.1'],
    ['a zone id: ignored', '/x-real-ip', { 'X-Real-IP': 'fe80::1%eth0' }, '127.0.0.1'],
    ['an unclosed bracket: ignored', '/x-real-ip', { 'X-Real-IP': '[::1' }, '127.0.0.1'],
    ['a bogus last element: ignored', '/docs-xff', { 'X-Forwarded-For': '10.0.0.1, bogus' }, '127.0.0.1'],
    ['an empty value: ignored', '/x-real-ip', { 'X-Real-IP': '' }, '127.0.0.1'],
  ];

  for (const [what, path, headers, addr] of seen) {
    test(what, async () => {
      const a = await send(`${rig.gw.url}${path}`, { headers });
      assert.equal(a.status, 200, a.body);
      assert.equal(a.headers['remote_addr'], addr);
      // what the upstream was told (nginx's $remote_addr and $proxy_add_x_forwarded_for)
      const echoed = JSON.parse(a.body) as { headers: Record<string, string> };
      assert.equal(echoed.headers['x-real-ip'], addr);
      const xff = headers['X-Forwarded-For'];
      assert.equal(echoed.headers['x-forwarded-for'], xff === undefined ? addr : `${xff}, ${addr}`);
    });
  }

  // [what, path, header lines, status] with ip-restriction (access) after real-ip (rewrite)
  const restricted: Array<[string, string, [string, string][], number]> = [
    ['t: XFF: 1.1.1.1 is whitelisted', '/t-xff-v4', [['XFF', '1.1.1.1']], 200],
    ['t: with a port', '/t-xff-v4', [['XFF', '1.1.1.1:80']], 200],
    ['t: no address: the peer is denied', '/t-xff-v4', [], 403],
    ['t: a bad address is ignored: denied', '/t-xff-v4', [['XFF', '1.1.1.1.1']], 403],
    ['t: a bad port is ignored: denied', '/t-xff-v4', [['XFF', '1.1.1.1:65536']], 403],
    ['t: IPv6', '/t-xff-v6', [['XFF', '::2']], 200],
    ['t: IPv6 with a port', '/t-xff-v6', [['XFF', '[::2]:80']], 200],
    ['t: IPv6 in brackets', '/t-xff-v6', [['XFF', '[::2]']], 200],
    ['t: X-Forwarded-For: ::1, ::2 gives the last', '/t-forwarded-v6', [['X-Forwarded-For', '::1, ::2']], 200],
    ['t: two X-Forwarded-For headers: the last one', '/t-forwarded-v6', [['X-Forwarded-For', '::1'], ['X-Forwarded-For', '::2']], 200],
    ['two X-Forwarded-For headers: not the first one', '/t-forwarded-v6', [['X-Forwarded-For', '::2'], ['X-Forwarded-For', '::1']], 403],
    ['t: no X-Forwarded-For: denied', '/t-forwarded-v6', [], 403],
    ['t: a peer outside trusted_addresses cannot set the client', '/t-untrusted', [['X-Forwarded-For', '1.1.1.1']], 403],
    ['t: a trusted peer can', '/t-trusted', [['X-Forwarded-For', '1.1.1.1']], 200],
    ['t: recursive skips the trusted proxies', '/t-recursive', [['X-Forwarded-For', '1.1.1.1, 192.128.1.1, 127.0.0.1']], 200],
    ['recursive: an untrusted hop between is the client (denied)', '/t-recursive', [['X-Forwarded-For', '1.1.1.1, 8.8.8.8, 127.0.0.1']], 403],
  ];

  for (const [what, path, headers, status] of restricted) {
    test(what, async () => {
      const before = rig.up.requests.length;
      const a = await send(`${rig.gw.url}${path}`, { headers });
      assert.equal(a.status, status, a.body);
      assert.equal(rig.up.requests.length, before + (status === 200 ? 1 : 0));
      if (status === 403) assert.deepEqual(JSON.parse(a.body), { message: 'Your IP address is not allowed' });
    });
  }

  test('trusted_addresses per family: a peer on ::1 is trusted, one on 127.0.0.1 is not', async () => {
    const headers = { 'X-Real-IP': '192.0.2.9' };
    assert.equal((await send(`${v6url}/trust-v6`, { headers })).headers['remote_addr'], '192.0.2.9');
    assert.equal((await send(`${rig.gw.url}/trust-v6`, { headers })).headers['remote_addr'], '127.0.0.1');
    assert.equal((await send(`${v6url}/trust-v6`)).headers['remote_addr'], '::1', 'no header: the peer');
  });

  test('in a global rule: a route\'s ip-restriction sees the real client', async () => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    writeRoutes(rig.gw.routesPath, {
      ...routes([{ id: 'global-guarded', uri: '/global-guarded', plugins: { 'ip-restriction': { whitelist: ['203.0.113.0/24'] } }, upstream }]),
      global_rules: [{ id: 'g1', plugins: { 'real-ip': { source: 'http_x_real_ip', trusted_addresses: ['127.0.0.1'] } } }],
    });
    try {
      const allowed = await waitUntil(async () => {
        const a = await send(`${rig.gw.url}/global-guarded`, { headers: { 'X-Real-IP': '203.0.113.5' } });
        return a.status === 200 ? a : undefined;
      }, 5_000, 'the global rule to apply', 50);
      assert.equal(JSON.parse(allowed.body).headers['x-real-ip'], '203.0.113.5');
      assert.equal((await send(`${rig.gw.url}/global-guarded`, { headers: { 'X-Real-IP': '198.51.100.5' } })).status, 403);
      assert.equal((await send(`${rig.gw.url}/global-guarded`)).status, 403);
    } finally {
      writeRoutes(rig.gw.routesPath, routes());
    }
  });

  test('limit-count counts per real client: another X-Real-IP is another key', async () => {
    const hit = (ip: string) => send(`${rig.gw.url}/limited`, { headers: { 'X-Real-IP': ip } });
    assert.equal((await hit('198.51.100.1')).status, 200);
    assert.equal((await hit('198.51.100.1')).status, 429, 'the same client is limited');
    assert.equal((await hit('198.51.100.2')).status, 200, 'another client has its own count');
  });

  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-no-source', { trusted_addresses: ['127.0.0.1'] }, "/plugins/real-ip: must have required property 'source'"],
      ['bad-empty-source', { source: '' }, '/plugins/real-ip/source: must NOT have fewer than 1 characters'],
      ['bad-cidr', { source: 'http_xff', trusted_addresses: ['127.0.0.1/33'] }, 'trusted_addresses: invalid ip address: 127.0.0.1/33'],
      ['bad-v6', { source: 'http_xff', trusted_addresses: ['::1/129'] }, 'trusted_addresses: invalid ip address: ::1/129'],
      ['bad-empty-list', { source: 'http_xff', trusted_addresses: [] }, '/plugins/real-ip/trusted_addresses: must NOT have fewer than 1 items'],
      ['bad-recursive', { source: 'http_xff', recursive: 'yes' }, '/plugins/real-ip/recursive: must be boolean'],
    ];
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes('real-ip', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await send(`${rig.gw.url}/bad-cidr`)).status, 404, 'a rejected route does not exist');
    assert.equal((await send(`${rig.gw.url}/docs-xff`)).status, 200, 'the valid routes keep serving');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
