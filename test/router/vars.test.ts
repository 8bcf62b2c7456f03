/**
 * `vars` expressions: every lua-resty-expr operator, negation, logic forms and the request
 * variables, evaluated through the router so the whole path from spec to match is covered.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { MatchRequest } from '../../src/router/types.ts';
import { luaToNumber } from '../../src/router/vars.ts';
import { Router } from '../../src/router/router.ts';
import { request, routerWith, spec } from './helpers.ts';

function varsHold(vars: unknown[], req: MatchRequest): boolean {
  const router = routerWith('radixtree_uri', [{ id: 'r', uris: ['/*'], vars }]);
  return router.match(req) !== undefined;
}

const req = request('/items/42', {
  method: 'POST',
  host: 'api.example.com',
  remoteAddr: '::ffff:10.0.0.7',
  query: 'name=json&age=18&name=second&q=a+b%21&flag&hex=0x10',
  headers: {
    'x-api-version': 'v2',
    'user-agent': 'Mozilla/5.0 Chrome',
    accept: ['text/html', 'application/json'],
    cookie: 'session=abc; theme=dark; session=later',
  },
});

// [description, vars, expected]
const table: [string, unknown[], boolean][] = [
  ['== string', [['arg_name', '==', 'json']], true],
  ['== takes the first of repeated args', [['arg_name', '==', 'second']], false],
  ['== number converts the variable', [['arg_age', '==', 18]], true],
  ['== string does not convert', [['arg_age', '==', '18.0']], false],
  ['== number with hex variable (Lua tonumber)', [['arg_hex', '==', 16]], true],
  ['== null means absent', [['arg_missing', '==', null]], true],
  ['== null on a present arg', [['arg_name', '==', null]], false],
  ['== on absent var', [['arg_missing', '==', 'x']], false],
  ['bare ?flag is the empty string', [['arg_flag', '==', '']], true],
  ['arg values are decoded, + is space', [['arg_q', '==', 'a b!']], true],
  ['~= string', [['arg_name', '~=', 'xml']], true],
  ['~= same', [['arg_name', '~=', 'json']], false],
  ['~= number with non-numeric var is true', [['arg_name', '~=', 5]], true],
  ['~= on absent var is true', [['arg_missing', '~=', 'x']], true],
  ['> numeric', [['arg_age', '>', 17]], true],
  ['> numeric is not lexical', [['arg_age', '>', '9']], true],
  ['> equal', [['arg_age', '>', 18]], false],
  ['>= equal', [['arg_age', '>=', 18]], true],
  ['< numeric', [['arg_age', '<', 100]], true],
  ['<= equal', [['arg_age', '<=', 18]], true],
  ['<= smaller', [['arg_age', '<=', 17.5]], false],
  ['> with non-numeric var is false', [['arg_name', '>', 1]], false],
  ['> with absent var is false', [['arg_missing', '>', 1]], false],
  ['~~ regex search (unanchored)', [['http_user_agent', '~~', 'Chrome']], true],
  ['~~ anchored miss', [['http_user_agent', '~~', '^Chrome']], false],
  ['~~ is case-sensitive', [['http_user_agent', '~~', 'chrome']], false],
  ['~* is case-insensitive', [['http_user_agent', '~*', 'chrome']], true],
  ['~~ on absent var is false', [['http_missing', '~~', '.*']], false],
  ['in', [['arg_name', 'in', ['xml', 'json']]], true],
  ['in miss', [['arg_name', 'in', ['xml', 'yaml']]], false],
  ['in compares types strictly like Lua', [['arg_age', 'in', [18]]], false],
  ['IN upper-case operator', [['arg_name', 'IN', ['json']]], true],
  ['has never holds on string variables', [['arg_name', 'has', 'json']], false],
  ['HAS negated', [['arg_name', '!', 'HAS', 'json']], true],
  ['ipmatch on remote_addr (mapped address unwrapped)', [['remote_addr', 'ipmatch', ['10.0.0.0/24']]], true],
  ['ipmatch miss', [['remote_addr', 'ipmatch', '192.168.0.0/16']], false],
  ['! negates ==', [['arg_name', '!', '==', 'json']], false],
  ['! negates ~~', [['http_x_api_version', '!', '~~', '^v1']], true],
  ['! negates >', [['arg_age', '!', '>', 20]], true],
  ['AND of all terms (default)', [['arg_name', '==', 'json'], ['arg_age', '>', 20]], false],
  ['AND all hold', [['arg_name', '==', 'json'], ['arg_age', '>', 10]], true],
  ['OR form', ['OR', ['arg_name', '==', 'xml'], ['arg_age', '==', 18]], true],
  ['OR none', ['OR', ['arg_name', '==', 'xml'], ['arg_age', '==', 19]], false],
  ['!OR', ['!OR', ['arg_name', '==', 'xml'], ['arg_age', '==', 19]], true],
  ['!AND', ['!AND', ['arg_name', '==', 'json'], ['arg_age', '==', 18]], false],
  ['nested logic inside AND list', [['uri', '~~', '^/items/'], ['or', ['host', '==', 'x'], ['host', '==', 'api.example.com']]], true],
  ['two-element compatibility form is ==', [['arg_name', 'json']], true],
  ['empty vars always hold', [], true],
  ['uri is the path', [['uri', '==', '/items/42']], true],
  ['host', [['host', '==', 'api.example.com']], true],
  ['request_method', [['request_method', '==', 'POST']], true],
  ['remote_addr is unwrapped IPv4', [['remote_addr', '==', '10.0.0.7']], true],
  ['http_ names map _ to - and are case-insensitive', [['http_X_API_Version', '==', 'v2']], true],
  ['multi-value header joined with comma', [['http_accept', '==', 'text/html, application/json']], true],
  ['cookie_ first occurrence', [['cookie_session', '==', 'abc']], true],
  ['cookie_ other', [['cookie_theme', '==', 'dark']], true],
  ['cookie absent', [['cookie_none', '==', null]], true],
  ['query_string raw', [['query_string', '~~', '^name=json&']], true],
];

describe('vars operators', () => {
  for (const [name, vars, expected] of table) {
    it(`${name}: ${JSON.stringify(vars)} → ${expected}`, () => {
      assert.equal(varsHold(vars, req), expected);
    });
  }

  it('a vars failure falls through to the next route on the same key', () => {
    const router = routerWith('radixtree_uri', [
      { id: 'beta', uris: ['/a'], priority: 1, vars: [['http_x_beta', '==', '1']] },
      { id: 'stable', uris: ['/a'] },
    ]);
    assert.equal(router.match(request('/a', { headers: { 'x-beta': '1' } }))?.id, 'beta');
    assert.equal(router.match(request('/a'))?.id, 'stable');
  });
});

describe('request variables are own properties only', () => {
  const names = ['constructor', '__proto__', 'toString', 'hasOwnProperty'];
  // node's header object inherits from Object.prototype: a plain object here is the same shape
  const bare = request('/x', { headers: {} });
  const sent = request('/x', {
    headers: { constructor: 'c', tostring: 't', hasownproperty: 'h', cookie: names.map((n) => `${n}=${n}-v`).join('; ') },
    query: names.map((n) => `${n}=${n}-v`).join('&'),
  });

  it('absent headers named like Object.prototype members are nil', () => {
    assert.equal(varsHold([['http_constructor', '==', null]], bare), true);
    assert.equal(varsHold([['http_constructor', '~~', 'function']], bare), false);
    assert.equal(varsHold([['http_constructor', '~=', 'x']], bare), true);
    assert.equal(varsHold([['http___proto__', '==', null]], bare), true);
    assert.equal(varsHold([['http_toString', '==', null], ['http_hasOwnProperty', '==', null]], bare), true);
  });

  it('present headers with those names are their own values', () => {
    assert.equal(varsHold([['http_constructor', '==', 'c'], ['http_toString', '==', 't'], ['http_hasOwnProperty', '==', 'h']], sent), true);
  });

  for (const kind of ['cookie', 'arg']) {
    it(`${kind}_ names like Object.prototype members: absent is nil, present is the value`, () => {
      for (const name of names) {
        assert.equal(varsHold([[`${kind}_${name}`, '==', null]], bare), true, `${kind}_${name} absent`);
        assert.equal(varsHold([[`${kind}_${name}`, '==', `${name}-v`]], sent), true, `${kind}_${name} present`);
      }
    });
  }
});

describe('vars regexes (PCRE syntax on a linear-time engine)', () => {
  const ua = request('/x', { headers: { 'user-agent': 'Mozilla/5.0 Chrome/126', 'x-id': 'a'.repeat(40) + '!' } });

  it('PCRE inline flags and anchors work', () => {
    assert.equal(varsHold([['http_user_agent', '~~', '(?i)chrome']], ua), true);
    assert.equal(varsHold([['http_user_agent', '~~', '\\AMozilla']], ua), true);
    assert.equal(varsHold([['http_user_agent', '~~', '[[:digit:]]{3}\\z']], ua), true);
  });

  it('a nested quantifier on a long header is decided at once', () => {
    const started = performance.now();
    assert.equal(varsHold([['http_x_id', '~~', '^([a-z0-9]+)+$']], ua), false);
    assert.ok(performance.now() - started < 1_000);
  });

  it('constructs that need backtracking are rejected when the route is checked', () => {
    const reason = Router.validate(spec({ id: 'r', uris: ['/x'], vars: [['http_x', '~~', '(a)\\1']] }));
    assert.match(reason ?? '', /^vars\[0\]: invalid regular expression "\(a\)\\\\1": backreferences/);
  });
});

describe('luaToNumber', () => {
  const table: [unknown, number | undefined][] = [
    ['18', 18], [' 7 ', 7], ['-2.5', -2.5], ['1e3', 1000], ['0x1F', 31], ['-0x10', -16], ['.5', 0.5],
    ['', undefined], ['abc', undefined], ['12px', undefined], [undefined, undefined], [3, 3],
  ];
  for (const [input, expected] of table) {
    it(`${JSON.stringify(input)} → ${expected}`, () => assert.equal(luaToNumber(input), expected));
  }
});
