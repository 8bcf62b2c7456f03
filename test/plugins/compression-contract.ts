/**
 * What gzip and brotli share, tested through the gateway process against a real upstream: one
 * table of cases run by gzip.test.ts and brotli.test.ts, each adding its own specifics. A
 * compressed body is decompressed here and compared with the bytes the upstream sent.
 *
 * The upstream answers from the query: `len` bytes of text (default 1000) as `ct` (default
 * text/html; charset=utf-8, `ct=-` none) with `status`, Content-Length unless `chunked=1`, in three
 * writes with `split=1`, already gzip-encoded with `ce=gzip`, with `etag` and `vary` headers.
 */
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';
import { describe, test } from 'node:test';
import { writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { expectRoutesRejected, invalidRoutes, type InvalidConfig, type Rig } from './send.ts';

/** Content-Encoding → its decoder. */
export const DECODERS: Record<string, (body: Buffer) => Buffer> = { gzip: (b) => gunzipSync(b), br: (b) => brotliDecompressSync(b) };

export interface BinaryAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export function sendBinary(url: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<BinaryAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

const samples = new Map<number, Buffer>();

/** Text of `length` bytes that compresses like prose (a fixed pseudo-random word sequence). */
export function sampleText(length: number): Buffer {
  const words = ['gateway', 'route', 'upstream', 'plugin', 'consumer', 'node', 'héllo', 'brotli', 'gzip', 'vary', 'etag', 'chunk'];
  const cached = samples.get(length);
  if (cached !== undefined) return cached;
  let seed = 42;
  const parts = ['<html><body>'];
  let bytes = parts[0]!.length;
  while (bytes < length) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    const word = words[seed % words.length] + (seed % 7 === 0 ? '. ' : ' ');
    parts.push(word);
    bytes += Buffer.byteLength(word);
  }
  const text = Buffer.from(parts.join('')).subarray(0, length);
  samples.set(length, text);
  return text;
}

/** The body the upstream sends for a query (before any Content-Encoding). */
export function upstreamBody(query: string): Buffer {
  const q = new URLSearchParams(query);
  return sampleText(Number(q.get('len') ?? 1000));
}

export function compressionUpstream(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  const url = new URL(req.url!, 'http://up');
  const q = url.searchParams;
  if (url.pathname === '/index.html') {
    // the docs' example: the test upstream answers 404 for /index.html
    const body = Buffer.from('<html><head><title>404 Not Found</title></head><body>not found</body></html>');
    res.writeHead(404, { 'content-type': 'text/html; charset=utf-8', 'content-length': body.length });
    res.end(body);
    return;
  }
  const status = Number(q.get('status') ?? 200);
  let body = upstreamBody(url.search.slice(1));
  const headers: Record<string, string | number> = {};
  const ct = q.get('ct') ?? 'text/html; charset=utf-8';
  if (ct !== '-') headers['content-type'] = ct;
  if (q.get('ce') === 'gzip') {
    body = gzipSync(body);
    headers['content-encoding'] = 'gzip';
  }
  if (q.has('etag')) headers['etag'] = q.get('etag')!;
  if (q.has('vary')) headers['vary'] = q.get('vary')!;
  const noBody = status === 204 || status === 304 || req.method === 'HEAD';
  if (q.get('chunked') !== '1' && status !== 204) headers['content-length'] = body.length;
  res.writeHead(status, headers);
  if (noBody) return void res.end();
  if (q.get('split') === '1') {
    const third = Math.floor(body.length / 3);
    res.write(body.subarray(0, third));
    setTimeout(() => res.write(body.subarray(third, 2 * third)), 10);
    setTimeout(() => res.end(body.subarray(2 * third)), 20);
    return;
  }
  res.end(body);
}

/** One request and what it must show. */
export interface CompressionCase {
  what: string;
  /** path and query on the gateway (the route's uri is the path) */
  path: string;
  method?: string;
  /** Accept-Encoding, undefined: none */
  accept?: string;
  status?: number;
  /** the Content-Encoding the client gets: the plugin's coding, 'gzip' from the upstream, or none */
  encoding: string | undefined;
  /** the Vary header, undefined: absent */
  vary?: string;
  /** the ETag header, when the case sets one (null: absent) */
  etag?: string | null;
}

/**
 * Routes of the shared cases, under `/<plugin>-<variant>`: the plugin's config per variant, and
 * `extra` plugins alongside it.
 */
export function contractRoutes(plugin: string, upstreamAddress: string): object[] {
  const upstream = { nodes: { [upstreamAddress]: 1 } };
  const r = (variant: string, conf: object) => ({ id: `${plugin}-${variant}`, uri: `/${plugin}-${variant}`, plugins: { [plugin]: conf }, upstream });
  return [
    r('default', {}),
    r('all', { types: '*' }),
    r('typed', { types: ['text/plain', 'text/xml'] }),
    r('min', { min_length: 100 }),
    r('vary', { vary: true }),
    { id: `${plugin}-rewritten`, uri: `/${plugin}-rewritten`, plugins: { [plugin]: {}, 'response-rewrite': { body: 'replaced body, long enough to compress' } }, upstream },
    {
      id: `${plugin}-filtered`,
      uri: `/${plugin}-filtered`,
      plugins: { [plugin]: {}, 'response-rewrite': { filters: [{ regex: 'gateway', scope: 'global', replace: 'GATEWAY' }] } },
      upstream,
    },
  ];
}

/** The shared cases for a plugin answering to `coding` (its `accept` value). */
export function contractCases(plugin: string, coding: string): CompressionCase[] {
  const p = `/${plugin}`;
  return [
    { what: 'compressed for a client that accepts it', path: `${p}-default?len=1000`, accept: coding, encoding: coding },
    { what: 'not without Accept-Encoding', path: `${p}-default?len=1000`, encoding: undefined },
    { what: 'not for a client that accepts only identity', path: `${p}-default?len=1000`, accept: 'identity', encoding: undefined },
    { what: `not with ${coding};q=0`, path: `${p}-default?len=1000`, accept: `${coding};q=0, identity`, encoding: undefined },
    { what: 'among several codings, with a quality', path: `${p}-default?len=1000`, accept: `deflate, ${coding};q=0.5`, encoding: coding },
    { what: 'codings are case-insensitive', path: `${p}-default?len=1000`, accept: coding.toUpperCase(), encoding: coding },
    { what: 'a body sent in three writes is compressed whole', path: `${p}-default?len=30000&split=1`, accept: coding, encoding: coding },
    { what: 'a large body (512 KiB)', path: `${p}-default?len=524288`, accept: coding, encoding: coding },
    { what: 'above 1 MiB: sent as is', path: `${p}-default?len=1200000`, accept: coding, encoding: undefined },
    { what: 'unknown length (chunked upstream): sent as is', path: `${p}-default?len=1000&chunked=1`, accept: coding, encoding: undefined },
    { what: 'already encoded by the upstream: left alone', path: `${p}-default?len=1000&ce=gzip`, accept: `gzip, ${coding}`, encoding: 'gzip' },
    { what: 'default types: text/html only, application/json not', path: `${p}-default?len=1000&ct=application/json`, accept: coding, encoding: undefined },
    { what: 'no Content-Type: not compressed (nginx)', path: `${p}-default?len=1000&ct=-`, accept: coding, encoding: undefined },
    { what: 'the media type is case-insensitive', path: `${p}-default?len=1000&ct=TEXT/HTML`, accept: coding, encoding: coding },
    { what: 'min_length 20 (default): 19 bytes are not compressed', path: `${p}-default?len=19`, accept: coding, encoding: undefined },
    { what: 'min_length 20 (default): 20 bytes are', path: `${p}-default?len=20`, accept: coding, encoding: coding },
    { what: 'min_length 100: 99 bytes are not', path: `${p}-min?len=99`, accept: coding, encoding: undefined },
    { what: 'min_length 100: 100 bytes are', path: `${p}-min?len=100`, accept: coding, encoding: coding },
    { what: 'types "*": any type', path: `${p}-all?len=1000&ct=video/3gpp`, accept: coding, encoding: coding },
    { what: 'types list: text/html is not in it', path: `${p}-typed?len=1000`, accept: coding, encoding: undefined },
    { what: 'types list: text/xml is', path: `${p}-typed?len=1000&ct=text/xml`, accept: coding, encoding: coding },
    { what: 'types list: parameters after ; are ignored', path: `${p}-typed?len=1000&ct=text/plain;%20charset=UTF-8`, accept: coding, encoding: coding },
    { what: 'HEAD: never compressed', path: `${p}-default?len=1000`, method: 'HEAD', accept: coding, encoding: undefined },
    { what: '204: never compressed', path: `${p}-all?status=204`, accept: coding, status: 204, encoding: undefined },
    { what: '304: never compressed', path: `${p}-all?status=304&len=1000`, accept: coding, status: 304, encoding: undefined },
    { what: 'no Vary without `vary`', path: `${p}-default?len=1000`, accept: coding, encoding: coding, vary: undefined },
    { what: 'vary: Vary: Accept-Encoding on a compressed response', path: `${p}-vary?len=1000`, accept: coding, encoding: coding, vary: 'Accept-Encoding' },
    { what: 'vary: also when this client gets it plain (a cache must tell them apart)', path: `${p}-vary?len=1000`, encoding: undefined, vary: 'Accept-Encoding' },
    { what: "vary: after the upstream's own Vary", path: `${p}-vary?len=1000&vary=upstream`, accept: coding, encoding: coding, vary: 'upstream, Accept-Encoding' },
    { what: 'vary: not twice', path: `${p}-vary?len=1000&vary=accept-encoding`, accept: coding, encoding: coding, vary: 'accept-encoding' },
    { what: 'vary: not on a response that is not compressible', path: `${p}-vary?len=10`, accept: coding, encoding: undefined, vary: undefined },
    { what: 'a strong ETag becomes weak', path: `${p}-default?len=1000&etag=%22123456789%22`, accept: coding, encoding: coding, etag: 'W/"123456789"' },
    { what: 'a weak ETag is kept', path: `${p}-default?len=1000&etag=W/%22123456789%22`, accept: coding, encoding: coding, etag: 'W/"123456789"' },
    { what: 'a malformed ETag is dropped', path: `${p}-default?len=1000&etag=123456789`, accept: coding, encoding: coding, etag: null },
    { what: 'an ETag with embedded quotes is dropped', path: `${p}-default?len=1000&etag=%2212%2234%22`, accept: coding, encoding: coding, etag: null },
    { what: 'an ETag is untouched when not compressed', path: `${p}-default?len=1000&etag=%22123456789%22`, encoding: undefined, etag: '"123456789"' },
  ];
}

/** Runs cases: node:test tests that check status, encoding, Vary, ETag and the decoded body. */
export function runCompressionCases(gw: () => GatewayProcess, cases: readonly CompressionCase[]): void {
  for (const c of cases) {
    test(c.what, async () => {
      const headers: Record<string, string> = {};
      if (c.accept !== undefined) headers['Accept-Encoding'] = c.accept;
      const a = await sendBinary(`${gw().url}${c.path}`, { method: c.method, headers });
      assert.equal(a.status, c.status ?? 200);
      assert.equal(a.headers['content-encoding'], c.encoding);
      if ('vary' in c) assert.equal(a.headers['vary'], c.vary);
      if (c.etag !== undefined) assert.equal(a.headers['etag'], c.etag ?? undefined);
      const noBody = c.method === 'HEAD' || a.status === 204 || a.status === 304;
      if (noBody) return void assert.equal(a.body.length, 0);
      const query = c.path.slice(c.path.indexOf('?') + 1);
      const expected = upstreamBody(query);
      if (c.encoding === undefined) {
        assert.ok(a.body.equals(expected), `the body as the upstream sent it (${a.body.length} vs ${expected.length} bytes)`);
        return;
      }
      // a compressed body has another length: the gateway sends it chunked
      if (c.encoding !== 'gzip' || !c.path.includes('ce=gzip')) assert.equal(a.headers['content-length'], undefined);
      const decoded = DECODERS[c.encoding]!(a.body);
      assert.ok(decoded.equals(expected), `the decoded body is the upstream's (${decoded.length} vs ${expected.length} bytes)`);
      if (expected.length >= 1000) assert.ok(a.body.length < expected.length, `compressed: ${a.body.length} < ${expected.length} bytes`);
    });
  }
}

/** The shared tests that are not one request to the upstream's body. */
export function runCompressionSpecials(gw: () => GatewayProcess, plugin: string, coding: string): void {
  test('with response-rewrite replacing the body: the new body, plain (its Content-Encoding dropped)', async () => {
    const a = await sendBinary(`${gw().url}/${plugin}-rewritten?len=1000`, { headers: { 'Accept-Encoding': coding } });
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-encoding'], undefined);
    assert.equal(a.body.toString(), 'replaced body, long enough to compress');
  });

  test('with response-rewrite filters: the filtered body, plain (the filter decodes what this plugin compressed)', async () => {
    const a = await sendBinary(`${gw().url}/${plugin}-filtered?len=1000`, { headers: { 'Accept-Encoding': coding } });
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-encoding'], undefined);
    const expected = sampleText(1000).toString('latin1').replaceAll('gateway', 'GATEWAY');
    assert.notEqual(expected, sampleText(1000).toString('latin1'));
    assert.equal(a.body.toString('latin1'), expected);
  });

  test('concurrent responses on one route are compressed each with its own body', async () => {
    const lengths = [300, 5000, 20000, 64000, 1000, 777];
    const answers = await Promise.all(lengths.map((len) => sendBinary(`${gw().url}/${plugin}-default?len=${len}&split=1`, { headers: { 'Accept-Encoding': coding } })));
    answers.forEach((a, i) => {
      assert.equal(a.headers['content-encoding'], coding);
      assert.ok(DECODERS[coding]!(a.body).equals(sampleText(lengths[i]!)), `response ${i}`);
    });
  });
}

/** The shared cases and the specials, for the plugin answering to `coding`; `other` is the sibling plugin. */
export function runCompressionContract(gw: () => GatewayProcess, plugin: string, coding: string, other: string): void {
  describe(`the rules shared with ${other}`, () => runCompressionCases(gw, contractCases(plugin, coding)));
  describe('alongside other plugins', () => runCompressionSpecials(gw, plugin, coding));
}

/**
 * A test that puts the invalid configs (one must be `bad-level`) beside the suite's `routes`, checks
 * each is rejected with its reason, that a rejected route is not served and `/<plugin>-default`
 * still compresses, then writes `routes` back.
 */
export function testInvalidConfigs(rig: Rig, plugin: string, coding: string, invalid: readonly InvalidConfig[], routes: (extra?: object[]) => Record<string, unknown>): void {
  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes(plugin, rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await sendBinary(`${rig.gw.url}/bad-level`)).status, 404, 'a rejected route does not exist');
    const ok = await sendBinary(`${rig.gw.url}/${plugin}-default`, { headers: { 'Accept-Encoding': coding } });
    assert.equal(ok.headers['content-encoding'], coding, 'the valid routes keep serving');
    writeRoutes(rig.gw.routesPath, routes());
  });
}
