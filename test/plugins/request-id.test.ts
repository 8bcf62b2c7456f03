/**
 * request-id through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/request-id): a generated uuid in `X-Request-Id` sent
 * upstream and returned; an empty header replaced, a client's own id kept; a custom header name;
 * `include_in_response: false`; the nanoid and ksuid algorithms (and range_id, uuidv7); a global
 * rule and a route each adding their own id; and invalid configs rejected with the reason.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { expectRoutesRejected, gatewayWithUpstream, invalidRoutes, pluginRoute, send, type Answer, type InvalidConfig } from './send.ts';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('request-id (gateway process)', () => {
  const routes = (extra: object[] = []) => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    const r = pluginRoute('request-id', rig.up.address);
    return {
      routes: [
        r('docs-default', { header_name: 'X-Request-Id', include_in_response: true, algorithm: 'uuid' }),
        r('docs-custom', { header_name: 'X-Req-Identifier', include_in_response: true }),
        r('docs-hidden', { header_name: 'X-Req-Identifier', include_in_response: false }),
        r('docs-nanoid', { algorithm: 'nanoid' }),
        r('docs-ksuid', { algorithm: 'ksuid' }),
        r('uuidv7', { algorithm: 'uuidv7' }),
        r('range', { algorithm: 'range_id', range_id: { length: 10, char_set: 'abcdef' } }),
        r('range-default', { algorithm: 'range_id' }),
        r('upstream-id', {}),
        r('docs-global', { header_name: 'Route-Request-ID' }),
        // an answer from the gateway itself carries the id too
        { id: 'aborted', uri: '/aborted', plugins: { 'request-id': {}, 'fault-injection': { abort: { http_status: 503 } } }, upstream },
        ...extra,
      ],
      // docs "Attach Request ID Globally and on a Route"
      global_rules: [{ id: 'g1', plugins: { 'request-id': { header_name: 'Global-Request-ID' } } }],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }), {
    handler: (req, res) => {
      const extra: Record<string, string> = req.url === '/upstream-id' ? { 'X-Request-Id': 'from-upstream' } : {};
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', ...extra });
        res.end(JSON.stringify({ url: req.url, headers: req.headers }));
      });
    },
  });

  /** the request headers the upstream saw */
  const seenUpstream = (a: Answer): Record<string, string> => (JSON.parse(a.body) as { headers: Record<string, string> }).headers;

  // [what, path, request headers, header name, id shape, sent back to the client]
  const cases: Array<[string, string, Record<string, string>, string, RegExp, boolean]> = [
    ['docs: a uuid is generated, sent upstream and returned', '/docs-default', {}, 'x-request-id', UUID_V4, true],
    ['docs: an empty X-Request-Id is replaced by a generated one', '/docs-default', { 'X-Request-Id': '' }, 'x-request-id', UUID_V4, true],
    ['docs: a custom request id is kept', '/docs-default', { 'X-Request-Id': 'some-custom-request-id' }, 'x-request-id', /^some-custom-request-id$/, true],
    ['docs: a custom header name', '/docs-custom', {}, 'x-req-identifier', UUID_V4, true],
    ['the custom header is matched case-insensitively', '/docs-custom', { 'x-req-IDENTIFIER': 'mine' }, 'x-req-identifier', /^mine$/, true],
    ['docs: include_in_response false: upstream only', '/docs-hidden', {}, 'x-req-identifier', UUID_V4, false],
    ['docs: nanoid', '/docs-nanoid', {}, 'x-request-id', /^[A-Za-z0-9_-]{21}$/, true],
    ['docs: ksuid', '/docs-ksuid', {}, 'x-request-id', /^[0-9A-Za-z]{27}$/, true],
    ['uuidv7', '/uuidv7', {}, 'x-request-id', UUID_V7, true],
    ['range_id with a char_set and length', '/range', {}, 'x-request-id', /^[a-f]{10}$/, true],
    ['range_id defaults: 16 characters', '/range-default', {}, 'x-request-id', /^[a-zA-Z0-9]{16}$/, true],
  ];

  for (const [what, path, headers, name, shape, inResponse] of cases) {
    test(what, async () => {
      const a = await send(rig.gw.url + path, { headers });
      assert.equal(a.status, 200, a.body);
      const upstreamId = seenUpstream(a)[name];
      assert.match(String(upstreamId), shape);
      if (inResponse) assert.equal(a.headers[name], upstreamId, 'the client gets the id the upstream saw');
      else assert.equal(a.headers[name], undefined);
    });
  }

  test('ids differ per request', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) ids.add(String((await send(`${rig.gw.url}/docs-default`)).headers['x-request-id']));
    assert.equal(ids.size, 20);
  });

  test("the upstream's own response header wins (APISIX keeps it)", async () => {
    const a = await send(`${rig.gw.url}/upstream-id`);
    assert.equal(a.headers['x-request-id'], 'from-upstream');
    assert.match(seenUpstream(a)['x-request-id']!, UUID_V4);
  });

  test('docs: a global rule and a route each add their id', async () => {
    const a = await send(`${rig.gw.url}/docs-global`);
    const seen = seenUpstream(a);
    assert.match(String(a.headers['global-request-id']), UUID_V4);
    assert.match(String(a.headers['route-request-id']), UUID_V4);
    assert.notEqual(a.headers['global-request-id'], a.headers['route-request-id']);
    assert.equal(seen['global-request-id'], a.headers['global-request-id']);
    assert.equal(seen['route-request-id'], a.headers['route-request-id']);
  });

  test("a gateway's own answer (a fault-injection abort) carries the id", async () => {
    const a = await send(`${rig.gw.url}/aborted`, { headers: { 'X-Request-Id': 'trace-me' } });
    assert.equal(a.status, 503);
    assert.equal(a.headers['x-request-id'], 'trace-me');
  });

  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-algorithm', { algorithm: 'snowflake' }, '/plugins/request-id/algorithm: must be one of "uuid", "nanoid", "range_id", "ksuid", "uuidv7"'],
      ['bad-length', { algorithm: 'range_id', range_id: { length: 3 } }, '/plugins/request-id/range_id/length: must be >= 6'],
      ['bad-charset', { algorithm: 'range_id', range_id: { char_set: 'abc' } }, '/plugins/request-id/range_id/char_set: must NOT have fewer than 6 characters'],
      ['bad-include', { include_in_response: 'yes' }, '/plugins/request-id/include_in_response: must be boolean'],
      ['bad-header', { header_name: 'X Request Id' }, 'header_name: must be an HTTP token'],
    ];
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes('request-id', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await send(`${rig.gw.url}/docs-default`)).status, 200, 'the valid routes keep working');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
