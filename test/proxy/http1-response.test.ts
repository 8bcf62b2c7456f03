/**
 * The upstream response parser (src/proxy/http1/response-parser.ts): framing (Content-Length,
 * chunked, until close; no body for HEAD, 1xx, 204, 304), interim responses, 101 and CONNECT
 * tunnels, keep-alive, and the strict errors, each checked under every split of the bytes (whole,
 * byte by byte, random cuts): the outcome must not depend on how TCP cut the stream.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Http1ErrorCode as E } from '../../src/proxy/http1/errors.ts';
import { ResponseParser } from '../../src/proxy/http1/response-parser.ts';
import { parseResponses, splitBytes, type ResponseOutcome, type SeenResponse, type Split } from './http1-harness.ts';

const SPLITS: Split[] = ['whole', 'bytes', { seed: 1 }, { seed: 2 }, { seed: 3 }];

/** Parses under every split, asserts they agree, returns the outcome. */
function parse(text: string, methods: string[] = ['GET']): ResponseOutcome {
  const bytes = Buffer.from(text, 'latin1');
  const whole = parseResponses(bytes, methods, 'whole');
  for (const split of SPLITS.slice(1)) {
    assert.deepEqual(parseResponses(bytes, methods, split), whole, `split ${JSON.stringify(split)} of ${JSON.stringify(text.slice(0, 60))}`);
  }
  return whole;
}

function only(outcome: ResponseOutcome): SeenResponse {
  assert.equal(outcome.error, undefined, `no error expected, got ${outcome.error}`);
  assert.equal(outcome.responses.length, 1);
  return outcome.responses[0]!;
}

const OK = 'HTTP/1.1 200 OK\r\n';

describe('HTTP/1.1 response parser: framing', () => {
  it('Content-Length body', () => {
    const r = only(parse(`${OK}Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello`));
    assert.equal(r.status, 200);
    assert.equal(r.reason, 'OK');
    assert.equal(r.httpVersion, '1.1');
    assert.deepEqual(r.rawHeaders, ['Content-Type', 'text/plain', 'Content-Length', '5']);
    assert.equal(r.framing, 'length');
    assert.equal(r.body, 'hello');
    assert.ok(r.complete && r.keepAlive);
  });

  it('Content-Length: 0 and no body', () => {
    const r = only(parse(`${OK}Content-Length: 0\r\n\r\n`));
    assert.equal(r.body, '');
    assert.ok(r.complete && r.keepAlive);
  });

  it('chunked body with extensions and trailers (dropped)', () => {
    const r = only(parse(`${OK}Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6;a="b;c"\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n`));
    assert.equal(r.framing, 'chunked');
    assert.equal(r.body, 'hello world');
    assert.ok(r.complete && r.keepAlive);
  });

  it('chunked wins when it is the last coding (gzip, chunked), and across two headers', () => {
    assert.equal(only(parse(`${OK}Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`)).body, 'abc');
    assert.equal(only(parse(`${OK}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`)).body, 'abc');
  });

  it('a Transfer-Encoding not ending in chunked is read until the upstream closes (RFC 9112 §6.3)', () => {
    const r = only(parse(`${OK}Transfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n0\r\n\r\n`));
    assert.equal(r.framing, 'close');
    assert.equal(r.body, '3\r\nabc\r\n0\r\n\r\n');
    assert.ok(r.complete);
    assert.equal(r.keepAlive, false);
  });

  it('no Content-Length, no chunked: the body ends when the upstream closes', () => {
    const r = only(parse(`${OK}Content-Type: text/plain\r\n\r\nall of this until EOF`));
    assert.equal(r.framing, 'close');
    assert.equal(r.body, 'all of this until EOF');
    assert.ok(r.complete);
    assert.equal(r.keepAlive, false);
  });

  it('HEAD response: no body whatever Content-Length says; the next response follows', () => {
    const out = parse(`${OK}Content-Length: 1000\r\n\r\n${OK}Content-Length: 2\r\n\r\nok`, ['HEAD', 'GET']);
    assert.equal(out.error, undefined);
    assert.deepEqual(out.responses.map((r) => [r.framing, r.body, r.complete]), [['none', '', true], ['length', 'ok', true]]);
  });

  it('HEAD response with Transfer-Encoding: chunked has no body either', () => {
    const out = parse(`${OK}Transfer-Encoding: chunked\r\n\r\n${OK}Content-Length: 0\r\n\r\n`, ['HEAD', 'GET']);
    assert.deepEqual(out.responses.map((r) => r.framing), ['none', 'length']);
  });

  it('204 and 304 have no body', () => {
    for (const status of ['204 No Content', '304 Not Modified']) {
      const out = parse(`HTTP/1.1 ${status}\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n`, ['GET', 'GET']);
      assert.equal(out.error, undefined);
      assert.deepEqual(out.responses.map((r) => [r.status, r.framing, r.body]), [[Number(status.slice(0, 3)), 'none', ''], [200, 'length', '']]);
    }
  });

  it('a 204 followed by body bytes is an upstream protocol violation (UNEXPECTED_DATA)', () => {
    const out = parse('HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello');
    assert.equal(out.responses.length, 1);
    assert.equal(out.error, E.UNEXPECTED_DATA);
  });

  it('bytes beyond Content-Length are UNEXPECTED_DATA (the connection must not be reused)', () => {
    const out = parse(`${OK}Content-Length: 2\r\n\r\nokAND MORE`);
    assert.equal(out.responses[0]!.body, 'ok');
    assert.equal(out.error, E.UNEXPECTED_DATA);
  });

  it('three keep-alive responses in a row (pooled connection)', () => {
    const out = parse(`${OK}Content-Length: 1\r\n\r\na${OK}Transfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nc`, ['GET', 'POST', 'GET']);
    assert.equal(out.error, undefined);
    assert.deepEqual(out.responses.map((r) => `${r.status} ${r.body} ${r.keepAlive}`), ['200 a true', '200 b true', '404 c true']);
  });

  it('a status line without a reason phrase, with or without the space', () => {
    assert.equal(only(parse('HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n')).reason, '');
    assert.equal(only(parse('HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n')).reason, '');
    assert.equal(only(parse('HTTP/1.1 418 I\'m a teapot \xe9\r\nContent-Length: 0\r\n\r\n')).reason, 'I\'m a teapot \xe9');
  });

  it('leading CRLF before a response is skipped', () => {
    assert.equal(only(parse(`\r\n${OK}Content-Length: 0\r\n\r\n`)).status, 200);
  });
});

