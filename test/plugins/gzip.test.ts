/**
 * gzip through the gateway process (apisix.apache.org/docs/apisix/plugins/gzip): the docs'
 * example (a 404 text/html from the upstream, compressed), the rules shared with brotli
 * (compression-contract.ts: Accept-Encoding, types, min_length, lengths, HEAD/204/304, an
 * upstream's own encoding, Vary, ETag, with response-rewrite), then gzip's own: nginx's statuses
 * (200, 403, 404), `*` in Accept-Encoding not counting, comp_level, and invalid configs rejected
 * with the reason in /status. Bodies are gunzipped and compared with the upstream's bytes.
 */
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import {
  compressionUpstream,
  contractRoutes,
  runCompressionCases,
  runCompressionContract,
  sampleText,
  sendBinary,
  testInvalidConfigs,
  type CompressionCase,
} from './compression-contract.ts';
import { gatewayWithUpstream } from './send.ts';

describe('gzip (gateway process)', () => {
  const routes = (extra: object[] = []) => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    return {
      routes: [
        ...contractRoutes('gzip', rig.up.address),
        // docs: "Enable Plugin"
        { id: 'docs', uri: '/index.html', plugins: { gzip: { buffers: { number: 8 } } }, upstream },
        { id: 'level1', uri: '/level1', plugins: { gzip: { comp_level: 1 } }, upstream },
        { id: 'level9', uri: '/level9', plugins: { gzip: { comp_level: 9 } }, upstream },
        ...extra,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }), { handler: compressionUpstream });

  test('docs: a 404 text/html page is compressed for Accept-Encoding: gzip', async () => {
    const a = await sendBinary(`${rig.gw.url}/index.html`, { headers: { 'Accept-Encoding': 'gzip' } });
    assert.equal(a.status, 404);
    assert.equal(a.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(a.headers['content-encoding'], 'gzip');
    assert.equal(a.headers['transfer-encoding'], 'chunked');
    assert.match(gunzipSync(a.body).toString(), /404 Not Found/);
  });

  runCompressionContract(() => rig.gw, 'gzip', 'gzip', 'brotli');

  const own: CompressionCase[] = [
    { what: 'a 403 is compressed (nginx: 200, 403, 404)', path: '/gzip-all?status=403', accept: 'gzip', status: 403, encoding: 'gzip' },
    { what: 'a 500 is not', path: '/gzip-all?status=500', accept: 'gzip', status: 500, encoding: undefined },
    { what: 'a 201 is not', path: '/gzip-all?status=201', accept: 'gzip', status: 201, encoding: undefined },
    { what: 'Accept-Encoding: * does not ask for gzip (nginx)', path: '/gzip-default', accept: '*', encoding: undefined },
    { what: 'Accept-Encoding: br only', path: '/gzip-default', accept: 'br', encoding: undefined },
    { what: 'Accept-Encoding: gzip, deflate, br', path: '/gzip-default', accept: 'gzip, deflate, br', encoding: 'gzip' },
  ];
  describe("gzip's own", () => runCompressionCases(() => rig.gw, own));

  test('comp_level 9 compresses smaller than comp_level 1, both decode to the same body', async () => {
    const body = sampleText(100_000);
    const [one, nine] = await Promise.all(['level1', 'level9'].map((r) => sendBinary(`${rig.gw.url}/${r}?len=100000`, { headers: { 'Accept-Encoding': 'gzip' } })));
    assert.ok(gunzipSync(one!.body).equals(body));
    assert.ok(gunzipSync(nine!.body).equals(body));
    assert.ok(nine!.body.length < one!.body.length, `level 9: ${nine!.body.length} bytes, level 1: ${one!.body.length}`);
  });

  testInvalidConfigs(rig, 'gzip', 'gzip', [
    ['bad-types', { types: [] }, '/plugins/gzip/types: must NOT have fewer than 1 items'],
    ['bad-types-string', { types: 'text/html' }, '/plugins/gzip/types: must be one of "*"'],
    ['bad-min', { min_length: 0 }, '/plugins/gzip/min_length: must be >= 1'],
    ['bad-level', { comp_level: 10 }, '/plugins/gzip/comp_level: must be <= 9'],
    ['bad-version', { http_version: 2 }, '/plugins/gzip/http_version: must be one of 1.1, 1'],
    ['bad-buffers', { buffers: { number: 0 } }, '/plugins/gzip/buffers/number: must be >= 1'],
    ['bad-vary', { vary: 0 }, '/plugins/gzip/vary: must be boolean'],
  ], routes);
});
