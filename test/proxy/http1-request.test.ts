/**
 * The request parser as the connection layer uses it: the head's fields, pausing between pipelined
 * requests, holding an Upgrade request's bytes until the upstream answers, CONNECT, zero-copy
 * bodies, the configurable limits, and the contract violations it refuses loudly.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Http1ErrorCode as E } from '../../src/proxy/http1/errors.ts';
import { RequestParser, type RequestHead } from '../../src/proxy/http1/request-parser.ts';
import { parseRequests, splitBytes, type Split } from './http1-harness.ts';

const SPLITS: Split[] = ['whole', 'bytes', { seed: 7 }];

/** A parser whose callbacks log events; `pauseOn` names the events that return true. */
function recorder(pauseOn: string[] = []) {
  const events: string[] = [];
  const heads: RequestHead[] = [];
  const bodies: Buffer[] = [];
  const parser = new RequestParser({
    onHead(head) {
      heads.push(head);
      events.push(`head ${head.method} ${head.target}`);
      return pauseOn.includes('head');
    },
    onBody(chunk) {
      bodies.push(chunk);
      events.push(`body ${chunk.toString('latin1')}`);
      return pauseOn.includes('body');
    },
    onEnd() {
      events.push('end');
      return pauseOn.includes('end');
    },
  });
  return { parser, events, heads, bodies };
}

describe('HTTP/1.1 request parser: the head', () => {
  it('carries method, target, version, raw headers (names as sent, values trimmed), framing and flags', () => {
    const { parser, heads } = recorder();
    assert.equal(
      parser.execute(Buffer.from('PUT /a?b=c HTTP/1.1\r\nHost: api\r\nX-Mixed-Case:  v w \t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc', 'latin1')),
      undefined,
    );
    const h = heads[0]!;
    assert.deepEqual(
      { method: h.method, target: h.target, v: h.httpVersion, raw: h.rawHeaders, framing: h.framing, cl: h.contentLength, ka: h.keepAlive, up: h.upgrade, ec: h.expectContinue, eo: h.expectOther, host: h.host, body: h.hasBody },
      { method: 'PUT', target: '/a?b=c', v: '1.1', raw: ['Host', 'api', 'X-Mixed-Case', 'v w', 'Expect', '100-continue', 'Content-Length', '3'], framing: 'length', cl: 3, ka: true, up: false, ec: true, eo: false, host: 'api', body: true },
    );
  });

  it('an Expect other than 100-continue is flagged (node answers it 417)', () => {
    const { parser, heads } = recorder();
    parser.execute(Buffer.from('GET / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n'));
    assert.equal(heads[0]!.expectOther, true);
    assert.equal(heads[0]!.expectContinue, false);
  });

  it('Content-Length: 0 is length framing without a body; chunked has a body', () => {
    const { parser, heads } = recorder();
    parser.execute(Buffer.from('POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'));
    assert.deepEqual(heads.map((h) => [h.framing, h.contentLength, h.hasBody]), [['length', 0, false], ['chunked', -1, true]]);
  });

  it('more than 16 headers (the marks grow) keep their order and values', () => {
    const headers = Array.from({ length: 60 }, (_, i) => `H${i}: value ${i}\r\n`).join('');
    for (const split of SPLITS) {
      const out = parseRequests(Buffer.from(`GET / HTTP/1.1\r\n${headers}\r\n`), split);
      assert.equal(out.error, undefined);
      assert.deepEqual(out.requests[0]!.rawHeaders, Array.from({ length: 60 }, (_, i) => [`H${i}`, `value ${i}`]).flat());
    }
  });
});