describe('HTTP/1.1 response parser: keep-alive', () => {
  const cases: [string, boolean][] = [
    [`${OK}Content-Length: 0\r\n\r\n`, true],
    [`${OK}Connection: close\r\nContent-Length: 0\r\n\r\n`, false],
    [`${OK}Connection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n`, false],
    ['HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n', false],
    ['HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n', true],
    ['HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n', false], // close-delimited
  ];
  for (const [text, keepAlive] of cases) {
    it(`${JSON.stringify(text.split('\r\n').slice(0, 2).join(' | '))} → keepAlive ${keepAlive}`, () => {
      assert.equal(only(parse(text)).keepAlive, keepAlive);
    });
  }

  it('after a response that closes the connection, later bytes are ignored', () => {
    const out = parse(`${OK}Connection: close\r\nContent-Length: 1\r\n\r\naGARBAGE`);
    assert.equal(out.error, undefined);
    assert.equal(out.responses[0]!.body, 'a');
  });
});

describe('HTTP/1.1 response parser: 1xx and tunnels', () => {
  it('100 Continue, 102 and 103 Early Hints come before the final response, separately', () => {
    const out = parse(`HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n${OK}Content-Length: 2\r\n\r\nok`, ['POST']);
    const r = only(out);
    assert.deepEqual(r.interim, [100, 102, 103]);
    assert.equal(r.body, 'ok');
  });

  it('a 1xx carries no body even with Content-Length', () => {
    const r = only(parse(`HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n${OK}Content-Length: 0\r\n\r\n`));
    assert.deepEqual(r.interim, [100]);
  });

  it('101 Switching Protocols ends HTTP: the following bytes are the new protocol', () => {
    const out = parse('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi');
    assert.equal(out.responses[0]!.status, 101);
    assert.equal(out.detached, '\x81\x02hi');
  });

  it('2xx to CONNECT is a tunnel; a 407 to CONNECT is a normal response', () => {
    const tunnel = parse('HTTP/1.1 200 Connection established\r\n\r\nTLS bytes', ['CONNECT']);
    assert.equal(tunnel.detached, 'TLS bytes');
    const refused = only(parse('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno', ['CONNECT']));
    assert.equal(refused.body, 'no');
  });
});

