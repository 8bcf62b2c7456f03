/**
 * brotli through the gateway process (apisix.apache.org/docs/apisix/plugins/brotli): the docs'
 * example, the rules shared with gzip (compression-contract.ts: Accept-Encoding, types,
 * min_length, lengths, HEAD/204/304, an upstream's own encoding, Vary, ETag, with
 * response-rewrite), then brotli's own: APISIX's Accept-Encoding cases of t/plugin/brotli.t (`*`
 * counts), statuses, the encoder's parameters, brotli and gzip on one route (brotli first, gzip
 * steps aside), and invalid configs rejected with the reason in /status. Bodies are decoded with
 * brotliDecompressSync and compared with the upstream's bytes.
 */
import assert from 'node:assert/strict';
import { brotliDecompressSync } from 'node:zlib';
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

describe('brotli (gateway process)', () => {
  const routes = (extra: object[] = []) => {
    const upstream = { nodes: { [rig.up.address]: 1 } };
    const r = (id: string, plugins: object) => ({ id, uri: `/${id}`, plugins, upstream });
    return {
      routes: [
        ...contractRoutes('brotli', rig.up.address),
        // docs: "Enable Plugin"
        { id: 'docs', uri: '/', plugins: { brotli: {} }, upstream },
        r('quality0', { brotli: { comp_level: 0 } }),
        r('quality11', { brotli: { comp_level: 11 } }),
        // t/plugin/brotli.t TEST 11's parameter sets
        r('params', { brotli: { mode: 2, comp_level: 5, lgwin: 12, lgblock: 16, vary: true } }),
        r('text-mode', { brotli: { mode: 1, lgwin: 24, lgblock: 24 } }),
        r('lgwin0', { brotli: { lgwin: 0, types: '*' } }),
        r('both', { brotli: { vary: true }, gzip: { vary: true } }),
        ...extra,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }), { handler: compressionUpstream });

  test('docs: Accept-Encoding: br on a text/html page', async () => {
    const a = await sendBinary(`${rig.gw.url}/?len=2000`, { headers: { 'Accept-Encoding': 'br' } });
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(a.headers['content-encoding'], 'br');
    assert.equal(a.headers['transfer-encoding'], 'chunked');
    assert.ok(brotliDecompressSync(a.body).equals(sampleText(2000)));
  });

  runCompressionContract(() => rig.gw, 'brotli', 'br', 'gzip');

  const p = '/brotli-default?len=1000';
  const own: CompressionCase[] = [
    // t/plugin/brotli.t TEST 2-10
    { what: 't: Accept-Encoding: br', path: p, accept: 'br', encoding: 'br' },
    { what: 't: Accept-Encoding: *', path: p, accept: '*', encoding: 'br' },
    { what: 't: Accept-Encoding: gzip', path: p, accept: 'gzip', encoding: undefined },
    { what: 't: gzip, br', path: p, accept: 'gzip, br', encoding: 'br' },
    { what: 't: gzip, * (no br but a wildcard)', path: p, accept: 'gzip, *', encoding: 'br' },
    { what: 't: gzip, deflate', path: p, accept: 'gzip, deflate', encoding: undefined },
    { what: 't: gzip;q=0.5, br;q=0.6', path: p, accept: 'gzip;q=0.5, br;q=0.6', encoding: 'br' },
    { what: 't: gzip;q=0.5, br;q=0 (br refused)', path: p, accept: 'gzip;q=0.5, br;q=0', encoding: undefined },
    { what: 't: gzip;q=0.8, deflate, sdch;q=0.6, *;q=0.1', path: p, accept: 'gzip;q=0.8, deflate, sdch;q=0.6, *;q=0.1', encoding: 'br' },
    { what: 'br ; q=0 with spaces is a refusal too', path: p, accept: 'br ; q=0', encoding: undefined },
    // statuses: APISIX's brotli compresses any response with a body
    { what: 'a 500 is compressed', path: '/brotli-all?status=500', accept: 'br', status: 500, encoding: 'br' },
    { what: 'a 201 is compressed', path: '/brotli-all?status=201', accept: 'br', status: 201, encoding: 'br' },
    { what: 'a 206 is not (its Content-Range names the plain bytes)', path: '/brotli-all?status=206', accept: 'br', status: 206, encoding: undefined },
    // the encoder's parameters
    { what: 'mode 2, comp_level 5, lgwin 12, lgblock 16 (t TEST 11)', path: '/params?len=50000', accept: 'br', encoding: 'br', vary: 'Accept-Encoding' },
    { what: 'mode 1 (text), lgwin 24, lgblock 24', path: '/text-mode?len=50000', accept: 'br', encoding: 'br' },
    { what: 'lgwin 0', path: '/lgwin0?len=50000', accept: 'br', encoding: 'br' },
    // brotli (996) and gzip (995) on one route: brotli decides first, gzip sees Content-Encoding
    { what: 'both plugins, gzip, br: brotli wins', path: '/both?len=5000', accept: 'gzip, br', encoding: 'br', vary: 'Accept-Encoding' },
    { what: 'both plugins, br only', path: '/both?len=5000', accept: 'br', encoding: 'br', vary: 'Accept-Encoding' },
    { what: 'both plugins, gzip only: gzip does it', path: '/both?len=5000', accept: 'gzip', encoding: 'gzip', vary: 'Accept-Encoding' },
    { what: 'both plugins, no Accept-Encoding: plain, one Vary', path: '/both?len=5000', encoding: undefined, vary: 'Accept-Encoding' },
  ];
  describe("brotli's own", () => runCompressionCases(() => rig.gw, own));

  test('comp_level 11 compresses smaller than comp_level 0, both decode to the same body', async () => {
    const body = sampleText(100_000);
    const [q0, q11] = await Promise.all(['quality0', 'quality11'].map((r) => sendBinary(`${rig.gw.url}/${r}?len=100000`, { headers: { 'Accept-Encoding': 'br' } })));
    assert.ok(brotliDecompressSync(q0!.body).equals(body));
    assert.ok(brotliDecompressSync(q11!.body).equals(body));
    assert.ok(q11!.body.length < q0!.body.length, `quality 11: ${q11!.body.length} bytes, quality 0: ${q0!.body.length}`);
  });

  testInvalidConfigs(rig, 'brotli', 'br', [
    // t/plugin/brotli.t TEST 27
    ['bad-types', { types: 'text/html' }, '/plugins/brotli/types: must be one of "*"'],
    ['bad-min', { min_length: 0 }, '/plugins/brotli/min_length: must be >= 1'],
    ['bad-level', { comp_level: 12 }, '/plugins/brotli/comp_level: must be <= 11'],
    ['bad-mode', { mode: 3 }, '/plugins/brotli/mode: must be <= 2'],
    ['bad-lgwin', { lgwin: 9 }, '/plugins/brotli/lgwin: must be one of 0, 10, 11'],
    ['bad-lgblock', { lgblock: 15 }, '/plugins/brotli/lgblock: must be one of 0, 16, 17'],
    ['bad-version', { http_version: 2 }, '/plugins/brotli/http_version: must be one of 1.1, 1'],
    ['bad-vary', { vary: 0 }, '/plugins/brotli/vary: must be boolean'],
  ], routes);
});
