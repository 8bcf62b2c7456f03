/**
 * cors through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/cors): "Enable CORS for a Route" (a list of origins with
 * credentials: an allowed origin gets the headers, another only `Vary: Origin`), "Use RegEx to
 * Match Origin"; plus the defaults, the preflight answered by the gateway (200, empty body, no
 * upstream call), `**`, an upstream's own Vary kept (APISIX's t/plugin/cors.t: "Via, Origin"),
 * Timing-Allow-Origin, and invalid configs (APISIX's credential rule among them) rejected.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { expectRoutesRejected, gatewayWithUpstream, invalidRoutes, pluginRoute, send, type InvalidConfig } from './send.ts';

const CORS_HEADERS = [
  'access-control-allow-origin',
  'access-control-allow-methods',
  'access-control-allow-headers',
  'access-control-expose-headers',
  'access-control-max-age',
  'access-control-allow-credentials',
] as const;

const DOCS_LIST = {
  allow_origins: 'http://sub.domain.com,http://sub2.domain.com',
  allow_methods: 'GET,POST',
  allow_headers: 'headr1,headr2',
  expose_headers: 'ex-headr1,ex-headr2',
  max_age: 50,
  allow_credential: true,
};

const DOCS_REGEX = {
  allow_methods: 'GET,POST',
  allow_headers: 'headr1,headr2',
  expose_headers: 'ex-headr1,ex-headr2',
  max_age: 50,
  allow_origins_by_regex: ['.*\\.test.com$'],
};

describe('cors (gateway process)', () => {
  const routes = (extra: object[] = []) => {
    const r = pluginRoute('cors', rig.up.address);
    return {
      routes: [
        r('docs-list', DOCS_LIST),
        r('docs-regex', DOCS_REGEX),
        r('defaults', {}),
        r('single', { allow_origins: 'http://only.example.com' }),
        r('force', { allow_origins: '**', allow_methods: '**', allow_headers: '**', expose_headers: 'x-a', allow_credential: true }),
        r('timing', { timing_allow_origins: 'http://t.example.com,http://u.example.com' }),
        ...extra,
      ],
    };
  };

  // the echo upstream, answering with `Vary: <resp-vary>` when asked (as APISIX's test server)
  const rig = gatewayWithUpstream(() => ({ routes: routes() }), {
    handler: (req, res) => {
      const vary = req.headers['resp-vary'] as string | undefined;
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/plain', ...(vary ? { vary } : {}) });
        res.end('hello world');
      });
    },
  });

  type Expect = Partial<Record<(typeof CORS_HEADERS)[number] | 'vary' | 'timing-allow-origin', string | undefined>>;
  const NONE: Expect = Object.fromEntries(CORS_HEADERS.map((h) => [h, undefined]));
  const DOCS_HEADERS = (origin: string): Expect => ({
    'access-control-allow-origin': origin,
    'access-control-allow-methods': 'GET,POST',
    'access-control-allow-headers': 'headr1,headr2',
    'access-control-expose-headers': 'ex-headr1,ex-headr2',
    'access-control-max-age': '50',
  });

  // [what, method, path, request headers, headers expected (undefined: absent)]
  const cases: Array<[string, string, string, Record<string, string>, Expect]> = [
    ['docs: an allowed origin of the list gets the headers, credentials and Vary', 'GET', '/docs-list', { Origin: 'http://sub2.domain.com' },
      { ...DOCS_HEADERS('http://sub2.domain.com'), 'access-control-allow-credentials': 'true', vary: 'Origin' }],
    ['docs: an origin not in the list gets only Vary: Origin', 'GET', '/docs-list', { Origin: 'http://sub3.domain.com' }, { ...NONE, vary: 'Origin' }],
    ['no Origin at all: no CORS headers', 'GET', '/docs-list', {}, { ...NONE, vary: 'Origin' }],
    ["t/plugin/cors.t: the upstream's Vary is kept, Origin added", 'GET', '/docs-list', { Origin: 'http://sub.domain.com', 'resp-vary': 'Via' },
      { 'access-control-allow-origin': 'http://sub.domain.com', vary: 'Via, Origin' }],
    ['docs regex: a matching origin is echoed', 'GET', '/docs-regex', { Origin: 'http://a.test.com' },
      { ...DOCS_HEADERS('http://a.test.com'), 'access-control-allow-credentials': undefined }],
    ['docs regex: a non-matching origin gets no CORS headers', 'GET', '/docs-regex', { Origin: 'http://a.test2.com' }, NONE],
    ['defaults: * for everything, max-age 5, no expose header, no Vary', 'GET', '/defaults', { Origin: 'http://any.example.com' },
      { 'access-control-allow-origin': '*', 'access-control-allow-methods': '*', 'access-control-allow-headers': '*', 'access-control-max-age': '5',
        'access-control-expose-headers': undefined, 'access-control-allow-credentials': undefined, vary: undefined }],
    ['defaults: * also without an Origin', 'GET', '/defaults', {}, { 'access-control-allow-origin': '*' }],
    ['a single configured origin, requested', 'GET', '/single', { Origin: 'http://only.example.com' }, { 'access-control-allow-origin': 'http://only.example.com', vary: 'Origin' }],
    ['a single configured origin, another requested: none', 'GET', '/single', { Origin: 'http://other.example.com' }, { ...NONE, vary: 'Origin' }],
    ['**: the origin, all methods and the requested headers are echoed', 'GET', '/force', { Origin: 'http://x.example.com', 'Access-Control-Request-Headers': 'x-foo,x-bar' },
      { 'access-control-allow-origin': 'http://x.example.com', 'access-control-allow-methods': 'GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE',
        'access-control-allow-headers': 'x-foo,x-bar', 'access-control-allow-credentials': 'true', 'access-control-expose-headers': 'x-a' }],
    ['**: without an Origin, *', 'GET', '/force', {}, { 'access-control-allow-origin': '*', 'access-control-allow-headers': undefined }],
    ['timing_allow_origins: a listed origin gets Timing-Allow-Origin', 'GET', '/timing', { Origin: 'http://u.example.com' },
      { 'timing-allow-origin': 'http://u.example.com', 'access-control-allow-origin': '*' }],
    ['timing_allow_origins: another origin does not', 'GET', '/timing', { Origin: 'http://v.example.com' }, { 'timing-allow-origin': undefined }],
  ];

  for (const [what, method, path, headers, expect] of cases) {
    test(what, async () => {
      const a = await send(rig.gw.url + path, { method, headers });
      assert.equal(a.status, 200);
      assert.equal(a.body, 'hello world');
      for (const [name, value] of Object.entries(expect)) assert.equal(a.headers[name], value, name);
    });
  }

  test('a preflight is answered by the gateway: 200, empty body, the CORS headers, no upstream call', async () => {
    const before = rig.up.requests.length;
    const a = await send(`${rig.gw.url}/docs-list`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://sub.domain.com', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'headr1' },
    });
    assert.equal(a.status, 200);
    assert.equal(a.body, '');
    assert.equal(rig.up.requests.length, before, 'the upstream is not called');
    const expect: Expect = { ...DOCS_HEADERS('http://sub.domain.com'), 'access-control-allow-credentials': 'true', vary: 'Origin' };
    for (const [name, value] of Object.entries(expect)) assert.equal(a.headers[name], value, name);
  });

  test('a preflight from an origin not allowed: 200 without CORS headers (the browser then refuses)', async () => {
    const a = await send(`${rig.gw.url}/docs-list`, { method: 'OPTIONS', headers: { Origin: 'http://evil.example.com' } });
    assert.equal(a.status, 200);
    assert.equal(a.headers['access-control-allow-origin'], undefined);
  });

  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-credential', { allow_credential: true }, "you can not set '*' for other option when 'allow_credential' is true"],
      ['bad-credential-methods', { ...DOCS_LIST, allow_methods: '*' }, "you can not set '*' for other option when 'allow_credential' is true"],
      ['bad-origins', { allow_origins: 'sub.domain.com' }, '/plugins/cors/allow_origins: must match pattern'],
      ['bad-regex', { allow_origins_by_regex: ['(?<name>a)\\k<name>'] }, 'allow_origins_by_regex[0]: invalid regular expression'],
      ['bad-max-age', { max_age: 'long' }, '/plugins/cors/max_age: must be integer'],
      ['bad-metadata', { allow_origins_by_metadata: ['key_1'] }, 'allow_origins_by_metadata is not supported'],
    ];
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes('cors', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await send(`${rig.gw.url}/defaults`)).headers['access-control-allow-origin'], '*', 'the valid routes keep working');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