describe('HTTP/1.1 response parser: errors (all answered 502)', () => {
  const errors: [string, string, string?][] = [
    ['HTTP/1.1 20 OK\r\n\r\n', E.INVALID_STATUS_LINE],
    ['HTTP/1.1 2000 OK\r\n\r\n', E.INVALID_STATUS_LINE],
    ['HTTP/1.1 099 Low\r\n\r\n', E.INVALID_STATUS_LINE],
    ['HTTP/1.1 600 High\r\n\r\n', E.INVALID_STATUS_LINE],
    ['HTTP/1.1200 OK\r\n\r\n', E.INVALID_STATUS_LINE],
    ['HTTP/2 200 OK\r\n\r\n', E.INVALID_VERSION],
    ['HTTP/2.0 200 OK\r\n\r\n', E.UNSUPPORTED_VERSION],
    ['HTTP/0.9 200 OK\r\n\r\n', E.UNSUPPORTED_VERSION],
    ['ICY 200 OK\r\n\r\n', E.INVALID_STATUS_LINE],
    ['<html>hello</html>', E.INVALID_STATUS_LINE],
    ['HTTP/1.1 200 OK\n\n', E.INVALID_LINE_ENDING],
    ['HTTP/1.1 200 OK\r\nX: a\n\r\n', E.INVALID_LINE_ENDING],
    ['HTTP/1.1 200 O\x00K\r\n\r\n', E.INVALID_STATUS_LINE],
    ['HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n', E.INVALID_HEADER_VALUE],
    ['HTTP/1.1 200 OK\r\nX Y: a\r\n\r\n', E.INVALID_HEADER_NAME],
    ['HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n', E.OBS_FOLD],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', E.CONTENT_LENGTH_WITH_TRANSFER_ENCODING],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na', E.DUPLICATE_CONTENT_LENGTH],
    ['HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n', E.INVALID_CONTENT_LENGTH],
    ['HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\na', E.INVALID_CONTENT_LENGTH],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n', E.INVALID_CHUNK_SIZE],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n', E.INVALID_CHUNK_SIZE],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n', E.CHUNK_SIZE_OVERFLOW],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n', E.INVALID_CHUNK_END],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 3\r\n\r\n', E.INVALID_TRAILER],
    [`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(17_000)}\r\n\r\n`, E.HEADERS_TOO_LARGE],
    [`HTTP/1.1 200 OK\r\n${'X: a\r\n'.repeat(101)}\r\n`, E.TOO_MANY_HEADERS],
    // cut short
    ['HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello', E.PREMATURE_EOF],
    ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', E.PREMATURE_EOF],
    ['HTTP/1.1 200 OK\r\nContent-Le', E.PREMATURE_EOF],
  ];
  for (const [text, code] of errors) {
    it(`${JSON.stringify(text.length > 70 ? text.slice(0, 70) + '...' : text)} → ${code}`, () => {
      assert.equal(parse(text).error, code);
    });
  }

  it('every response-side error maps to 502', () => {
    const parser = new ResponseParser({ onHead() {}, onBody() {}, onEnd() {}, onInterim() {} });
    parser.expectResponse('GET');
    const error = parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nX: \x00\r\n\r\n', 'latin1'));
    assert.equal(error?.status, 502);
    // and the parser stays failed
    assert.equal(parser.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\n')), error);
  });

  it('bytes from an idle upstream connection are refused', () => {
    const parser = new ResponseParser({ onHead() {}, onBody() {}, onEnd() {}, onInterim() {} });
    assert.equal(parser.execute(Buffer.from('HTTP/1.1 200 OK\r\n\r\n'))?.code, E.UNEXPECTED_DATA);
  });

  it('expectResponse() while a response is in progress is a programming error', () => {
    const parser = new ResponseParser({ onHead() {}, onBody() {}, onEnd() {}, onInterim() {} });
    parser.expectResponse('GET');
    parser.execute(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe'));
    assert.throws(() => parser.expectResponse('GET'), /still being parsed/);
  });
});

describe('HTTP/1.1 response parser: pausing', () => {
  it('a handler that pauses on every event sees the same responses, resumed one step at a time', () => {
    const text = `HTTP/1.1 100 Continue\r\n\r\n${OK}Content-Length: 5\r\n\r\nhello${OK}Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n`;
    for (const split of SPLITS) {
      const events: string[] = [];
      const methods = ['POST', 'GET'];
      let next = 0;
      const parser: ResponseParser = new ResponseParser({
        onInterim: (h) => (events.push(`interim ${h.status}`), true),
        onHead: (h) => (events.push(`head ${h.status}`), true),
        onBody: (b) => (events.push(`body ${b.toString('latin1')}`), true),
        onEnd: () => {
          events.push('end');
          if (next < methods.length) parser.expectResponse(methods[next++]!);
          return true;
        },
      });
      parser.expectResponse(methods[next++]!);
      for (const chunk of splitBytes(Buffer.from(text, 'latin1'), split)) {
        assert.equal(parser.execute(chunk), undefined);
        while (parser.isPaused) assert.equal(parser.resume(), undefined);
      }
      assert.equal(parser.finish(), undefined);
      // bodies arrive in more pieces under some splits: join adjacent body events
      const collapse = (list: string[]) => list.reduce<string[]>((acc, e) => {
        const last = acc[acc.length - 1];
        if (last?.startsWith('body ') && e.startsWith('body ')) acc[acc.length - 1] = last + e.slice(5);
        else acc.push(e);
        return acc;
      }, []);
      assert.deepEqual(collapse(events), ['interim 100', 'head 200', 'body hello', 'end', 'head 200', 'body abcde', 'end'], JSON.stringify(split));
    }
  });
});
