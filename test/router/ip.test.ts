import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { IpMatcher, parseIp, unmapIpv4 } from '../../src/router/ip.ts';

describe('IpMatcher', () => {
  // [rules, address, expected]
  const table: [string[], string, boolean][] = [
    [['127.0.0.1'], '127.0.0.1', true],
    [['127.0.0.1'], '127.0.0.2', false],
    [['192.168.0.0/16'], '192.168.255.1', true],
    [['192.168.0.0/16'], '192.169.0.1', false],
    [['192.168.1.77/24'], '192.168.1.200', true], // host bits of a CIDR are ignored
    [['0.0.0.0/0'], '8.8.8.8', true],
    [['0.0.0.0/0'], '::1', false], // families are separate, as in lua-resty-ipmatcher
    [['10.0.0.0/8'], '::ffff:10.2.3.4', true],
    [['10.0.0.0/8'], '::ffff:a02:304', true], // mapped, hex form
    [['::ffff:10.0.0.1'], '10.0.0.1', true],
    [['::ffff:0:0/96'], '1.2.3.4', true],
    [['::1'], '::1', true],
    [['::1'], '0:0:0:0:0:0:0:1', true],
    [['::1'], '::2', false],
    [['fe80::/10'], 'febf::1', true],
    [['fe80::/10'], 'fec0::1', false],
    [['2001:db8::/32'], '2001:db8:ffff::1', true],
    [['2001:db8::/33'], '2001:db8:8000::1', false],
    [['2001:db8::1/128'], '[2001:db8::1]', true],
    [['fe80::1'], 'fe80::1%eth0', true],
    [['::/0'], '2001::1', true],
    [['::/0'], '1.2.3.4', false],
    [['1.2.3.4', '::1'], 'garbage', false],
  ];
  for (const [rules, address, expected] of table) {
    it(`${rules.join(',')} ${expected ? 'matches' : 'does not match'} ${address}`, () => {
      assert.equal(IpMatcher.compile(rules).matches(address), expected);
    });
  }

  it('rejects bad entries with a reason', () => {
    assert.match(IpMatcher.check('10.0.0.0/33') ?? '', /prefix length.*0\.\.32/);
    assert.match(IpMatcher.check('::1/129') ?? '', /0\.\.128/);
    assert.match(IpMatcher.check('1.2.3/8') ?? '', /invalid IP address/);
    assert.match(IpMatcher.check('01.2.3.4') ?? '', /invalid IP address/);
    assert.match(IpMatcher.check('::ffff:1.2.3.4/64') ?? '', /at least 96/);
    assert.equal(IpMatcher.check('::ffff:1.2.3.4/120'), undefined);
    assert.throws(() => IpMatcher.compile(['1.1.1.1', 'x']), /invalid IP address: x/);
  });

  it('parses and unmaps', () => {
    assert.deepEqual(parseIp('1.2.3.4'), { v4: 0x01020304 });
    assert.deepEqual(parseIp('::ffff:1.2.3.4'), { v4: 0x01020304 });
    assert.equal(parseIp('1.2.3.256'), undefined);
    const v6 = parseIp('2001:db8::ff00:42:8329');
    assert.ok(v6 !== undefined && 'v6' in v6);
    assert.deepEqual([...v6.v6], [0x20010db8, 0, 0x0000ff00, 0x00428329]);
    assert.equal(unmapIpv4('::ffff:127.0.0.1'), '127.0.0.1');
    assert.equal(unmapIpv4('::1'), '::1');
    assert.equal(unmapIpv4('10.0.0.1'), '10.0.0.1');
  });
});
