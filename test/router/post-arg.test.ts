/**
 * `post_arg.*` / `post_arg_*` in route vars: compilation, the lazy "needs body" first match, and
 * evaluation on bodies decoded as the proxy decodes them (src/proxy/post-args.ts). Cases follow
 * APISIX's t/admin/routes_request_body.t, t/core/ctx3.t and t/core/ctx2.t.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { decodePostArgs } from '../../src/proxy/post-args.ts';
import { compileVars } from '../../src/router/vars.ts';
import type { MatchRequest } from '../../src/router/types.ts';
import { request, routerWith } from './helpers.ts';

const JSON_TYPE = 'application/json';
const FORM_TYPE = 'application/x-www-form-urlencoded';

/** Matches once without the body, then (as a transport does) with it decoded. */
function matchWithBody(vars: unknown[], body: string, contentType: string | undefined): { first: string | undefined; wanted: boolean; second: string | undefined } {
  const router = routerWith('radixtree_uri', [{ id: 'r', uris: ['/hello'], vars }]);
  const req: MatchRequest = request('/hello', { method: 'POST' });
  const first = router.match(req)?.target;
  const wanted = req.bodyWanted === true;
  req.postArgs = decodePostArgs(Buffer.from(body), contentType);
  req.bodyWanted = false;
  return { first, wanted, second: router.match(req)?.target };
}

const openaiJson = '{ "model":"openai", "messages": [ { "role": "system", "content": "You are a mathematician" }] }';
const imageJson = JSON.stringify({ model: 'deepseek', messages: [{ role: 'system', content: [{ text: 'm', type: 'text' }, { text: 'm', type: 'image_url' }] }] });
const textJson = JSON.stringify({ model: 'deepseek', messages: [{ role: 'system', content: [{ text: 'm', type: 'text' }] }] });
const multipart = '--testboundary\r\nContent-Disposition: form-data; name="model"\r\n\r\nopenai\r\n--testboundary--\r\n';

