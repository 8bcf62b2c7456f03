/**
 * Issue 6, item 11, through the gateway process: request variables read only what the client
 * sent. `http_constructor` used to resolve to Object.prototype.constructor (node's header object
 * inherits from Object.prototype), so a `== null` condition failed and a `~~` condition matched
 * the text of a function. Names that are Object.prototype members (`constructor`, `__proto__`,
 * `toString`, `hasOwnProperty`) as header, cookie and arg names: absent is nil, present is the
 * client's own value.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

const NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty'] as const;

describe('vars see own request properties only', () => {
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('u');
    const nodes = { [upstream.address]: 1 };
    const route = (id: string, vars: unknown[]) => ({ id, uri: `/${id}`, vars, upstream: { nodes } });
    gw = await startGateway({
      routes: {
        routes: [
          // headers: http_<name> lower-cases the name and maps '_' to '-'
          route('header-absent', [['http_constructor', '==', null], ['http_tostring', '==', null], ['http_hasownproperty', '==', null]]),
          route('header-regex', [['http_constructor', '~~', 'function']]),
          route('header-present', [['http_constructor', '==', 'c'], ['http_tostring', '==', 't'], ['http_hasownproperty', '==', 'h']]),
          route('cookie-absent', NAMES.map((n) => [`cookie_${n}`, '==', null])),
          route('cookie-present', NAMES.map((n) => [`cookie_${n}`, '==', `${n}-value`])),
          route('arg-absent', NAMES.map((n) => [`arg_${n}`, '==', null])),
          route('arg-present', NAMES.map((n) => [`arg_${n}`, '==', `${n}-value`])),
        ],
      },
    });
  });

  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  async function status(path: string, headers: Record<string, string> = {}): Promise<number> {
    const res = await fetch(gw.url + path, { headers, signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return res.status;
  }

  it('absent headers named like Object.prototype members are nil', async () => {
    assert.equal(await status('/header-absent'), 200);
    assert.equal(await status('/header-regex'), 404, 'http_constructor must not be the Object function');
  });

  it('present headers with those names are the values the client sent', async () => {
    assert.equal(await status('/header-present', { constructor: 'c', tostring: 't', hasOwnProperty: 'h' }), 200);
    assert.equal(await status('/header-absent', { constructor: 'c' }), 404);
  });

  it('cookies with those names: absent is nil, present is the value', async () => {
    assert.equal(await status('/cookie-absent'), 200);
    assert.equal(await status('/cookie-absent', { cookie: 'other=1' }), 200);
    const cookie = NAMES.map((n) => `${n}=${n}-value`).join('; ');
    assert.equal(await status('/cookie-present', { cookie }), 200);
    assert.equal(await status('/cookie-absent', { cookie }), 404);
  });

  it('query args with those names: absent is nil, present is the value', async () => {
    assert.equal(await status('/arg-absent'), 200);
    assert.equal(await status('/arg-absent?other=1'), 200);
    const query = NAMES.map((n) => `${n}=${n}-value`).join('&');
    assert.equal(await status(`/arg-present?${query}`), 200);
    assert.equal(await status(`/arg-absent?${query}`), 404);
  });
});
