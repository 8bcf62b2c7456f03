/**
 * redirect through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/redirect): `/test/index.html` → `/test/default.html`
 * with 301, `$uri/index.html`, http_to_https (301 to https://$host$request_uri); plus the cases
 * of APISIX's t/plugin/redirect.t: `${arg_name}`, `$$`, `\$`, an unknown variable, regex_uri with
 * encode_uri, append_query_string, 308 for non-GET, X-Forwarded-Proto; and invalid configs
 * rejected with the reason. Every redirect has an empty body and never reaches the upstream.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { expectRoutesRejected, gatewayWithUpstream, invalidRoutes, send, type InvalidConfig } from './send.ts';

describe('redirect (gateway process)', () => {
  const routes = (extra: object[] = []) => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    const r = (uri: string, conf: object, id = uri.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '')) => ({ id, uri, plugins: { redirect: conf }, upstream });
    return {
      routes: [
        r('/test/index.html', { uri: '/test/default.html', ret_code: 301 }),
        r('/test', { uri: '$uri/index.html', ret_code: 301 }),
        r('/https/*', { http_to_https: true }),
        r('/default-code', { uri: '/elsewhere' }),
        r('/arg', { uri: '$uri/test/a${arg_name}c' }),
        r('/dollar', { uri: '/foo$$uri' }),
        r('/escaped', { uri: '\\$uri/foo$uri\\$uri/bar', ret_code: 301 }),
        r('/bad-var', { uri: '$uri/$bad_var/bar', ret_code: 301 }),
        r('/host', { uri: 'https://$host$request_uri', ret_code: 301 }),
        r('/regex/*', { regex_uri: ['^/regex/(.*)', 'http://test.com/${1}'], ret_code: 301, encode_uri: true }),
        r('/groups/*', { regex_uri: ['^/groups/(\\w+)/(\\w+)', '/$2-$1|$0'] }),
        r('/encode*', { uri: '$uri', ret_code: 301, encode_uri: true }),
        r('/append', { uri: '$uri', append_query_string: true }),
        r('/append-more', { uri: '$uri?type=string', append_query_string: true }),
        r('/ignored-code', { http_to_https: true, ret_code: 302 }),
        ...extra,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }));

  // [what, method, path, request headers, status, Location (undefined: passed to the upstream)]
  const cases: Array<[string, string, string, Record<string, string>, number, string | undefined]> = [
    ['docs: a fixed uri with ret_code 301', 'GET', '/test/index.html', {}, 301, '/test/default.html'],
    ['docs: $uri/index.html', 'GET', '/test', {}, 301, '/test/index.html'],
    ['docs: http_to_https: 301 to https://$host$request_uri', 'GET', '/https/hello?a=1', { Host: 'foo.com' }, 301, 'https://foo.com/https/hello?a=1'],
    ['http_to_https: HEAD is 301 too', 'HEAD', '/https/hello', { Host: 'foo.com' }, 301, 'https://foo.com/https/hello'],
    ['http_to_https: POST gets 308 (keeps its method and body)', 'POST', '/https/hello', { Host: 'foo.com' }, 308, 'https://foo.com/https/hello'],
    ['http_to_https: X-Forwarded-Proto https is already https', 'GET', '/https/hello', { 'X-Forwarded-Proto': 'https' }, 200, undefined],
    ['http_to_https: X-Forwarded-Proto http is redirected', 'GET', '/https/hello', { Host: 'foo.com', 'X-Forwarded-Proto': 'http' }, 301, 'https://foo.com/https/hello'],
    ['http_to_https ignores ret_code', 'GET', '/ignored-code', { Host: 'foo.com' }, 301, 'https://foo.com/ignored-code'],
    ['ret_code defaults to 302', 'GET', '/default-code', {}, 302, '/elsewhere'],
    ['t: ${arg_name}', 'GET', '/arg?name=json', {}, 302, '/arg/test/ajsonc'],
    ['t: an absent argument is empty', 'GET', '/arg', {}, 302, '/arg/test/ac'],
    ['t: $$uri is a dollar then $uri', 'GET', '/dollar?name=json', {}, 302, '/foo$/dollar'],
    ['t: \\$uri stays as written', 'GET', '/escaped', {}, 301, '\\$uri/foo/escaped\\$uri/bar'],
    ['t: an unknown variable is empty', 'GET', '/bad-var', {}, 301, '/bad-var//bar'],
    ['$host and $request_uri', 'GET', '/host?x=1&y=2', { Host: 'Example.COM:9080' }, 301, 'https://example.com/host?x=1&y=2'],
    ['t: regex_uri with encode_uri', 'GET', '/regex/with%20space', {}, 301, 'http://test.com/with%20space'],
    ['regex_uri: groups in any order and $0', 'GET', '/groups/a/b/c', {}, 302, '/b-a|/groups/a/b/c'],
    ['t: encode_uri on $uri', 'GET', '/encode/with%20space', {}, 301, '/encode/with%20space'],
    ['encode_uri: non-ASCII is percent-encoded as UTF-8', 'GET', '/encode/%C3%A9t%C3%A9', {}, 301, '/encode/%C3%A9t%C3%A9'],
    ['t: append_query_string', 'GET', '/append?name=json', {}, 302, '/append?name=json'],
    ['append_query_string without a query', 'GET', '/append', {}, 302, '/append'],
    ['t: append_query_string to a uri with a query', 'GET', '/append-more?name=json', {}, 302, '/append-more?type=string&name=json'],
  ];

  for (const [what, method, path, headers, status, location] of cases) {
    test(what, async () => {
      const before = rig.up.requests.length;
      const a = await send(rig.gw.url + path, { method, headers });
      assert.equal(a.status, status, a.body);
      if (location === undefined) {
        assert.equal(rig.up.requests.length, before + 1);
        assert.equal(a.headers.location, undefined);
      } else {
        assert.equal(a.headers.location, location);
        assert.equal(a.body, '');
        assert.equal(rig.up.requests.length, before, 'a redirect never reaches the upstream');
      }
    });
  }

  test('regex_uri: a uri that does not match goes to the upstream', async () => {
    writeRoutes(rig.gw.routesPath, routes([{ id: 'nomatch', uri: '/nomatch/*', plugins: { redirect: { regex_uri: ['^/nomatch/(\\d+)$', '/n/$1'] } }, upstream: { nodes: { [rig.up.address]: 1 } } }]));
    const moved = await (async () => {
      for (let i = 0; i < 50; i++) {
        const a = await send(`${rig.gw.url}/nomatch/12`);
        if (a.status !== 404) return a;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('route nomatch never loaded');
    })();
    assert.equal(moved.status, 302);
    assert.equal(moved.headers.location, '/n/12');
    const passed = await send(`${rig.gw.url}/nomatch/abc`);
    assert.equal(passed.status, 200);
    assert.equal(JSON.parse(passed.body).url, '/nomatch/abc');
  });

  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-none', { ret_code: 301 }, 'exactly one of uri, regex_uri and http_to_https must be configured'],
      ['bad-two', { http_to_https: true, uri: '/hello' }, 'exactly one of uri, regex_uri and http_to_https must be configured (got uri, http_to_https)'],
      ['bad-append', { http_to_https: true, append_query_string: true }, 'only one of `http_to_https` and `append_query_string` can be configured.'],
      ['bad-regex', { regex_uri: ['^/(a)\\1', '/x'] }, 'invalid regex_uri (^/(a)\\1, /x): invalid regular expression'],
      ['bad-replacement', { regex_uri: ['^/(.*)', '/$x'] }, 'invalid regex_uri (^/(.*), /$x): invalid capturing variable name'],
      ['bad-regex-len', { regex_uri: ['^/a'] }, '/plugins/redirect/regex_uri: must NOT have fewer than 2 items'],
      ['bad-code', { uri: '/x', ret_code: 100 }, '/plugins/redirect/ret_code: must be >= 200'],
      ['bad-uri', { uri: '/' }, '/plugins/redirect/uri: must NOT have fewer than 2 characters'],
    ];
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes('redirect', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await send(`${rig.gw.url}/test`)).status, 301, 'the valid routes keep working');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
