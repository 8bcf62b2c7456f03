/**
 * Issue 6, item 4, through the gateway process: a backtracking-prone `vars` regex
 * (`^([a-z0-9]+)+$`) used to freeze the whole process for 13.5 s on a 31-character header, each
 * more character doubling it. Now the evil route answers at once, and while clients hammer it
 * with 40-character and 8 KB headers, a request to another route on the same gateway is served
 * within 200 ms. A pattern RE2 cannot run (a backreference) is rejected at load with its reason.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

const EVIL = '^([a-z0-9]+)+$';

describe('a backtracking-prone vars regex cannot freeze the gateway', () => {
  let upstream: TestUpstream;
  let gw: GatewayProcess;

  before(async () => {
    upstream = await startUpstream('u');
    const nodes = { [upstream.address]: 1 };
    gw = await startGateway({
      routes: {
        routes: [
          { id: 'evil', uri: '/evil', vars: [['http_x_user_id', '~~', EVIL]], upstream: { nodes } },
          { id: 'evil-ci', uri: '/evil-ci', vars: [['http_x_user_id', '~*', EVIL]], upstream: { nodes } },
          { id: 'other', uri: '/other', upstream: { nodes } },
          { id: 'backref', uri: '/backref', vars: [['http_x_a', '~~', '(a)\\1']], upstream: { nodes } },
        ],
      },
    });
  });

  after(async () => {
    await gw?.cleanup();
    await upstream?.close();
  });

  /** status and elapsed ms; aborted after 5 s so that a frozen gateway fails the test, not hangs it */
  async function timedGet(path: string, headers: Record<string, string> = {}): Promise<{ status: number; ms: number }> {
    const started = performance.now();
    const res = await fetch(gw.url + path, { headers, signal: AbortSignal.timeout(5_000) });
    await res.arrayBuffer();
    return { status: res.status, ms: performance.now() - started };
  }

  it('the evil route still matches what its pattern accepts', async () => {
    assert.equal((await timedGet('/evil', { 'x-user-id': 'abc123' })).status, 200);
    assert.equal((await timedGet('/evil-ci', { 'x-user-id': 'ABC123' })).status, 200);
    assert.equal((await timedGet('/evil', { 'x-user-id': 'ABC123' })).status, 404);
  });

  it('a 40-character header on the evil route is answered promptly', async () => {
    const answer = await timedGet('/evil', { 'x-user-id': 'a'.repeat(40) + '!' });
    assert.equal(answer.status, 404);
    assert.ok(answer.ms < 1_000, `answered after ${answer.ms.toFixed(0)} ms`);
  });

  it('another route is served within 200 ms while evil requests are being processed', async () => {
    const evil: Promise<{ status: number; ms: number }>[] = [];
    for (let i = 0; i < 20; i++) {
      const value = (i % 2 === 0 ? 'a'.repeat(40) : 'a1'.repeat(4_096)) + '!';
      evil.push(timedGet(i % 4 < 2 ? '/evil' : '/evil-ci', { 'x-user-id': value }));
    }
    const other = await timedGet('/other');
    assert.equal(other.status, 200);
    assert.ok(other.ms < 200, `other route took ${other.ms.toFixed(0)} ms`);
    for (const answer of await Promise.all(evil)) {
      assert.equal(answer.status, 404);
      assert.ok(answer.ms < 2_000, `an evil request took ${answer.ms.toFixed(0)} ms`);
    }
  });

  it('a pattern the linear engine cannot run is rejected with its reason; the rest is served', async () => {
    const status = await gw.status();
    const rejection = status.rejected.find((r) => r.id === 'backref');
    assert.ok(rejection, JSON.stringify(status.rejected));
    assert.equal(rejection.code, 'PORTICO_ERR_SEMANTIC');
    assert.match(rejection.reason, /invalid regular expression .*backreferences .* are not supported/);
    assert.equal((await timedGet('/backref', { 'x-a': 'aa' })).status, 404);
    assert.equal((await timedGet('/other')).status, 200);
  });
});
