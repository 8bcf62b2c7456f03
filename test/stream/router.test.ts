import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { StreamRouter, type StreamConnection, type StreamRouteRules } from '../../src/router/stream.ts';

type Route = StreamRouteRules & { id: string };

const conn = (remoteAddr: string, extra: Partial<StreamConnection> = {}): StreamConnection => ({
  remoteAddr,
  serverAddr: '127.0.0.1',
  serverPort: 9100,
  ...extra,
});

function matchId(routes: Route[], c: StreamConnection): string | undefined {
  return new StreamRouter(routes).match(c)?.id;
}

describe('StreamRouter (apisix/stream/router/ip_port.lua)', () => {
  // [case, routes (in config order), connection, expected route id]
  const table: [string, Route[], StreamConnection, string | undefined][] = [
    // t/stream-node/sanity.t
    ['TEST 2: remote_addr hit', [{ id: '1', remote_addr: '127.0.0.1' }], conn('127.0.0.1'), '1'],
    ['TEST 4: remote_addr miss', [{ id: '1', remote_addr: '127.0.0.2' }], conn('127.0.0.1'), undefined],
    ['TEST 6: remote_addr + server_port', [{ id: '1', remote_addr: '127.0.0.1', server_port: 1995 }], conn('127.0.0.1', { serverPort: 1995 }), '1'],
    ['server_port miss', [{ id: '1', remote_addr: '127.0.0.1', server_port: 1995 }], conn('127.0.0.1', { serverPort: 9100 }), undefined],
    ['TEST 11: remote_addr CIDR', [{ id: '1', remote_addr: '127.0.0.1/26' }], conn('127.0.0.63'), '1'],
    ['CIDR miss', [{ id: '1', remote_addr: '127.0.0.1/26' }], conn('127.0.0.64'), undefined],
    ['a route with no rule matches all', [{ id: '1' }], conn('10.1.2.3'), '1'],
    ['server_addr hit', [{ id: '1', server_addr: '127.0.0.1' }], conn('10.0.0.1'), '1'],
    ['server_addr miss', [{ id: '1', server_addr: '127.0.0.2' }], conn('10.0.0.1'), undefined],
    ['server_addr CIDR', [{ id: '1', server_addr: '10.0.0.0/8' }], conn('1.1.1.1', { serverAddr: '10.9.9.9' }), '1'],
    // Node on a dual-stack socket reports IPv4 peers as IPv4-mapped IPv6
    ['mapped remote address vs IPv4 rule', [{ id: '1', remote_addr: '127.0.0.1' }], conn('::ffff:127.0.0.1'), '1'],
    ['mapped remote address vs IPv4 CIDR', [{ id: '1', remote_addr: '127.0.0.0/8' }], conn('::ffff:127.9.0.1'), '1'],
    ['mapped server address vs IPv4 rule', [{ id: '1', server_addr: '127.0.0.1' }], conn('1.1.1.1', { serverAddr: '::ffff:127.0.0.1' }), '1'],
    ['mapped rule vs IPv4 address', [{ id: '1', remote_addr: '::ffff:127.0.0.1' }], conn('127.0.0.1'), '1'],
    ['IPv6 rule', [{ id: '1', remote_addr: '::1' }], conn('::1'), '1'],
    ['IPv6 rule vs IPv4 client', [{ id: '1', remote_addr: '::1' }], conn('127.0.0.1'), undefined],
    ['unparseable address matches no address rule', [{ id: '1', remote_addr: '0.0.0.0/0' }, { id: '2' }], conn('nonsense'), '2'],
    // several match: the first in config order
    ['config order decides', [{ id: 'a', remote_addr: '127.0.0.0/8' }, { id: 'b', remote_addr: '127.0.0.1' }], conn('127.0.0.1'), 'a'],
    ['a miss falls through to the next', [{ id: 'a', server_port: 1 }, { id: 'b', remote_addr: '127.0.0.1' }], conn('127.0.0.1'), 'b'],
    // subordinate xRPC routes are never matched directly
    ['superior_id skipped', [{ id: 'a', protocol: { superior_id: 'x' } }, { id: 'b' }], conn('127.0.0.1'), 'b'],
  ];
  for (const [name, routes, c, expected] of table) {
    it(name, () => assert.equal(matchId(routes, c), expected));
  }

  describe('sni (t/stream-node/sni.t)', () => {
    // TEST 1: route 1 a.test.com → .1, route 2 *.test.com → .2, route 3 no sni → .3
    const base: Route[] = [
      { id: '1', sni: 'a.test.com' },
      { id: '2', sni: '*.test.com' },
      { id: '3' },
    ];
    const cases: [string, Route[], StreamConnection, string | undefined][] = [
      ['TEST 2: exact sni', base, conn('127.0.0.1', { sni: 'a.test.com' }), '1'],
      ['TEST 4: wildcard sni', base, conn('127.0.0.1', { sni: 'b.test.com' }), '2'],
      ['TEST 5: no TLS → the route without sni', base, conn('127.0.0.1'), '3'],
      ['wildcard covers several labels', base, conn('127.0.0.1', { sni: 'x.y.test.com' }), '2'],
      ['wildcard does not cover the bare domain', base, conn('127.0.0.1', { sni: 'test.com' }), '3'],
      ['sni is case-insensitive', base, conn('127.0.0.1', { sni: 'A.Test.COM' }), '1'],
      // TEST 6/7: same sni, the first whose addresses match
      [
        'TEST 7: same sni, remote_addr decides',
        [{ id: '1', sni: 'a.test.com', remote_addr: '127.0.0.2' }, { id: '2', sni: '*.test.com' }, { id: '3' }, { id: '4', sni: 'a.test.com', remote_addr: '127.0.0.1' }],
        conn('127.0.0.1', { sni: 'a.test.com' }),
        '4',
      ],
      // TEST 8/9: no exact-sni route matches the addresses → the wildcard one
      [
        'TEST 9: falls back to the wildcard sni',
        [{ id: '1', sni: 'a.test.com', remote_addr: '127.0.0.2' }, { id: '2', sni: '*.test.com' }, { id: '3' }, { id: '4', sni: 'a.test.com', remote_addr: '127.0.0.3' }],
        conn('127.0.0.1', { sni: 'a.test.com' }),
        '2',
      ],
      // TEST 11/12: the wildcard route deleted → the route without sni
      [
        'TEST 12: no sni route matches → the route without sni',
        [{ id: '1', sni: 'a.test.com', remote_addr: '127.0.0.2' }, { id: '3' }, { id: '4', sni: 'a.test.com', remote_addr: '127.0.0.3' }],
        conn('127.0.0.1', { sni: 'b.test.com' }),
        '3',
      ],
      ['TEST 15: an exact sni beside nothing else', [{ id: '100', sni: 'unknown-domain.com' }], conn('127.0.0.1', { sni: 'unknown-domain.com' }), '100'],
      ['an sni route never matches a connection without sni', [{ id: '1', sni: '*' }], conn('127.0.0.1'), undefined],
      ['catch-all * matches any sni', [{ id: '1', sni: '*' }, { id: '2' }], conn('127.0.0.1', { sni: 'whatever.org' }), '1'],
      // radixtree over reversed names: the longest wildcard suffix first, the catch-all last
      [
        'longest wildcard first',
        [{ id: 'any', sni: '*' }, { id: 'short', sni: '*.test.com' }, { id: 'long', sni: '*.b.test.com' }],
        conn('127.0.0.1', { sni: 'a.b.test.com' }),
        'long',
      ],
      [
        'shorter wildcard when the longer one misses on addresses',
        [{ id: 'any', sni: '*' }, { id: 'short', sni: '*.test.com' }, { id: 'long', sni: '*.b.test.com', server_port: 1 }],
        conn('127.0.0.1', { sni: 'a.b.test.com' }),
        'short',
      ],
      ['catch-all after the wildcards', [{ id: 'any', sni: '*' }, { id: 'short', sni: '*.test.com' }], conn('127.0.0.1', { sni: 'a.other.com' }), 'any'],
      // sni routes come before plain ones, whatever the config order
      ['sni route before an earlier plain route', [{ id: 'plain' }, { id: 'sni', sni: 'a.test.com' }], conn('127.0.0.1', { sni: 'a.test.com' }), 'sni'],
    ];
    for (const [name, routes, c, expected] of cases) {
      it(name, () => assert.equal(matchId(routes, c), expected));
    }
  });

  it('rejects an invalid address at build, naming the field', () => {
    assert.throws(() => new StreamRouter([{ remote_addr: ':/8' }]), /^Error: \/remote_addr: invalid IP address/);
  });

  it('counts the routes it can match', () => {
    assert.equal(new StreamRouter([{}, { protocol: { superior_id: 1 } }, { sni: 'a' }]).size, 2);
  });
});
