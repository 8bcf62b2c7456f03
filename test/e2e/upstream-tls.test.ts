/**
 * TLS to upstreams (upstream `scheme: https` with `tls`): a client certificate for an upstream
 * that requires one, and verification of the upstream's certificate and name. Real https upstream,
 * real gateway, openssl-made certificates; on both transports (the suite runs twice).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { makeTestPki, type TestPki } from '../helpers/certs.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('upstream tls: client certificate and verify', () => {
  let pki: TestPki;
  let upstream: Server;
  let address: string;
  let gw: GatewayProcess;

  before(async () => {
    pki = makeTestPki();
    const server = pki.server('up', ['up.test']);
    // requires a client certificate from the test CA; answers who it saw
    upstream = createServer({ cert: server.cert, key: server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ client: peer.subject?.CN ?? null, sni: (req.socket as TLSSocket).servername }));
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    address = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const client = pki.client('gateway-client');
    const base = { nodes: { [address]: 1 }, scheme: 'https', pass_host: 'rewrite', upstream_host: 'up.test', retries: 0 };
    gw = await startGateway({
      routes: {
        upstreams: [
          { id: 'mtls', ...base, tls: { client_cert: client.cert, client_key: client.key } },
          { id: 'none', ...base },
          { id: 'verify-untrusted', ...base, tls: { client_cert: client.cert, client_key: client.key, verify: true } },
          { id: 'verify-ca', ...base, tls: { client_cert: client.cert, client_key: client.key, verify: true, ca: pki.ca.cert } },
          { id: 'verify-wrong-name', ...base, upstream_host: 'other.test', tls: { client_cert: client.cert, client_key: client.key, verify: true, ca: pki.ca.cert } },
        ],
        routes: ['mtls', 'none', 'verify-untrusted', 'verify-ca', 'verify-wrong-name'].map((id) => ({ id, uri: `/${id}`, upstream_id: id })),
      },
    });
  });
  after(async () => {
    await gw?.stop();
    await gw?.cleanup();
    upstream?.close();
  });

  test('the client certificate is presented; without it the upstream refuses (502)', async () => {
    const ok = await fetch(`${gw.url}/mtls`);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { client: 'gateway-client', sni: 'up.test' });
    const refused = await fetch(`${gw.url}/none`);
    assert.equal(refused.status, 502);
    await refused.text();
  });

  test('verify: an untrusted certificate or a wrong name is 502; trusted by `ca` and named right, 200', async () => {
    const untrusted = await fetch(`${gw.url}/verify-untrusted`);
    assert.equal(untrusted.status, 502);
    await untrusted.text();
    const wrongName = await fetch(`${gw.url}/verify-wrong-name`);
    assert.equal(wrongName.status, 502);
    await wrongName.text();
    const trusted = await fetch(`${gw.url}/verify-ca`);
    assert.equal(trusted.status, 200);
    assert.equal(((await trusted.json()) as { client: string }).client, 'gateway-client');
  });

  test('a client key that is not the certificate\'s is rejected with the field, no key material', async () => {
    const other = pki.client('other');
    const one = pki.client('one');
    const { writeRoutes } = await import('../helpers/gateway.ts');
    writeRoutes(gw.routesPath, {
      upstreams: [{ id: 'bad', nodes: { [address]: 1 }, scheme: 'https', tls: { client_cert: one.cert, client_key: other.key } }],
      routes: [{ id: 'bad', uri: '/bad', upstream_id: 'bad' }],
    });
    const rejection = await waitUntil(async () => (await gw.status()).rejected.find((r: { kind: string; id: string }) => r.kind === 'upstreams' && r.id === 'bad'), 5000, 'the rejection');
    assert.equal(rejection.reason, 'upstreams/bad: /tls/client_key: does not belong to client_cert');
  });
});