// [description, vars, body, content type, matches with the body]
const table: [string, unknown[], string, string | undefined, boolean][] = [
  ['JSON field', [['post_arg.model', '==', 'openai']], openaiJson, JSON_TYPE, true],
  ['JSON field, other value', [['post_arg.model', '==', 'deepseek']], openaiJson, JSON_TYPE, false],
  ['JSON with charset', [['post_arg.model', '==', 'openai']], openaiJson, 'application/json; charset=utf-8', true],
  ['urlencoded', [['post_arg.model', '==', 'openai']], 'model=openai&messages[0][role]=system&messages[0][content]=You%20are', FORM_TYPE, true],
  ['urlencoded, + and %XX decoded', [['post_arg.q', '==', 'a b!']], 'q=a+b%21', FORM_TYPE, true],
  ['urlencoded, repeated name is a list', [['post_arg.tag', 'has', 'b']], 'tag=a&tag=b', FORM_TYPE, true],
  ['urlencoded, bare name is true', [['post_arg.flag', '==', true]], 'flag&x=1', FORM_TYPE, true],
  ['multipart field', [['post_arg.model', '==', 'openai']], multipart, 'multipart/form-data; boundary=testboundary', true],
  ['multipart with LF line ends (APISIX test body)', [['post_arg.model', '==', 'openai']], multipart.replaceAll('\r\n', '\n'), 'multipart/form-data; boundary=testboundary', true],
  ['multipart quoted boundary, first part wins', [['post_arg.a', '==', '1']], '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n2\r\n--b--\r\n', 'multipart/form-data; boundary="b"', true],
  ['multipart value keeps inner line breaks', [['post_arg.t', '==', 'x\r\ny']], '--b\r\nContent-Disposition: form-data; name="t"\r\n\r\nx\r\ny\r\n--b--\r\n', 'multipart/form-data; boundary=b', true],
  ['no content type: nothing', [['post_arg.model', '==', 'openai']], multipart, undefined, false],
  ['text/plain: nothing', [['post_arg.model', '==', 'openai']], openaiJson, 'text/plain', false],
  ['JSON body sent as a form: no such field', [['post_arg.model', '==', 'openai']], openaiJson, FORM_TYPE, false],
  ['malformed JSON: nothing', [['post_arg.model', '==', 'openai']], '{"model":"openai"', JSON_TYPE, false],
  ['empty body: nothing', [['post_arg.model', '==', null]], '', JSON_TYPE, true],
  ['missing field is nil', [['post_arg.nope', '==', null]], openaiJson, JSON_TYPE, true],
  ['missing field ~= x holds', [['post_arg.nope', '~=', 'x']], openaiJson, JSON_TYPE, true],
  ['nested path', [['post_arg.model.name', '==', 'deepseek']], '{"model":{"name":"deepseek"}}', JSON_TYPE, true],
  ['nested path through a string', [['post_arg.model.name', '==', 'deepseek']], '{"model":"deepseek"}', JSON_TYPE, false],
  ['a dotted path does not index arrays (Lua lists)', [['post_arg.messages.0.role', '==', 'system']], openaiJson, JSON_TYPE, false],
  ['JSONPath wildcard with has', [['post_arg.messages[*].content[*].type', 'has', 'image_url']], imageJson, JSON_TYPE, true],
  ['JSONPath wildcard with has, absent value', [['post_arg.messages[*].content[*].type', 'has', 'image_url']], textJson, JSON_TYPE, false],
  ['JSONPath index is a list: == never holds', [['post_arg.messages[0].role', '==', 'system']], openaiJson, JSON_TYPE, false],
  ['JSONPath index with has', [['post_arg.messages[0].role', 'has', 'system']], openaiJson, JSON_TYPE, true],
  ['JSONPath recursive descent', [['post_arg.messages..type', 'has', 'image_url']], imageJson, JSON_TYPE, true],
  ['post_arg..type is the field "type" (APISIX strips 9 characters: ".type" has no "..")', [['post_arg..type', '==', 'x']], '{"type":"x"}', JSON_TYPE, true],
  ['JSONPath selecting nothing is nil', [['post_arg.messages[5].role', '==', null]], openaiJson, JSON_TYPE, true],
  ['JSONPath slice', [['post_arg.a[1:]', 'has', 3]], '{"a":[1,2,3]}', JSON_TYPE, true],
  ['JSONPath quoted member', [['post_arg.a[\'b c\']', 'has', 1]], '{"a":{"b c":1}}', JSON_TYPE, true],
  ['JSON number == number', [['post_arg.n', '==', 18]], '{"n":18}', JSON_TYPE, true],
  ['JSON number == string (Lua: 18 ~= "18")', [['post_arg.n', '==', '18']], '{"n":18}', JSON_TYPE, false],
  ['JSON number >', [['post_arg.t', '>', 0.5]], '{"t":0.9}', JSON_TYPE, true],
  ['JSON boolean', [['post_arg.stream', '==', true]], '{"stream":true}', JSON_TYPE, true],
  ['JSON null is not nil (cjson.null)', [['post_arg.x', '==', null]], '{"x":null}', JSON_TYPE, false],
  ['JSON array field with has', [['post_arg.tags', 'has', 'b']], '{"tags":["a","b"]}', JSON_TYPE, true],
  ['regex on a number', [['post_arg.n', '~~', '^1[0-9]$']], '{"n":18}', JSON_TYPE, true],
  ['regex on an object', [['post_arg.o', '~~', '.*']], '{"o":{}}', JSON_TYPE, false],
  ['in', [['post_arg.model', 'in', ['a', 'openai']]], openaiJson, JSON_TYPE, true],
  ['own fields only', [['post_arg.constructor', '==', null]], '{}', JSON_TYPE, true],
  ['negated test', [['post_arg.model', '!', '==', 'openai']], openaiJson, JSON_TYPE, false],
  ['post_arg_<name>, urlencoded', [['post_arg_test', '==', 'test']], 'test=test', FORM_TYPE, true],
  ['post_arg_<name>, urlencoded with charset', [['post_arg_test', '==', 'test']], 'test=test', FORM_TYPE + ';charset=utf-8', true],
  ['post_arg_<name>, first of repeated', [['post_arg_test', '==', 'a']], 'test=a&test=b', FORM_TYPE, true],
  ['post_arg_<name> reads no JSON', [['post_arg_model', '==', 'openai']], openaiJson, JSON_TYPE, false],
  ['post_arg_<name> missing', [['post_arg_test', '==', 'test']], 'other=test', FORM_TYPE, false],
];

