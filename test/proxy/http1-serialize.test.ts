/**
 * Writing heads and chunked bodies (src/proxy/http1/serialize.ts): what is written parses back to
 * the same thing, byte for byte (latin1 values included), and the header checks used at the edges
 * refuse what would be header injection.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  chunkHeader,
  encodeChunk,
  isValidHeaderName,
  isValidHeaderValue,
  LAST_CHUNK,
  requestHead,
  responseHead,
} from '../../src/proxy/http1/serialize.ts';
import { parseRequests, parseResponses } from './http1-harness.ts';

describe('HTTP/1.1 serialization', () => {
  it('a request head round-trips through the request parser (obs-text values intact)', () => {
    const raw = ['Host', 'example.com', 'X-Latin1', 'caf\xe9 \xff', 'Accept', '*/*', 'Content-Length', '3'];
    const head = requestHead('POST', '/a?b=c', raw);
    assert.equal(head, 'POST /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Latin1: caf\xe9 \xff\r\nAccept: */*\r\nContent-Length: 3\r\n\r\n');
    const out = parseRequests(Buffer.from(head + 'abc', 'latin1'), 'whole');
    assert.equal(out.error, undefined);
    assert.deepEqual(out.requests[0]!.rawHeaders, raw);
    assert.equal(out.requests[0]!.body, 'abc');
  });

  it('a response head round-trips, with the standard reason phrase by default', () => {
    assert.equal(responseHead(404, ['Content-Length', '0']), 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    assert.equal(responseHead(299, []), 'HTTP/1.1 299 \r\n\r\n');
    const head = responseHead(200, ['Transfer-Encoding', 'chunked'], 'Fine');
    const body = encodeChunk(Buffer.from('hello')).toString('latin1') + chunkHeader(6) + ' world\r\n' + LAST_CHUNK;
    const out = parseResponses(Buffer.from(head + body, 'latin1'), ['GET'], 'bytes');
    assert.equal(out.error, undefined);
    assert.deepEqual([out.responses[0]!.reason, out.responses[0]!.body, out.responses[0]!.complete], ['Fine', 'hello world', true]);
  });

  it('chunk framing: hex size, data, CRLF; the last chunk with an empty trailer section', () => {
    assert.equal(chunkHeader(255), 'ff\r\n');
    assert.equal(encodeChunk(new Uint8Array([1, 2])).toString('latin1'), '2\r\n\x01\x02\r\n');
    assert.equal(LAST_CHUNK, '0\r\n\r\n');
  });

  it('header names: non-empty tokens only', () => {
    for (const ok of ['Host', 'x-a', "!#$%&'*+-.^_`|~09azAZ"]) assert.ok(isValidHeaderName(ok), ok);
    for (const bad of ['', 'a b', 'a:b', 'a\r\nb', 'é', 'a\x00', '(x)']) assert.ok(!isValidHeaderName(bad), JSON.stringify(bad));
  });

  it('header values: no CR, LF, NUL or other controls, no surrounding whitespace', () => {
    for (const ok of ['', 'v', 'a b\tc', 'caf\xe9', '"quoted"']) assert.ok(isValidHeaderValue(ok), JSON.stringify(ok));
    for (const bad of ['a\r\nX-Injected: 1', 'a\nb', 'a\rb', 'a\x00', 'a\x7f', ' lead', 'trail\t', 'wide \u0100']) {
      assert.ok(!isValidHeaderValue(bad), JSON.stringify(bad));
    }
  });
});