describe('HTTP/1.1 request parser: pausing and pipelining', () => {
  const pipelined = 'GET /1 HTTP/1.1\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET /3 HTTP/1.1\r\n\r\n';

  it('pausing at each end answers pipelined requests one at a time, whatever the split', () => {
    for (const split of SPLITS) {
      const { parser, events } = recorder(['end']);
      const endsAtPause: number[] = [];
      for (const chunk of splitBytes(Buffer.from(pipelined), split)) {
        assert.equal(parser.execute(chunk), undefined);
        // the connection answers the request, then asks for the next
        while (parser.isPaused) {
          endsAtPause.push(events.filter((e) => e === 'end').length);
          assert.equal(parser.resume(), undefined);
        }
      }
      const joined = events.join(',').replace(/body a,body b/, 'body ab');
      assert.equal(joined, 'head GET /1,end,head POST /2,body ab,end,head GET /3,end', JSON.stringify(split));
      // one request per pause: never the next one's events before the connection resumed
      assert.deepEqual(endsAtPause, [1, 2, 3]);
    }
  });

  it('while paused, further chunks are kept, not parsed', () => {
    const { parser, events } = recorder(['end']);
    parser.execute(Buffer.from('GET /1 HTTP/1.1\r\n\r\nGET /2 HT'));
    assert.deepEqual(events, ['head GET /1', 'end']);
    parser.execute(Buffer.from('TP/1.1\r\n\r\n'));
    assert.deepEqual(events, ['head GET /1', 'end']);
    assert.equal(parser.bufferedBytes, 19);
    parser.resume();
    assert.deepEqual(events, ['head GET /1', 'end', 'head GET /2', 'end']);
  });

  it('a request that ended while paused on its head gets its end on resume, even without more bytes', () => {
    const { parser, events } = recorder(['head']);
    parser.execute(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    assert.deepEqual(events, ['head GET /']);
    parser.resume();
    assert.deepEqual(events, ['head GET /', 'end']);
    assert.ok(parser.isIdle);
  });

  it('after a request that closes the connection, later bytes are ignored', () => {
    const { parser, events } = recorder();
    assert.equal(parser.execute(Buffer.from('GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n')), undefined);
    assert.deepEqual(events, ['head GET /', 'end']);
    assert.ok(parser.isClosed);
    assert.equal(parser.execute(Buffer.from('\x00garbage')), undefined);
  });
});

describe('HTTP/1.1 request parser: upgrade and CONNECT', () => {
  const upgrade = 'GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';

  it('upgrade: paused on the head, detach() returns every byte after it (also those that came while paused)', () => {
    for (const split of SPLITS) {
      const { parser, heads } = recorder(['head']);
      const chunks = splitBytes(Buffer.from(upgrade + 'frame-1', 'latin1'), split);
      for (const chunk of chunks) parser.execute(chunk);
      parser.execute(Buffer.from('frame-2'));
      assert.equal(heads[0]!.upgrade, true);
      assert.equal(parser.detach()?.toString(), 'frame-1frame-2');
      assert.throws(() => parser.execute(Buffer.from('x')), /after detach/);
    }
  });

  it('upgrade declined by the upstream: resume() and the connection carries HTTP on', () => {
    const { parser, events } = recorder(['head']);
    parser.execute(Buffer.from(upgrade + 'GET /next HTTP/1.1\r\n\r\n'));
    assert.deepEqual(events, ['head GET /ws']);
    parser.resume();
    assert.deepEqual(events, ['head GET /ws', 'end', 'head GET /next']);
  });

  it('CONNECT stops the parser: the rest is a tunnel, not requests', () => {
    const { parser, events, heads } = recorder();
    parser.execute(Buffer.from('CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n'));
    assert.deepEqual(events, ['head CONNECT h:443']);
    assert.equal(heads[0]!.upgrade, true);
    assert.equal(heads[0]!.keepAlive, false);
    assert.ok(parser.isPaused);
    assert.equal(parser.detach()?.toString(), 'GET /smuggled HTTP/1.1\r\n\r\n');
  });
});

describe('HTTP/1.1 request parser: bodies', () => {
  it('body chunks are views of the chunk given to execute(), not copies', () => {
    const { parser, bodies } = recorder();
    const chunk = Buffer.from('POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello');
    parser.execute(chunk);
    assert.equal(bodies[0]!.toString(), 'hello');
    assert.equal(bodies[0]!.buffer, chunk.buffer);
    // a chunked body too (one view per chunk of data)
    const { parser: p2, bodies: b2 } = recorder();
    const chunked = Buffer.from('POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    p2.execute(chunked);
    assert.equal(b2[0]!.buffer, chunked.buffer);
  });

  it('a head straddling chunks still gives zero-copy bodies from the chunk that ends it', () => {
    const { parser, bodies } = recorder();
    parser.execute(Buffer.from('POST / HTTP/1.1\r\nContent-Le'));
    const rest = Buffer.from('ngth: 5\r\n\r\nhello');
    parser.execute(rest);
    assert.equal(bodies[0]!.toString(), 'hello');
    assert.equal(bodies[0]!.buffer, rest.buffer);
  });

  it('the client closing mid-body is PREMATURE_EOF (the upstream request must be aborted)', () => {
    const { parser } = recorder();
    parser.execute(Buffer.from('POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhello'));
    assert.equal(parser.finish()?.code, E.PREMATURE_EOF);
  });

  it('a 100 MB Content-Length body streams through in slices without being held', () => {
    const { parser } = recorder();
    let total = 0;
    parser.handler = { onHead() {}, onBody: (b) => void (total += b.length), onEnd() {} };
    parser.execute(Buffer.from(`POST / HTTP/1.1\r\nContent-Length: ${100 * 1024 * 1024}\r\n\r\n`));
    const block = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < 1600; i++) assert.equal(parser.execute(block), undefined);
    assert.equal(total, 100 * 1024 * 1024);
    assert.ok(parser.isIdle);
  });
});

describe('HTTP/1.1 request parser: limits and contract', () => {
  it('maxTargetSize → 414, maxHeaderCount → 431, maxHeaderSize → 431, maxChunkExtensionSize → 413', () => {
    const cases: [string, Parameters<typeof parseRequests>[2], string, number][] = [
      [`GET /${'a'.repeat(9000)} HTTP/1.1\r\n\r\n`, { maxTargetSize: 8192 }, E.TARGET_TOO_LONG, 414],
      [`GET / HTTP/1.1\r\n${'X: y\r\n'.repeat(6)}\r\n`, { maxHeaderCount: 5 }, E.TOO_MANY_HEADERS, 431],
      [`GET / HTTP/1.1\r\nX: ${'y'.repeat(2000)}\r\n\r\n`, { maxHeaderSize: 1024 }, E.HEADERS_TOO_LARGE, 431],
      [`POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;${'e'.repeat(200)}\r\n`, { maxChunkExtensionSize: 100 }, E.CHUNK_EXTENSIONS_TOO_LARGE, 413],
    ];
    for (const [text, limits, code, status] of cases) {
      for (const split of SPLITS) {
        const out = parseRequests(Buffer.from(text), split, limits);
        assert.deepEqual([out.error, out.status], [code, status], `${text.slice(0, 30)} ${JSON.stringify(split)}`);
      }
    }
  });

  it('an error is returned once and for ever after; the offset points at the offending byte', () => {
    const { parser } = recorder();
    const error = parser.execute(Buffer.from('GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n'));
    assert.equal(error?.code, E.INVALID_HEADER_VALUE);
    assert.equal(error?.offset, 20);
    assert.equal(parser.execute(Buffer.from('GET / HTTP/1.1\r\n\r\n')), error);
    assert.equal(parser.finish(), error);
  });

  it('execute() from inside a callback is a programming error', () => {
    const parser: RequestParser = new RequestParser({
      onHead: () => void parser.execute(Buffer.from('x')),
      onBody() {},
      onEnd() {},
    });
    assert.throws(() => parser.execute(Buffer.from('GET / HTTP/1.1\r\n\r\n')), /own callbacks/);
  });
});
