/**
 * Issue 6, item 3: an absolute-form request (`GET http://www.example.com/ HTTP/1.1`) is routed on
 * the target's authority, so that authority is also what the upstream must receive as Host (and
 * X-Forwarded-Host) — RFC 9112 §3.2.2 — whatever Host header the client added. Userinfo in the
 * authority is refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { finalResponses, headerValue, parseResponses, rawExchange, responsesReceived, startRecordingUpstream, type RecordingUpstream } from './helpers.ts';

describe('absolute-form request targets', () => {
  let www: RecordingUpstream;
  let admin: RecordingUpstream;
  let gw: GatewayProcess;

  before(async () => {
    www = await startRecordingUpstream('www');
    admin = await startRecordingUpstream('admin');
    gw = await startGateway({
      routes: {
        routes: [
          { id: 'www', uri: '/*', host: 'www.example.com', upstream: { nodes: { [www.address]: 1 } } },
          // the route an attacker wants to reach: bound to its own host name
          { id: 'admin', uri: '/*', host: 'admin.example.com', upstream: { nodes: { [admin.address]: 1 } } },
          { id: 'node-host', uri: '/*', host: 'node.example.com', upstream: { nodes: { [www.address]: 1 }, pass_host: 'node' } },
        ],
      },
    });
  });

  after(async () => {
    await gw?.cleanup();
    await www?.close();
    await admin?.close();
  });

  async function send(head: string) {
    www.reset();
    admin.reset();
    const result = await rawExchange(gw.port, head, { until: responsesReceived(1), timeoutMs: 3000 });
    const stream = parseResponses(result.received, { ended: result.closed !== 'open' });
    assert.equal(stream.error, undefined, result.text);
    const [response] = finalResponses(stream);
    assert.ok(response, `no response to ${JSON.stringify(head)}: ${result.text}`);
    return { response, result };
  }

  test('the authority replaces Host: routed and forwarded as www.example.com', async () => {
    const { response } = await send('GET http://www.example.com/x?q=1 HTTP/1.1\r\nHost: admin.example.com\r\n\r\n');
    assert.equal(response.status, 200);
    assert.equal(headerValue(response, 'x-upstream'), 'www');
    assert.equal(admin.seen.length, 0);
    assert.equal(www.seen.length, 1);
    const seen = www.seen[0]!;
    assert.equal(seen.url, '/x?q=1');
    assert.equal(seen.headers.host, 'www.example.com');
    assert.equal(seen.headers['x-forwarded-host'], 'www.example.com');
    // one Host only: the client's never slips through beside ours
    assert.equal(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.toLowerCase() === 'host').length, 1);
  });

  test("the authority's port and spelling are forwarded as the client wrote them", async () => {
    const { response } = await send('GET HTTP://WWW.Example.com:8080?a=b HTTP/1.1\r\nHost: admin.example.com\r\n\r\n');
    assert.equal(response.status, 200);
    assert.equal(headerValue(response, 'x-upstream'), 'www');
    assert.equal(www.seen[0]!.url, '/?a=b');
    assert.equal(www.seen[0]!.headers.host, 'WWW.Example.com:8080');
    assert.equal(www.seen[0]!.headers['x-forwarded-host'], 'www.example.com');
  });

  test('pass_host: node still sends the node, on the route chosen by the authority', async () => {
    const { response } = await send('GET http://node.example.com/ HTTP/1.1\r\nHost: admin.example.com\r\n\r\n');
    assert.equal(response.status, 200);
    assert.equal(www.seen[0]!.headers.host, www.address);
    assert.equal(www.seen[0]!.headers['x-forwarded-host'], 'node.example.com');
  });

  test('origin-form is unchanged: Host routes and is forwarded', async () => {
    const { response } = await send('GET /y HTTP/1.1\r\nHost: admin.example.com\r\n\r\n');
    assert.equal(response.status, 200);
    assert.equal(headerValue(response, 'x-upstream'), 'admin');
    assert.equal(admin.seen[0]!.headers.host, 'admin.example.com');
  });

  for (const target of [
    'http://user@www.example.com/',
    'http://user:secret@www.example.com/',
    'http://admin.example.com@www.example.com/',
    'http://www.example.com@admin.example.com/',
    'http:///x', // empty authority
    'http://www.example.com:80x/',
    'http://www.exa mple.com/',
  ]) {
    test(`${target} → 400, connection closed, nothing forwarded`, async () => {
      const { response, result } = await send(`GET ${target} HTTP/1.1\r\nHost: www.example.com\r\n\r\n`);
      assert.equal(response.status, 400);
      assert.deepEqual(JSON.parse(response.body.toString()), { error_msg: 'Bad Request' });
      assert.equal(headerValue(response, 'connection'), 'close');
      assert.equal(www.seen.length + admin.seen.length, 0);
      assert.notEqual(result.closed, 'open');
    });
  }
});
