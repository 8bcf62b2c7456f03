/**
 * proxy-rewrite through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/proxy-rewrite): Host, uri with set / add / multi-value /
 * removed headers, regex_uri, URL parameters, method, the consumer's name; then what APISIX's
 * code does beyond the examples (the client's query kept with ? or &, regex_uri pairs with the
 * first match winning, captures in header values, $vars in the uri, the flat header map) and
 * Portico's own rule: a rewritten path is dot-segment normalised and one that climbs above the
 * root is answered 400 without reaching the upstream. Invalid configs are rejected in /status.
 * Requests go out with node:http and a raw path, so `..` reaches the gateway as written.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { caseRoutes, expectRoutesRejected, gatewayWithUpstream, invalidRoutes, sendPath, slug, type InvalidConfig } from './send.ts';

/** What the echo upstream saw: method, url and headers of the request the gateway sent. */
interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | undefined>;
}

interface Case {
  name: string;
  /** the route's uri (default: `/<id>`) and proxy-rewrite config */
  route: { uri?: string; plugins: Record<string, unknown> };
  path?: string;
  method?: string;
  headers?: Record<string, string | string[]>;
  status?: number;
  /** what the upstream must have received */
  upstream?: { url?: string; method?: string; headers?: Record<string, string | undefined> };
  /** the request must not reach the upstream */
  blocked?: boolean;
  /** header values compared as sets of ', '-joined values (order of repeated headers is the transport's) */
  headerSets?: Record<string, string[]>;
}

