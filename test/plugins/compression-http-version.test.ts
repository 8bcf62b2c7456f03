/**
 * gzip and brotli `http_version` (nginx's gzip_http_version, default 1.1): an HTTP/1.0 request is
 * answered plain unless the route allows 1.0. Raw sockets: fetch only speaks HTTP/1.1.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

const BODY = '<p>' + 'hello '.repeat(200) + '</p>';

/** One HTTP/1.0 exchange: the response head (lower-case names) and body bytes. */
function http10(port: number, path: string): Promise<{ head: Record<string, string>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`GET ${path} HTTP/1.0\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n`));
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const head: Record<string, string> = {};
      for (const line of all.subarray(0, split).toString('latin1').split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        head[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ head, body: all.subarray(split + 4) });
    });
  });
}

describe('gzip http_version', () => {
  let up: TestUpstream;
  let gw: GatewayProcess;
  before(async () => {
    up = await startUpstream('up', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(BODY) });
      res.end(BODY);
    });
    const upstream = { nodes: { [up.address]: 1 } };
    gw = await startGateway({
      routes: {
        routes: [
          { id: 'v11', uri: '/v11', upstream, plugins: { gzip: {} } },
          { id: 'v10', uri: '/v10', upstream, plugins: { gzip: { http_version: 1.0 } } },
        ],
      },
    });
  });
  after(async () => {
    await gw?.cleanup();
    await up?.close();
  });

  it('an HTTP/1.0 request is answered plain under the default http_version 1.1', async () => {
    const r = await http10(gw.port, '/v11');
    assert.equal(r.head['content-encoding'], undefined);
    assert.equal(r.body.toString(), BODY);
  });

  it('with http_version 1.0 it is compressed (and close-delimited)', async () => {
    const r = await http10(gw.port, '/v10');
    assert.equal(r.head['content-encoding'], 'gzip');
    assert.equal(gunzipSync(r.body).toString(), BODY);
  });
});
