/**
 * Issue 6, item 12: request-head edge cases, sent as raw bytes through the gateway process.
 * - more header lines than proxy.max_header_count → 431 (node:http used to drop the lines after the
 *   2000th silently: a Content-Length there framed a body the upstream never heard of);
 * - a trailing-dot Host matches its host route, as in nginx;
 * - duplicate Host, or a Host that is not `host[:port]` → 400;
 * - TRACE → 405 unless proxy.allow_trace.
 * Every refusal is APISIX-style JSON; 400/431 close the connection, 405 keeps it.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';
import {
  finalResponses,
  headerValue,
  parseResponses,
  rawExchange,
  responsesReceived,
  startRecordingUpstream,
  type ParsedResponse,
  type RecordingUpstream,
} from './helpers.ts';

/** `count` header lines `X-H<i>: v` (5+ bytes each: 2,000 of them fit node's 16 KB head limit) */
function headerLines(count: number): string {
  let lines = '';
  for (let i = 0; i < count; i++) lines += `X-H${i}: v\r\n`;
  return lines;
}

describe('request head limits and Host rules', () => {
  let api: RecordingUpstream;
  let other: RecordingUpstream;
  let gw: GatewayProcess;
  let traceGw: GatewayProcess;

  before(async () => {
    api = await startRecordingUpstream('api');
    other = await startRecordingUpstream('other');
    const routes = {
      routes: [
        { id: 'api', uri: '/*', host: 'api.example.com', upstream: { nodes: { [api.address]: 1 } } },
        { id: 'any', uri: '/*', upstream: { nodes: { [other.address]: 1 } } },
      ],
    };
    gw = await startGateway({ routes });
    traceGw = await startGateway({ routes, proxy: { allow_trace: true, max_header_count: 150 } });
  });

  after(async () => {
    await gw?.cleanup();
    await traceGw?.cleanup();
    await api?.close();
    await other?.close();
  });

  async function exchange(port: number, bytes: string, responses = 1, methods?: string[]) {
    api.reset();
    other.reset();
    const result = await rawExchange(port, bytes, { until: responsesReceived(responses, methods), timeoutMs: 3000, settleMs: 150 });
    const stream = parseResponses(result.received, { ended: result.closed !== 'open', requestMethods: methods });
    assert.equal(stream.error, undefined, result.text);
    const got = finalResponses(stream);
    assert.equal(got.length, responses, result.text);
    return { responses: got, result, forwarded: api.seen.length + other.seen.length };
  }

  function assertJsonError(response: ParsedResponse, status: number, message: string) {
    assert.equal(response.status, status);
    assert.equal(headerValue(response, 'content-type'), 'application/json');
    assert.deepEqual(JSON.parse(response.body.toString()), { error_msg: message });
  }

  describe('header count', () => {
    test('100 header lines (the default limit) are all forwarded', async () => {
      const { responses } = await exchange(gw.port, `GET /n HTTP/1.1\r\nHost: x.test\r\n${headerLines(99)}\r\n`);
      assert.equal(responses[0]!.status, 200);
      assert.ok(other.seen[0]!.headers['x-h98'] === 'v');
    });

    test('101 header lines → 431, closed, nothing forwarded', async () => {
      const { responses, result, forwarded } = await exchange(gw.port, `GET /n HTTP/1.1\r\nHost: x.test\r\n${headerLines(100)}\r\n`);
      assertJsonError(responses[0]!, 431, '431 Request Header Fields Too Large');
      assert.equal(headerValue(responses[0]!, 'connection'), 'close');
      assert.notEqual(result.closed, 'open');
      assert.equal(forwarded, 0);
    });

    test('a Content-Length after the 2000th line is never a body forwarded as empty: 431', async () => {
      const { responses, forwarded } = await exchange(gw.port, `POST /n HTTP/1.1\r\nHost: x.test\r\n${headerLines(2000)}Content-Length: 5\r\n\r\nhello`);
      assertJsonError(responses[0]!, 431, '431 Request Header Fields Too Large');
      assert.equal(forwarded, 0);
    });

    test('proxy.max_header_count raises the limit', async () => {
      const { responses } = await exchange(traceGw.port, `GET /n HTTP/1.1\r\nHost: x.test\r\n${headerLines(149)}\r\n`);
      assert.equal(responses[0]!.status, 200);
      const over = await exchange(traceGw.port, `GET /n HTTP/1.1\r\nHost: x.test\r\n${headerLines(150)}\r\n`);
      assert.equal(over.responses[0]!.status, 431);
    });
  });

  describe('Host', () => {
    for (const host of ['api.example.com.', 'API.Example.COM.:8080']) {
      test(`trailing dot: ${host} matches the api.example.com route`, async () => {
        const { responses } = await exchange(gw.port, `GET /t HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        assert.equal(responses[0]!.status, 200);
        assert.equal(headerValue(responses[0]!, 'x-upstream'), 'api');
        // forwarded as the client wrote it (pass_host: pass); X-Forwarded-Host is the routed name
        assert.equal(api.seen[0]!.headers.host, host);
        assert.equal(api.seen[0]!.headers['x-forwarded-host'], 'api.example.com');
      });
    }

    test('duplicate Host → 400, closed, nothing forwarded (even when both agree)', async () => {
      for (const second of ['other.test', 'api.example.com']) {
        const { responses, result, forwarded } = await exchange(gw.port, `GET /d HTTP/1.1\r\nHost: api.example.com\r\nHost: ${second}\r\n\r\n`);
        assertJsonError(responses[0]!, 400, 'Bad Request');
        assert.equal(headerValue(responses[0]!, 'connection'), 'close');
        assert.notEqual(result.closed, 'open');
        assert.equal(forwarded, 0);
      }
    });

    for (const host of [
      'api.example.com/admin',
      'user@api.example.com',
      'api.example.com@evil.test',
      'api.example.com\\x',
      'api.example.com?x',
      'api.example.com#x',
      'api example.com',
      'api..example.com',
      '.api.example.com',
      'api.example.com:80:80',
      'api.example.com:8o',
      'api%2eexample.com',
      '[::1',
      '',
    ]) {
      test(`Host ${JSON.stringify(host)} → 400`, async () => {
        const { responses, forwarded } = await exchange(gw.port, `GET /h HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        assertJsonError(responses[0]!, 400, 'Bad Request');
        assert.equal(forwarded, 0);
      });
    }

    for (const host of ['127.0.0.1:8080', '[::1]:8080', 'a-b_c.example', 'x.test:']) {
      test(`Host ${JSON.stringify(host)} is accepted`, async () => {
        const { responses } = await exchange(gw.port, `GET /h HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
        assert.equal(responses[0]!.status, 200);
        assert.equal(other.seen[0]!.headers.host, host);
      });
    }

    test('HTTP/1.1 without Host → 400 as JSON; HTTP/1.0 without Host is routed', async () => {
      const { responses } = await exchange(gw.port, 'GET /h HTTP/1.1\r\n\r\n');
      assertJsonError(responses[0]!, 400, 'Bad Request');
      const old = await exchange(gw.port, 'GET /h HTTP/1.0\r\n\r\n');
      assert.equal(old.responses[0]!.status, 200);
      assert.equal(headerValue(old.responses[0]!, 'x-upstream'), 'other');
    });
  });

  describe('Expect: 100-continue', () => {
    test('the client gets 100 Continue, then sends the body, which is forwarded', async () => {
      api.reset();
      other.reset();
      const socket = connect(gw.port, '127.0.0.1');
      let text = '';
      socket.setEncoding('latin1').on('data', (d: string) => (text += d));
      socket.write('POST /e HTTP/1.1\r\nHost: x.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n');
      await waitUntil(() => text.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 2000, '100 Continue');
      socket.write('hello');
      await waitUntil(() => finalResponses(parseResponses(Buffer.from(text, 'latin1'))).length === 1, 2000, 'the response');
      socket.destroy();
      assert.equal(finalResponses(parseResponses(Buffer.from(text, 'latin1')))[0]!.status, 200);
      assert.equal(other.seen[0]!.body.toString(), 'hello');
    });

    test('pipelined behind another request and refused: no 100 inside the refusal', async () => {
      const { responses, result } = await exchange(gw.port, 'GET /first HTTP/1.1\r\nHost: x.test\r\n\r\nPOST /e HTTP/1.1\r\nHost: a@b\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz', 2);
      assert.equal(responses[0]!.status, 200);
      assertJsonError(responses[1]!, 400, 'Bad Request');
      assert.doesNotMatch(result.text, /100 Continue/);
    });
  });

  describe('Expect other than 100-continue', () => {
    test('→ 417, nothing forwarded; the connection serves the next request', async () => {
      const { responses, forwarded } = await exchange(gw.port, 'POST /x HTTP/1.1\r\nHost: x.test\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nhiGET /after HTTP/1.1\r\nHost: x.test\r\n\r\n', 2);
      assertJsonError(responses[0]!, 417, '417 Expectation Failed');
      assert.equal(responses[1]!.status, 200);
      assert.equal(forwarded, 1);
      assert.equal(other.seen[0]!.url, '/after');
    });
  });

  describe('TRACE', () => {
    test('→ 405 by default; the connection serves the next request', async () => {
      const { responses, forwarded } = await exchange(gw.port, 'TRACE /t HTTP/1.1\r\nHost: x.test\r\n\r\nGET /after HTTP/1.1\r\nHost: x.test\r\n\r\n', 2);
      assertJsonError(responses[0]!, 405, '405 Not Allowed');
      assert.equal(responses[1]!.status, 200);
      assert.equal(forwarded, 1);
      assert.equal(other.seen[0]!.url, '/after');
    });

    test('is proxied with proxy.allow_trace: true', async () => {
      const { responses } = await exchange(traceGw.port, 'TRACE /t HTTP/1.1\r\nHost: x.test\r\n\r\n');
      assert.equal(responses[0]!.status, 200);
      assert.equal(other.seen[0]!.method, 'TRACE');
    });
  });
});