const CASES: Case[] = [
  // ---- the docs' examples
  {
    name: 'docs: rewrite Host header',
    route: { uri: '/headers', plugins: { 'proxy-rewrite': { host: 'myapisix.demo' } } },
    path: '/headers',
    upstream: { url: '/headers', headers: { host: 'myapisix.demo' } },
  },
  {
    name: 'docs: rewrite uri and set headers (the plugin overwrites the client value)',
    route: { plugins: { 'proxy-rewrite': { uri: '/anything', headers: { set: { 'X-Api-Version': 'v1', 'X-Api-Engine': 'apisix' } } } } },
    headers: { 'X-Api-Version': 'v2' },
    upstream: { url: '/anything', headers: { 'x-api-version': 'v1', 'x-api-engine': 'apisix' } },
  },
  {
    name: 'docs: rewrite uri and append headers (the client value is kept)',
    route: { plugins: { 'proxy-rewrite': { uri: '/headers', headers: { add: { 'X-Api-Version': 'v1', 'X-Api-Engine': 'apisix' } } } } },
    headers: { 'X-Api-Version': 'v2' },
    upstream: { url: '/headers', headers: { 'x-api-engine': 'apisix' } },
    headerSets: { 'x-api-version': ['v1', 'v2'] },
  },
  {
    name: 'docs: set multiple values for the same header (replaces the client value)',
    route: { plugins: { 'proxy-rewrite': { uri: '/headers', headers: { set: { 'X-Api-Version': ['v1', 'v2'] } } } } },
    headers: { 'X-Api-Version': 'v0' },
    upstream: { url: '/headers' },
    headerSets: { 'x-api-version': ['v1', 'v2'] },
  },
  {
    name: 'docs: add multiple values for the same header (keeps the client value)',
    route: { plugins: { 'proxy-rewrite': { uri: '/headers', headers: { add: { 'X-Api-Version': ['v1', 'v2'] } } } } },
    headers: { 'X-Api-Version': 'v0' },
    headerSets: { 'x-api-version': ['v0', 'v1', 'v2'] },
  },
  {
    name: 'docs: remove an existing header',
    route: { plugins: { 'proxy-rewrite': { headers: { remove: ['User-Agent'] } } } },
    headers: { 'User-Agent': 'curl/8.2.1' },
    upstream: { url: '/docs-remove-an-existing-header', headers: { 'user-agent': undefined } },
  },
  {
    name: 'docs: rewrite uri using regex (/test/user/agent → /user-agent)',
    route: { uri: '/test/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/test/(.*)/(.*)', '/$1-$2'] } } },
    path: '/test/user/agent',
    upstream: { url: '/user-agent' },
  },
  {
    name: 'docs: add URL parameters',
    route: { uri: '/get', plugins: { 'proxy-rewrite': { uri: '/get?arg1=apisix&arg2=plugin' } } },
    path: '/get',
    upstream: { url: '/get?arg1=apisix&arg2=plugin' },
  },
  {
    name: 'docs: rewrite HTTP method (GET /get → POST /anything)',
    route: { uri: '/method', plugins: { 'proxy-rewrite': { uri: '/anything', method: 'POST' } } },
    path: '/method',
    upstream: { url: '/anything', method: 'POST' },
  },
  {
    name: 'docs: forward the consumer name, remove the key',
    route: {
      uri: '/consumer',
      plugins: { 'key-auth': {}, 'proxy-rewrite': { headers: { set: { 'X-Apisix-Consumer': '$consumer_name' }, remove: ['Apikey'] } } },
    },
    path: '/consumer',
    headers: { apikey: 'john-key' },
    upstream: { url: '/consumer', headers: { 'x-apisix-consumer': 'JohnDoe', apikey: undefined } },
  },
  {
    name: 'docs: the same route without a key is refused by key-auth',
    route: { uri: '/consumer-nokey', plugins: { 'key-auth': {}, 'proxy-rewrite': { headers: { set: { 'X-Apisix-Consumer': '$consumer_name' } } } } },
    path: '/consumer-nokey',
    status: 401,
    blocked: true,
  },

  // ---- APISIX's t/plugin/proxy-rewrite3.t
  {
    name: 't: X-Forwarded-Host rewritten (flat map)',
    route: { plugins: { 'proxy-rewrite': { headers: { 'X-Forwarded-Host': 'test.com' } } } },
    headers: { 'X-Forwarded-Host': 'apisix.ai' },
    upstream: { headers: { 'x-forwarded-host': 'test.com' } },
  },
  {
    name: 't: add to a header the client sent twice',
    route: { plugins: { 'proxy-rewrite': { headers: { add: { test: '123' }, set: { test2: '2233' }, remove: ['hello'] } } } },
    headers: { test: ['sssss', 'bbb'], hello: 'word' },
    upstream: { headers: { test2: '2233', hello: undefined } },
    headerSets: { test: ['sssss', 'bbb', '123'] },
  },
  {
    name: 't: set wins over add for the same header',
    route: { plugins: { 'proxy-rewrite': { headers: { add: { test: 'test_in_add' }, set: { test: 'test_in_set' } } } } },
    upstream: { headers: { test: 'test_in_set' } },
  },
  {
    name: 't: regex_uri with args in the replacement',
    route: { uri: '/targs/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/targs/(.*)/(.*)/(.*)', '/$1_$2_$3?a=c'] } } },
    path: '/targs/plugin/proxy/rewrite',
    upstream: { url: '/plugin_proxy_rewrite?a=c' },
  },
  {
    name: 't: captures in header values (add)',
    route: { uri: '/tcap/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/tcap/(.*)/(.*)/(.*)', '/echo'], headers: { add: { 'X-Request-ID': '$1/$2/$3' } } } } },
    path: '/tcap/plugin/proxy/rewrite',
    upstream: { url: '/echo', headers: { 'x-request-id': 'plugin/proxy/rewrite' } },
  },
  {
    name: 't: a group that took no part, and one that does not exist, are empty',
    route: { uri: '/tnm/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/tnm/(not_matched)?.*', '/echo'], headers: { add: { 'X-Request-ID': 'test1/$1/$2/test2' } } } } },
    path: '/tnm/plugin/proxy/rewrite',
    upstream: { url: '/echo', headers: { 'x-request-id': 'test1///test2' } },
  },
  {
    name: 'scheme is accepted and ignored (APISIX 3.x: the upstream decides)',
    route: { plugins: { 'proxy-rewrite': { scheme: 'https', uri: '/plain' } } },
    upstream: { url: '/plain' },
  },

  // ---- the query string (APISIX: is_args → `?` or `&`)
  {
    name: "the client's query follows a new uri",
    route: { plugins: { 'proxy-rewrite': { uri: '/new' } } },
    path: '/the-client-s-query-follows-a-new-uri?x=1&y=a%20b',
    upstream: { url: '/new?x=1&y=a%20b' },
  },
  {
    name: "the client's query is appended with & to a uri that has its own",
    route: { plugins: { 'proxy-rewrite': { uri: '/get?arg1=apisix' } } },
    path: '/the-client-s-query-is-appended-with-to-a-uri-that-has-its-own?x=1',
    upstream: { url: '/get?arg1=apisix&x=1' },
  },
  {
    name: 'regex_uri keeps the query',
    route: { uri: '/rq/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/rq/(.*)', '/v2/$1'] } } },
    path: '/rq/items?page=2',
    upstream: { url: '/v2/items?page=2' },
  },

  // ---- regex_uri pairs: the first regex that matches wins; its first match is replaced
  {
    name: 'regex_uri: first pair matches (/iresty/hello/world → /hello-world)',
    route: { uri: '/iresty/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/iresty/(.*)/(.*)', '/$1-$2', '^/theothers/*', '/theothers'] } } },
    path: '/iresty/hello/world',
    upstream: { url: '/hello-world' },
  },
  {
    name: 'regex_uri: second pair matches (ngx.re.sub replaces only the matched prefix)',
    route: { uri: '/theothers/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/iresty/(.*)/(.*)', '/$1-$2', '^/theothers/*', '/theothers'] } } },
    path: '/theothers/hello/world',
    upstream: { url: '/theothershello/world' },
  },
  {
    name: 'regex_uri: no pair matches, the uri is unchanged',
    route: { uri: '/nomatch/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/other/(.*)', '/$1'] } } },
    path: '/nomatch/a?q=1',
    upstream: { url: '/nomatch/a?q=1' },
  },
  {
    name: 'regex_uri: $0, ${1} and $$ in the replacement',
    route: { uri: '/cur/*', plugins: { 'proxy-rewrite': { regex_uri: ['/cur/([a-z]+)', '/x/${1}/$$/$0'] } } },
    path: '/cur/abc',
    upstream: { url: '/x/abc/$//cur/abc' },
  },
  {
    name: 'regex_uri captures in header values',
    route: { uri: '/cap/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/cap/(\\w+)/(\\w+)', '/cap'], headers: { set: { 'X-Cap': '$1-${2}', 'X-Missing': 'a$9b' } } } } },
    path: '/cap/alpha/beta',
    upstream: { url: '/cap', headers: { 'x-cap': 'alpha-beta', 'x-missing': 'ab' } },
  },

  // ---- variables
  {
    name: '$vars in uri and header values',
    route: {
      uri: '/vars',
      plugins: { 'proxy-rewrite': { uri: '/v/$arg_name/${http_x_tenant ?? none}', headers: { set: { 'X-From': '$remote_addr $host $uri', 'X-Req': '$request_uri' } } } },
    },
    path: '/vars?name=bob',
    headers: { 'X-Tenant': 't1' },
    upstream: { url: '/v/bob/t1?name=bob', headers: { 'x-from': '127.0.0.1 127.0.0.1 /vars', 'x-req': '/vars?name=bob' } },
  },
  {
    name: 'a ? from a variable stays in the path (escaped), not a query separator',
    route: { uri: '/qvar', plugins: { 'proxy-rewrite': { uri: '/v/$arg_name' } } },
    path: '/qvar?name=a%3Fb',
    upstream: { url: '/v/a%3Fb?name=a%3Fb' },
  },
  {
    name: 'an unknown variable is empty; ${x ?? default} gives the default',
    route: { uri: '/unknown', plugins: { 'proxy-rewrite': { uri: '/u/$no_such_var/${arg_missing ?? dflt}' } } },
    path: '/unknown',
    upstream: { url: '/u//dflt' },
  },

  // ---- header shapes
  {
    name: 'the flat header map sets (older APISIX form); an empty value removes',
    route: { plugins: { 'proxy-rewrite': { headers: { 'X-Api-Version': 'v1', 'X-Num': 42, 'User-Agent': '' } } } },
    headers: { 'X-Api-Version': 'v0', 'User-Agent': 'curl' },
    upstream: { headers: { 'x-api-version': 'v1', 'x-num': '42', 'user-agent': undefined } },
  },
  {
    name: 'add, set and remove together (remove runs last)',
    route: { plugins: { 'proxy-rewrite': { headers: { add: { 'X-A': 'added' }, set: { 'X-B': 'set' }, remove: ['X-B', 'X-C'] } } } },
    headers: { 'X-A': 'client', 'X-C': 'gone' },
    upstream: { headers: { 'x-b': undefined, 'x-c': undefined } },
    headerSets: { 'x-a': ['added', 'client'] },
  },
  {
    name: 'a header value made from a decoded %0A is percent-encoded, not a 500',
    route: { uri: '/ctl/*', plugins: { 'proxy-rewrite': { headers: { set: { 'X-Uri': '$uri' } } } } },
    path: '/ctl/a%0Ab',
    upstream: { headers: { 'x-uri': '/ctl/a%0Ab' } },
  },

  // ---- dot segments: normalised; above the root → 400, never upstream
  {
    name: 'a configured uri with .. is normalised',
    route: { plugins: { 'proxy-rewrite': { uri: '/a/b/../c/./d' } } },
    upstream: { url: '/a/c/d' },
  },
  {
    name: 'a variable that brings .. is normalised inside the root',
    route: { uri: '/files', plugins: { 'proxy-rewrite': { uri: '/files/$arg_p' } } },
    path: '/files?p=x/../y',
    upstream: { url: '/files/y?p=x/../y' },
  },
  {
    name: 'a variable that climbs above the root → 400',
    route: { uri: '/climb', plugins: { 'proxy-rewrite': { uri: '/files/$arg_p' } } },
    path: '/climb?p=../../etc/passwd',
    status: 400,
    blocked: true,
  },
  {
    name: 'an encoded climb (%2e%2e) in a variable → 400',
    route: { uri: '/climb-enc', plugins: { 'proxy-rewrite': { uri: '/$arg_p' } } },
    path: '/climb-enc?p=%2e%2e%2Fsecret',
    status: 400,
    blocked: true,
  },
  {
    name: 'a regex_uri replacement without a leading / that climbs → 400',
    route: { uri: '/rel/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/rel/(.*)', '../$1'] } } },
    path: '/rel/etc',
    status: 400,
    blocked: true,
  },
  {
    name: 'a regex_uri replacement without a leading / is taken from the root',
    route: { uri: '/norel/*', plugins: { 'proxy-rewrite': { regex_uri: ['^/norel/(.*)', 'api/$1'] } } },
    path: '/norel/x',
    upstream: { url: '/api/x' },
  },
];

