/**
 * Issue 10, "APISIX conformance gaps": table tests whose cases come from APISIX's own test files
 * (apache/apisix t/..., lua-resty-radixtree t/...), each row naming the test it is taken from.
 * What APISIX accepts must be accepted; what it rejects must be rejected with a reason that names
 * the field path; where Portico deliberately rejects what APISIX accepts (a config that cannot
 * work as written), the row says so.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateObject } from '../../src/config/validate.ts';
import type { Kind } from '../../src/config/changeset.ts';
import type { RouterMode } from '../../src/router/types.ts';
import { FileListing } from '../../src/sources/file-listing.ts';
import { normalizeNodes } from '../../src/upstream/nodes.ts';
import { request, routerWith } from '../router/helpers.ts';

/** undefined: accepted; otherwise "CODE reason" */
function verdict(kind: Kind, value: unknown, mode?: RouterMode): string | undefined {
  const v = validateObject(kind, 'x', value, mode);
  return v.ok ? undefined : `${v.rejection.code} ${v.rejection.reason}`;
}

const nodes = { '127.0.0.1:1980': 1 };

describe('labels: APISIX labels_def (schema_def.lua: any key, values ^\\S+$, 1-256 characters)', () => {
  const rows: Array<[string, Record<string, unknown>, RegExp | undefined]> = [
    // t/admin/routes4.t TEST 19, t/admin/upstream4.t TEST 8, t/admin/ssl.t TEST 14
    ['build/env/version', { build: '16', env: 'production', version: 'v2' }, undefined],
    // t/admin/ssl4.t TEST 11: a long value
    ['long value', { secret: 'js-design-test-bigdata-data-app-service-router-my-secret-number-123456' }, undefined],
    ['256 characters', { k: 'v'.repeat(256) }, undefined],
    // keys: patternProperties ".*", no length rule
    ['key of 100 characters', { ['k'.repeat(100)]: 'v' }, undefined],
    ['empty key', { '': 'v' }, undefined],
    ['non-ASCII value', { zone: 'Zürich', 'région': 'Île-de-France' }, undefined],
    // APISIX's \S is PCRE's without UCP: a no-break space is not whitespace to it
    ['U+00A0 inside', { env: 'a\u00a0b' }, undefined],
    // t/admin/routes4.t TEST 21, t/admin/upstream4.t TEST 11, t/admin/consumers.t TEST 9: a list
    ['list value', { env: ['production', 'release'] }, /^PORTICO_ERR_SCHEMA \S+: \/labels\/env: must be string$/],
    ['space inside', { env: 'prod uction' }, /: \/labels\/env: must match pattern/],
    ['leading space', { env: ' production' }, /: \/labels\/env: must match pattern/],
    ['tab', { env: 'a\tb' }, /: \/labels\/env: must match pattern/],
    ['newline', { custom_id: 'a\r\nX-Injected: 1' }, /: \/labels\/custom_id: must match pattern/],
    ['only spaces', { env: '   ' }, /: \/labels\/env: must match pattern/],
    ['empty value', { env: '' }, /: \/labels\/env: must NOT have fewer than 1 characters/],
    ['257 characters', { env: 'v'.repeat(257) }, /: \/labels\/env: must NOT have more than 256 characters/],
    ['number value', { build: 16 }, /: \/labels\/build: must be string/],
    // Portico: other control characters too (labels.custom_id becomes a request header)
    ['NUL', { env: 'a\u0000b' }, /: \/labels\/env: must match pattern/],
    ['DEL', { env: 'a\u007fb' }, /: \/labels\/env: must match pattern/],
    // labels: "a" (t/admin/plugin-configs.t TEST 9)
  ];
  for (const kind of ['routes', 'services', 'upstreams', 'consumers'] as const) {
    test(`${kind}`, () => {
      for (const [name, labels, want] of rows) {
        const base =
          kind === 'routes' ? { uri: '/a', upstream: { nodes } } :
          kind === 'services' ? { upstream: { nodes } } :
          kind === 'upstreams' ? { nodes } :
          { username: 'x' };
        const got = verdict(kind, { ...base, labels });
        if (want === undefined) assert.equal(got, undefined, `${kind} ${name}`);
        else assert.match(got ?? 'accepted', want, `${kind} ${name}`);
      }
      assert.match(verdict(kind, { ...(kind === 'consumers' ? { username: 'x' } : kind === 'routes' ? { uri: '/a', upstream: { nodes } } : kind === 'services' ? {} : { nodes }), labels: 'a' }) ?? '', /\/labels: must be object/);
    });
  }
  test('the reason names the path inside a route’s inline upstream', () => {
    assert.equal(
      verdict('routes', { uri: '/a', upstream: { nodes, labels: { env: 'a b' } } }),
      'PORTICO_ERR_SCHEMA routes/x: /upstream/labels/env: must match pattern "^[^\\x00-\\x20\\x7f]+$"',
    );
  });
});

