/**
 * Issue 6, item 9 (config part): `upstream_host` with CR/LF was accepted, and on the upgrade path
 * written raw into the upstream request. Header values from config now go through one check
 * (src/security/header-value.ts) when the object is validated; upstream_host must also be a host,
 * as APISIX's host_def says.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { validateObject } from '../../src/config/validate.ts';
import { headerNameProblem, headerValueProblem } from '../../src/security/header-value.ts';
import { startGateway, writeRoutes } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('header values from config', () => {
  test('the field-value rules (RFC 9110 §5.5)', () => {
    const cases: Array<[string, string | undefined]> = [
      ['api.example.com', undefined],
      ['a b\tc', undefined],
      ['caf\u00e9', undefined], // obs-text: one octet
      ['a\r\nX-Injected: 1', 'contains CR (0x0D) at position 1: header values must not contain control characters'],
      ['a\nb', 'contains LF (0x0A) at position 1: header values must not contain control characters'],
      ['a\u0000', 'contains NUL (0x00) at position 1: header values must not contain control characters'],
      ['a\u001b', 'contains control character 0x1B at position 1: header values must not contain control characters'],
      ['a\u007f', 'contains DEL (0x7F) at position 1: header values must not contain control characters'],
      ['a\u0100', 'contains U+0100 at position 1: header values must be ISO-8859-1 (one octet per character)'],
      [' a', 'starts or ends with whitespace, which HTTP parsers strip from header values'],
      ['a\t', 'starts or ends with whitespace, which HTTP parsers strip from header values'],
      ['', undefined],
    ];
    for (const [value, problem] of cases) assert.equal(headerValueProblem(value), problem, JSON.stringify(value));
    assert.equal(headerNameProblem('X-Request-Id'), undefined);
    assert.match(headerNameProblem('X Request')!, /token/);
    assert.match(headerNameProblem('X:a')!, /token/);
  });

  test('upstream_host is rejected at validation with the reason, wherever the upstream sits', () => {
    const upstream = (upstream_host: string) => ({ nodes: { '127.0.0.1:1980': 1 }, pass_host: 'rewrite', upstream_host });
    const reason = (kind: 'routes' | 'services' | 'upstreams', value: unknown) => {
      const r = validateObject(kind, 'x', value);
      return r.ok ? 'ok' : `${r.rejection.code} ${r.rejection.reason}`;
    };
    assert.equal(
      reason('upstreams', upstream('a.example.com\r\nX-Injected: 1')),
      'PORTICO_ERR_SCHEMA upstreams/x: /upstream_host: contains CR (0x0D) at position 13: header values must not contain control characters',
    );
    assert.equal(
      reason('routes', { uri: '/', upstream: upstream('a\u0000') }),
      'PORTICO_ERR_SCHEMA routes/x: /upstream/upstream_host: contains NUL (0x00) at position 1: header values must not contain control characters',
    );
    assert.equal(
      reason('services', { upstream: upstream('a b') }),
      'PORTICO_ERR_SEMANTIC services/x: /upstream/upstream_host: must be a host name or address, optionally with :port',
    );
    assert.equal(reason('upstreams', upstream('a.example.com:8443')), 'ok');
    assert.equal(reason('upstreams', upstream('[::1]:8080')), 'ok');
  });

  describe('through the gateway', () => {
    let up: TestUpstream;
    before(async () => {
      up = await startUpstream('up');
    });
    after(async () => {
      await up?.close();
    });

    test('a route whose upstream_host holds CR/LF is rejected and never reaches the upstream; the others serve', async () => {
      const routes = (host: string) => ({
        routes: [
          { id: 'ok', uri: '/ok', upstream: { nodes: { [up.address]: 1 } } },
          { id: 'inject', uri: '/inject', upstream: { nodes: { [up.address]: 1 }, pass_host: 'rewrite', upstream_host: host } },
        ],
      });
      const gw = await startGateway({ routes: routes('good.example') });
      try {
        assert.equal((await get(`${gw.url}/inject`)).status, 200);
        assert.equal(up.requests.at(-1)!.headers.host, 'good.example');
        writeRoutes(gw.routesPath, routes('good.example\r\nX-Injected: 1'));
        const rej = await waitUntil(async () => (await gw.status()).rejected.find((r) => r.id === 'inject'), 5000, 'the rejection');
        assert.equal(rej.code, 'PORTICO_ERR_SCHEMA');
        assert.equal(
          rej.reason,
          'routes/inject: /upstream/upstream_host: contains CR (0x0D) at position 12: header values must not contain control characters',
        );
        // the previous version stays in force, as for any invalid object
        const before = up.requests.length;
        assert.equal((await get(`${gw.url}/inject`)).status, 200);
        assert.equal(up.requests.length, before + 1);
        assert.equal(up.requests.at(-1)!.headers.host, 'good.example');
        assert.equal(up.requests.at(-1)!.headers['x-injected'], undefined);
        assert.equal((await get(`${gw.url}/ok`)).status, 200);
      } finally {
        await gw.cleanup();
      }
    });
  });
});
