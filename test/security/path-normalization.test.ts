import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { normalizePath } from '../../src/router/path.ts';

describe('normalizePath', () => {
  // [raw, match, forward]
  const table: [string, string, string][] = [
    ['/', '/', '/'],
    ['/a/b', '/a/b', '/a/b'],
    ['/a/b/', '/a/b/', '/a/b/'],
    ['/a/.b/..c/...', '/a/.b/..c/...', '/a/.b/..c/...'], // dots inside names are not dot segments
    ['//a///b', '/a/b', '/a/b'],
    ['/a/./b', '/a/b', '/a/b'],
    ['/a/b/../c', '/a/c', '/a/c'],
    ['/a/b/..', '/a/', '/a/'],
    ['/a/b/.', '/a/b/', '/a/b/'],
    ['/../../etc/passwd', '/etc/passwd', '/etc/passwd'], // never above the root
    ['/a/%2e%2e/b//c', '/b/c', '/b/c'], // decoded first, then normalized
    ['/a/%2E/b', '/a/b', '/a/b'],
    ['/public/..%2fadmin', '/admin', '/admin'], // an encoded slash is a separator, as in nginx
    ['/a%2Fb', '/a/b', '/a%2Fb'], // no structural change: forwarded as the client sent it
    ['/%61dmin', '/admin', '/%61dmin'],
    ['/caf%C3%A9', '/café', '/caf%C3%A9'],
    ['/caf%C3%A9/../x%20y', '/x y', '/x%20y'], // re-encoded only where required
    ['/a//b%3Fc%23d%25', '/a/b?c#d%', '/a/b%3Fc%23d%25'],
    ["/k/./v:1@x;p=1,2!$&'()*+~", "/k/v:1@x;p=1,2!$&'()*+~", "/k/v:1@x;p=1,2!$&'()*+~"],
    ['//', '/', '/'],
    ['/.', '/', '/'],
  ];
  for (const [raw, match, forward] of table) {
    it(`${raw} → match ${match}, forward ${forward}`, () => {
      assert.deepEqual(normalizePath(raw), { match, forward });
    });
  }

  const malformed = ['/a%', '/a%2', '/a%zz', '/a%00b', '/a\0b', 'a/b', '', '/a/%G1'];
  for (const raw of malformed) {
    it(`${JSON.stringify(raw)} is malformed`, () => assert.equal(normalizePath(raw), undefined));
  }

  it('keeps the same string for already-normal paths (no allocation on the common path)', () => {
    const raw = '/api/v1/users/42';
    const result = normalizePath(raw);
    assert.ok(result !== undefined);
    assert.equal(result.match, raw);
    assert.equal(result.forward, raw);
  });
});