describe('node hosts: IPv6 addresses', () => {
  // [nodes, reason (undefined: accepted)]
  const rows: Array<[string, unknown, string | undefined]> = [
    // t/core/schema_def.t (upstream.check_schema): valid cases
    ['array [::1]', [{ host: '[::1]', port: 80, weight: 1 }], undefined],
    ['array [2001:db8::1]', [{ host: '[2001:db8::1]', port: 80, weight: 1 }], undefined],
    // t/node/upstream-ipv6.t TEST 1 and 5/7
    ['map [::1]:1980', { '[::1]:1980': 1 }, undefined],
    ['map [::1] (port by scheme)', { '[::1]': 1 }, undefined],
    ['array [::1] without port', [{ host: '[::1]', weight: 1 }], undefined],
    // t/admin/upstream.t TEST 23 and t/core/schema_def.t invalid cases: APISIX's own message
    ['array ::1', [{ host: '::1', port: 80, weight: 1 }], `/nodes/0/host: IPv6 address must be enclosed with '[' and ']': write "[::1]"`],
    ['array 2001:db8::1', [{ host: '2001:db8::1', port: 80, weight: 1 }], `/nodes/0/host: IPv6 address must be enclosed with '[' and ']': write "[2001:db8::1]"`],
    // t/node/upstream-ipv6.t TEST 9-10: APISIX accepts "::1:1980" and reads it as the address
    // ::1:1980 on port 80, then every request 502s ("failed to set server peer [::1:1980:80]").
    // Ambiguous, so rejected here, with both spellings it could mean.
    ['map ::1:1980', { '::1:1980': 1 }, `/nodes/::1:1980: IPv6 address must be enclosed with '[' and ']': write "[::1:1980]" or "[::1]:1980"`],
    ['map ::1', { '::1': 1 }, `/nodes/::1: IPv6 address must be enclosed with '[' and ']': write "[::1]"`],
    ['map 2001:db8::1', { '2001:db8::1': 1 }, `/nodes/2001:db8::1: IPv6 address must be enclosed with '[' and ']': write "[2001:db8::1]"`],
    // shapes no node can have
    ['map [zz]:80', { '[zz]:80': 1 }, `/nodes/[zz]:80: 'zz' in brackets is not an IPv6 address`],
    ['map [::1', { '[::1': 1 }, '/nodes/[::1: unterminated IPv6 bracket'],
    ['map [::1]x', { '[::1]x': 1 }, `/nodes/[::1]x: expected ":port" after "]"`],
    ['map a:b:c', { 'a:b:c': 1 }, `/nodes/a:b:c: more than one ':' (an IPv6 address goes in brackets: "[::1]:8080")`],
    ['map with a space', { 'a b:80': 1 }, `/nodes/a b:80: 'a b' is not a host name or address (letters, digits, '.', '-', '_'; IPv6 in brackets)`],
    ['array host with a port', [{ host: '127.0.0.1:8080', weight: 1 }], `/nodes/0/host: '127.0.0.1:8080' is not a host: the port goes in the 'port' field`],
    ['array [::1]:80 as host', [{ host: '[::1]:80', weight: 1 }], `/nodes/0/host: '[::1]:80' is not a host: the port goes in the 'port' field`],
    ['array wildcard host', [{ host: '*.example.com', weight: 1 }], `/nodes/0/host: '*.example.com': a node cannot be a wildcard host`],
    ['array host with a space (APISIX host_def)', [{ host: 'a b', weight: 1 }], '/nodes/0/host: must match pattern'],
  ];
  test('upstream objects, and the path inside a route’s inline upstream', () => {
    for (const [name, n, want] of rows) {
      const got = verdict('upstreams', { nodes: n });
      if (want === undefined) assert.equal(got, undefined, name);
      else assert.ok(got?.includes(`upstreams/x: ${want}`), `${name}: ${got}`);
      const inline = verdict('routes', { uri: '/a', upstream: { nodes: n } });
      if (want === undefined) assert.equal(inline, undefined, name);
      else assert.ok(inline?.includes(`routes/x: /upstream${want}`), `${name}: ${inline}`);
    }
  });
  test('what the runtime makes of the accepted forms (the same function the validator calls)', () => {
    assert.deepEqual(
      normalizeNodes({ '[::1]:1980': 1, '[::1]': 2 }, 'http').map((n) => [n.host, n.port, n.key]),
      [['::1', 1980, '[::1]:1980'], ['::1', 80, '[::1]:80']],
    );
    assert.deepEqual(
      normalizeNodes([{ host: '[2001:db8::1]', weight: 1 }], 'https').map((n) => [n.host, n.port, n.key]),
      [['2001:db8::1', 443, '[2001:db8::1]:443']],
    );
  });
});

