/**
 * uri-blocker through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/uri-blocker): `["root.exe", "root.m+"]` on `/*` blocks
 * `/root.exe?a=a` with 403, `rejected_msg` answers `{"error_msg": ...}`; plus `case_insensitive`,
 * `rejected_code`, rules matching the query part of `$request_uri`, an encoded spelling that
 * cannot slip past, a backtracking-prone rule that cannot stall the gateway, and invalid configs
 * rejected with the reason.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { expectRoutesRejected, gatewayWithUpstream, invalidRoutes, send, type InvalidConfig } from './send.ts';

describe('uri-blocker (gateway process)', () => {
  const routes = (extra: object[] = []) => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    const r = (prefix: string, conf: object) => ({ id: prefix, uri: `/${prefix}/*`, plugins: { 'uri-blocker': conf }, upstream });
    return {
      routes: [
        // docs: "Enable Plugin" (on /*), here under a prefix per variant
        { id: 'docs', uri: '/*', plugins: { 'uri-blocker': { block_rules: ['root.exe', 'root.m+'] } }, upstream, priority: -1 },
        r('msg', { block_rules: ['root.exe', 'root.m+'], rejected_msg: 'access is not allowed' }),
        r('ci', { block_rules: ['root.exe', 'root.m+'], case_insensitive: true }),
        r('code', { block_rules: ['^/code/admin'], rejected_code: 410, rejected_msg: 'gone' }),
        r('query', { block_rules: ['[?&]debug=1(&|$)'] }),
        r('redos', { block_rules: ['^/redos/(a+)+$'] }),
        ...extra,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }));

  // [what, path, status, body ('' for none, else the JSON), reaches the upstream]
  const cases: Array<[string, string, number, object | '']> = [
    ['docs: /root.exe?a=a is blocked with 403', '/root.exe?a=a', 403, ''],
    ['docs: the second rule (root.m+)', '/files/root.mmm', 403, ''],
    ['docs: other uris pass', '/index.html', 200, ''],
    ['rules are case-sensitive by default', '/ROOT.EXE', 200, ''],
    ['docs: rejected_msg is answered as {"error_msg": ...}', '/msg/root.exe', 403, { error_msg: 'access is not allowed' }],
    ['case_insensitive: /ROOT.EXE is blocked', '/ci/ROOT.EXE', 403, ''],
    ['case_insensitive: /Root.MMM is blocked', '/ci/Root.MMM', 403, ''],
    ['rejected_code', '/code/admin/users', 410, { error_msg: 'gone' }],
    ['an anchored rule does not match elsewhere', '/code/public/admin', 200, ''],
    ['rules see the query string ($request_uri)', '/query/x?a=1&debug=1', 403, ''],
    ['a query that does not match', '/query/x?debug=10', 200, ''],
    ['an encoded spelling is matched like the plain one', '/root%2eexe', 403, ''],
    ['a dot-segment spelling is matched like the plain one', '/a/../root.exe', 403, ''],
  ];

  for (const [what, path, status, body] of cases) {
    test(what, async () => {
      const before = rig.up.requests.length;
      const a = await send(rig.gw.url + path);
      assert.equal(a.status, status, a.body);
      if (status === 200) {
        assert.equal(rig.up.requests.length, before + 1);
      } else {
        assert.equal(rig.up.requests.length, before, 'a blocked request never reaches the upstream');
        if (body === '') assert.equal(a.body, '');
        else assert.deepEqual(JSON.parse(a.body), body);
      }
    });
  }

  test('a backtracking-prone rule runs in linear time: a long uri is answered at once', async () => {
    const blocked = await send(`${rig.gw.url}/redos/${'a'.repeat(30)}`);
    assert.equal(blocked.status, 403);
    // exponential under backtracking (2^40 steps), linear on the config regex engine
    const passed = await send(`${rig.gw.url}/redos/${'a'.repeat(40)}!`);
    assert.equal(passed.status, 200);
    assert.ok(passed.ms < 1_000, `answered after ${passed.ms.toFixed(0)} ms`);
  });

  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-missing', { rejected_code: 403 }, "/plugins/uri-blocker: must have required property 'block_rules'"],
      ['bad-backref', { block_rules: ['(a)\\1'] }, 'block_rules[0]: invalid regular expression "(a)\\\\1": backreferences'],
      ['bad-syntax', { block_rules: ['ok', 'root.m+', '(unclosed'] }, 'block_rules[2]: invalid regular expression "(unclosed"'],
      ['bad-dup', { block_rules: ['a', 'a'] }, '/plugins/uri-blocker/block_rules: must NOT have duplicate items'],
      ['bad-code', { block_rules: ['a'], rejected_code: 100 }, '/plugins/uri-blocker/rejected_code: must be >= 200'],
      ['bad-msg', { block_rules: ['a'], rejected_msg: '' }, '/plugins/uri-blocker/rejected_msg: must NOT have fewer than 1 characters'],
    ];
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes('uri-blocker', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await send(`${rig.gw.url}/msg/root.exe`)).status, 403, 'the valid routes keep working');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