/** Rejected configs: [route id, config, part of the reason]. */
const INVALID: InvalidConfig[] = [
  ['bad-uri', { uri: 'relative' }, '/plugins/proxy-rewrite/uri: must match pattern'],
  ['bad-regex', { regex_uri: ['(a)\\1', '/b'] }, '/plugins/proxy-rewrite/regex_uri/0: invalid regex_uri((a)\\1, /b): invalid regular expression'],
  ['bad-odd', { regex_uri: ['^/a', '/b', '^/c'] }, 'The length of regex_uri should be an even number'],
  ['bad-replacement', { regex_uri: ['^/a', '/$name'] }, 'invalid capturing variable name'],
  ['bad-method', { method: 'FETCH' }, '/plugins/proxy-rewrite/method: must be one of'],
  ['bad-host', { host: 'a b' }, '/plugins/proxy-rewrite/host: must match pattern'],
  ['bad-header-value', { headers: { set: { 'X-A': 'a\r\nX-Injected: 1' } } }, 'invalid value character in header X-A'],
  ['bad-header-shape', { headers: { add: { 'X-A': 'a' }, other: 1 } }, "/plugins/proxy-rewrite/headers: unknown field 'other'"],
  ['bad-unsafe', { uri: '/x', use_real_request_uri_unsafe: true }, '/use_real_request_uri_unsafe: not supported'],
];