describe('empty nodes (t/admin/upstream-array-nodes.t TEST 6, t/admin/upstream2.t TEST 6, t/admin/upstream4.t TEST 15)', () => {
  test('accepted in every place an upstream goes', () => {
    for (const empty of [{}, []]) {
      assert.equal(verdict('upstreams', { nodes: empty, type: 'roundrobin' }), undefined);
      assert.equal(verdict('routes', { uri: '/index.html', methods: ['GET'], upstream: { nodes: empty } }), undefined);
      assert.equal(verdict('services', { upstream: { nodes: empty } }), undefined);
      for (const type of ['roundrobin', 'chash', 'least_conn', 'ewma']) {
        assert.equal(verdict('upstreams', { nodes: empty, type, ...(type === 'chash' ? { key: 'remote_addr' } : {}) }), undefined, type);
      }
      assert.equal(verdict('upstreams', { nodes: empty, checks: { active: { http_path: '/status' } } }), undefined, 'with health checks');
    }
  });
  test('nodes stay required unless discovery_type finds them', () => {
    assert.equal(verdict('upstreams', { type: 'roundrobin' }), 'PORTICO_ERR_SEMANTIC upstreams/x: /nodes: required (or discovery_type and service_name)');
    assert.equal(verdict('upstreams', { discovery_type: 'dns', service_name: 'svc.example.com:80' }), undefined);
  });
});