describe('post_arg vars', () => {
  for (const [name, vars, body, type, expected] of table) {
    it(name, () => {
      const { first, wanted, second } = matchWithBody(vars, body, type);
      assert.equal(first, undefined, 'no route before the body is read');
      assert.equal(wanted, true, 'the first match asks for the body');
      assert.equal(second, expected ? 'r' : undefined);
    });
  }
});

describe('the lazy "needs body" match', () => {
  it('a route decided before any post_arg route never asks for the body', () => {
    const router = routerWith('radixtree_uri', [
      { id: 'plain', uris: ['/a'], priority: 10 },
      { id: 'body', uris: ['/a'], vars: [['post_arg.x', '==', '1']] },
    ]);
    const req = request('/a', { method: 'POST' });
    assert.equal(router.match(req)?.target, 'plain');
    assert.equal(req.bodyWanted, undefined);
  });

  it('a post_arg route before others stops the match; the second match decides between them', () => {
    const router = routerWith('radixtree_uri', [
      { id: 'body', uris: ['/a'], priority: 10, vars: [['post_arg.x', '==', '1']] },
      { id: 'plain', uris: ['/a'] },
    ]);
    const req = request('/a', { method: 'POST' });
    assert.equal(router.match(req), undefined);
    assert.equal(req.bodyWanted, true);
    req.postArgs = decodePostArgs(Buffer.from('{"x":"1"}'), JSON_TYPE);
    assert.equal(router.match(req)?.target, 'body');
    req.postArgs = decodePostArgs(Buffer.from('{"x":"2"}'), JSON_TYPE);
    assert.equal(router.match(req)?.target, 'plain');
  });

  it('a negated post_arg test does not match before the body is read', () => {
    const router = routerWith('radixtree_uri', [{ id: 'r', uris: ['/a'], vars: [['post_arg.x', '!', '==', '1']] }]);
    const req = request('/a', { method: 'POST' });
    assert.equal(router.match(req), undefined);
    assert.equal(req.bodyWanted, true);
  });

  it('AND short-circuits: a failing header test never asks for the body (as lua-resty-expr)', () => {
    const router = routerWith('radixtree_uri', [{ id: 'r', uris: ['/a'], vars: [['http_x', '==', 'y'], ['post_arg.x', '==', '1']] }]);
    const req = request('/a', { method: 'POST' });
    assert.equal(router.match(req), undefined);
    assert.equal(req.bodyWanted, undefined);
  });

  it('host groups: a post_arg route in the exact host group stops the host-less ones too', () => {
    const router = routerWith('radixtree_host_uri', [
      { id: 'hosted', uris: ['/a'], hosts: ['example.com'], vars: [['post_arg.x', '==', '1']] },
      { id: 'any', uris: ['/a'] },
    ]);
    const req = request('/a', { method: 'POST' });
    assert.equal(router.match(req), undefined);
    req.postArgs = decodePostArgs(Buffer.from('x=2'), FORM_TYPE);
    assert.equal(router.match(req)?.target, 'any');
  });
});

describe('post_arg compilation', () => {
  it('an invalid JSONPath is rejected (APISIX: "invalid expression")', () => {
    assert.throws(() => routerWith('radixtree_uri', [{ id: 'r', uris: ['/a'], vars: [['post_arg.messages[.content[*].type', 'has', 'image_url']] }]), /invalid expression/);
  });
  it('JSONPath filters are rejected with a reason', () => {
    assert.throws(() => routerWith('radixtree_uri', [{ id: 'r', uris: ['/a'], vars: [['post_arg.a[?(@.b)]', 'has', 1]] }]), /not supported/);
  });
  it('plugin expressions (compiled without the option) still reject post_arg', () => {
    assert.throws(() => compileVars([['post_arg.model', '==', 'x']]), /unsupported variable 'post_arg.model'/);
    assert.throws(() => compileVars([['post_arg_model', '==', 'x']]), /unsupported variable/);
    assert.doesNotThrow(() => compileVars([['post_arg.model', '==', 'x']], { postArgs: true }));
  });
  it('a deep body with a recursive-descent path is bounded, not quadratic', () => {
    const depth = 20_000;
    const body = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const started = performance.now();
    const { second } = matchWithBody([['post_arg..a..a', 'has', 1]], body, JSON_TYPE);
    assert.equal(second, undefined);
    assert.ok(performance.now() - started < 5000);
  });
});