describe('proxy-rewrite (gateway process)', () => {
  const rig = gatewayWithUpstream((up) => ({
    routes: {
      routes: [...caseRoutes(CASES, up.address), ...invalidRoutes('proxy-rewrite', up.address, INVALID)],
      consumers: [{ username: 'JohnDoe', plugins: { 'key-auth': { key: 'john-key' } } }],
    },
  }));

  for (const c of CASES) {
    test(c.name, async () => {
      const before = rig.up.requests.length;
      const res = await sendPath(rig.gw, c.path ?? c.route.uri ?? slug(c.name), { method: c.method, headers: c.headers });
      assert.equal(res.status, c.status ?? 200, `status; body: ${res.body}`);
      if (c.blocked) {
        assert.equal(rig.up.requests.length, before, 'the request must not reach the upstream');
        return;
      }
      const echo = JSON.parse(res.body) as Echo;
      if (c.upstream?.url !== undefined) assert.equal(echo.url, c.upstream.url);
      assert.equal(echo.method, c.upstream?.method ?? c.method ?? 'GET');
      for (const [name, value] of Object.entries(c.upstream?.headers ?? {})) assert.equal(echo.headers[name], value, `upstream header ${name}`);
      for (const [name, values] of Object.entries(c.headerSets ?? {})) {
        assert.deepEqual((echo.headers[name] ?? '').split(', ').sort(), [...values].sort(), `upstream header ${name}`);
      }
    });
  }

  test('the rewritten path is always what the upstream receives, even for a .. the client sent', async () => {
    // the gateway resolves the client's own `..` before routing; the plugin then rewrites the result
    const res = await sendPath(rig.gw, '/test/x/../user/agent');
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.body) as Echo).url, '/user-agent');
  });

  test('invalid configs are rejected with the reason in /status; valid routes keep serving', async () => {
    await expectRoutesRejected(rig.gw, INVALID);
    assert.equal((await sendPath(rig.gw, '/bad-uri')).status, 404);
    assert.equal((await sendPath(rig.gw, '/headers')).status, 200);
  });
});