describe('a "?" in a route uri', () => {
  const P = 'radixtree_uri_with_parameter';
  const LITERAL = `'?' is matched literally here, so only a path with an encoded '%3F' could match (a request's '?' starts its query string)`;
  // [route fields, mode, reason (undefined: accepted)]
  const rows: Array<[Record<string, unknown>, RouterMode | undefined, string | undefined]> = [
    // lua-resty-radixtree t/parameter.t TEST 13: `?` after the first parameter is PCRE's "optional"
    [{ uri: '/api/:version/test/api/projects/:project_id/clusters/:cluster_id/nodes/?' }, P, undefined],
    [{ uri: '/x/:id/a?b' }, P, undefined],
    // in a parameter name it is part of the name, as in radixtree's fetch_pat
    [{ uri: '/user/:id?' }, P, undefined],
    [{ uri: '/files/*path?' }, undefined, undefined],
    // after a trailing `*` nothing is checked (radixtree's compare_param returns early)
    [{ uri: '/foo*bar?' }, undefined, undefined],
    // a query string in the uri (the issue's `/a?b=1`): APISIX would match only /a%3Fb=1
    [{ uri: '/a?b=1' }, undefined, `/uri: ${LITERAL}; to match query arguments use vars, e.g. [["arg_b", "==", "1"]]`],
    [{ uris: ['/ok', '/search?q=apisix'] }, P, `/uris/1: ${LITERAL}; to match query arguments use vars, e.g. [["arg_q", "==", "apisix"]]`],
    [{ uri: '/hello?' }, P, `/uri: ${LITERAL}`],
    // before the first parameter: radixtree's key wants a literal '?' where its pattern reads
    // "optional", so no request matches in APISIX either
    [{ uris: ['/a?/:id'] }, P, `/uris/0: ${LITERAL}, and it is before the first parameter or wildcard, in the part looked up literally`],
    // without the parameter router, ':id' is literal, and so is the '?'
    [{ uri: '/user/:id?' }, 'radixtree_uri', `/uri: ${LITERAL}; ':' starts a parameter only with router radixtree_uri_with_parameter (this is radixtree_uri)`],
    [{ uri: '/api/:v/nodes/?' }, 'radixtree_host_uri', `/uri: ${LITERAL}; ':' starts a parameter only with router radixtree_uri_with_parameter (this is radixtree_host_uri)`],
    // no mode (a routes file validated alone): must work in every mode
    [{ uri: '/user/:id?' }, undefined, `/uri: ${LITERAL}; ':' starts a parameter only with router radixtree_uri_with_parameter (this is radixtree_host_uri)`],
    [{ uri: '/x/:id/a???' }, P, `/uri: '???' is not a valid pattern (radixtree's PCRE rejects it too)`],
  ];
  test('validation: accepted where radixtree gives it a meaning, else PORTICO_ERR_SEMANTIC naming /uri or /uris/N', () => {
    for (const [route, mode, want] of rows) {
      const got = verdict('routes', { ...route, upstream: { nodes } }, mode);
      assert.equal(got, want === undefined ? undefined : `PORTICO_ERR_SEMANTIC routes/x: ${want}`, `${JSON.stringify(route)} in ${mode ?? 'every mode'}`);
    }
  });
  test('matching, as radixtree matches (t/parameter.t TEST 13 and the rows above)', () => {
    const router = routerWith(P, [
      { id: 'long', uris: ['/api/:version/test/api/projects/:project_id/clusters/:cluster_id/nodes/?'] },
      { id: 'medium', uris: ['/api/:version/test/api/projects/:project_id'] },
      { id: 'short', uris: ['/api/:version/test/*subpath'] },
      { id: 'opt-a', uris: ['/x/:id/a?b'] },
      { id: 'named', uris: ['/user/:id?'] },
    ]);
    const table: Array<[string, string | undefined, Record<string, string>?]> = [
      ['/api/v4/test/api/projects/saas/clusters/123/nodes/', 'long', { version: 'v4', project_id: 'saas', cluster_id: '123' }],
      ['/api/v4/test/api/projects/saas/clusters/123/nodes', 'long'],
      ['/api/v4/test/api', 'short', { version: 'v4', subpath: 'api' }],
      ['/api/v4/test/api/projects/saas', 'medium'],
      ['/x/1/ab', 'opt-a', { id: '1' }],
      ['/x/1/b', 'opt-a', { id: '1' }],
      ['/x/1/a', undefined],
      ['/x/1/a?b', undefined],
      ['/user/42', 'named', { 'id?': '42' }],
      ['/user/', undefined],
    ];
    for (const [path, want, params] of table) {
      const m = router.match(request(path));
      assert.equal(m?.target, want, path);
      if (params) assert.deepEqual({ ...m!.params }, params, path);
    }
  });
});

describe('routes file: an unknown top-level key refuses the file (its last good version stays)', () => {
  const good = 'upstreams:\n  - id: u\n    nodes: {"127.0.0.1:1980": 1}\nroutes:\n  - id: r\n    uri: /r\n    upstream_id: u\n';
  const rows: Array<[string, string]> = [
    [good.replace('routes:', 'rotues:'), `f: unknown top-level key 'rotues' (did you mean 'routes'?) (known: routes, services, upstreams, consumers, plugin_configs, global_rules, ssls, stream_routes)`],
    [`${good}upstream:\n  - id: v\n`, `f: unknown top-level key 'upstream' (did you mean 'upstreams'?) (known: routes, services, upstreams, consumers, plugin_configs, global_rules, ssls, stream_routes)`],
    [`${good}extra: {a: 1}\n`, `f: unknown top-level key 'extra' (known: routes, services, upstreams, consumers, plugin_configs, global_rules, ssls, stream_routes)`],
    [`${good}protos: []\n`, `f: top-level key 'protos': an APISIX kind Portico does not serve (it reads routes, services, upstreams, consumers, plugin_configs, global_rules, ssls, stream_routes)`],
  ];
  test('read after a good read: failed, naming the key; the good version is still the base', () => {
    for (const [text, message] of rows) {
      const listing = new FileListing('f');
      assert.equal(listing.read(good, 1).type, 'changes');
      assert.deepEqual(listing.read(text, 2), { type: 'failed', code: 'PORTICO_ERR_PARSE', message });
      // the good file again is no change: nothing of the refused read was taken
      assert.equal(listing.read(good, 3).type, 'unchanged');
    }
  });
  test('every kind, and null sections, are still fine', () => {
    const text = 'routes: []\nservices:\nupstreams: ~\nconsumers: []\nplugin_configs: []\nglobal_rules: []\n';
    assert.equal(new FileListing('f').read(text, 1).type, 'changes');
  });
});
