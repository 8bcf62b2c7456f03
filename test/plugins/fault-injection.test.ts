/**
 * fault-injection through the gateway process, as APISIX's docs show it
 * (apisix.apache.org/docs/apisix/plugins/fault-injection): "Inject Faults" (404 with a body, the
 * upstream never called), "Inject Latencies" (a delay; 1 s here instead of the docs' 3 s),
 * "Inject Faults Conditionally" (`vars` on `arg_name`, a header carrying `$remote_addr`); plus
 * percentages, OR between `vars` expressions, delay and abort together, and invalid configs
 * rejected with the reason.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { writeRoutes } from '../helpers/gateway.ts';
import { expectRoutesRejected, gatewayWithUpstream, invalidRoutes, pluginRoute, send, type InvalidConfig } from './send.ts';

describe('fault-injection (gateway process)', () => {
  const routes = (extra: object[] = []) => {
    const r = pluginRoute('fault-injection', rig.up.address);
    return {
      routes: [
        r('docs-abort', { abort: { http_status: 404, body: 'APISIX Fault Injection' } }),
        r('docs-delay', { delay: { duration: 1 } }),
        r('docs-vars', {
          abort: {
            http_status: 404,
            body: 'APISIX Fault Injection',
            headers: { 'X-APISIX-Remote-Addr': '$remote_addr' },
            vars: [[['arg_name', '==', 'john']]],
          },
        }),
        // docs tip: (arg_name == jack AND arg_age == 18) OR arg_name2 == allen
        r('vars-or', { abort: { http_status: 403, vars: [[['arg_name', '==', 'jack'], ['arg_age', '==', 18]], [['arg_name2', '==', 'allen']]] } }),
        r('never', { abort: { http_status: 500, percentage: 0 } }),
        r('always', { abort: { http_status: 503, body: 'down', percentage: 100 } }),
        r('half', { abort: { http_status: 503, percentage: 50 } }),
        r('no-body', { abort: { http_status: 500 } }),
        r('template', { abort: { http_status: 200, body: 'client addr: $remote_addr, name: ${arg_name ?? nobody}\n', headers: { 'X-Num': 42, 'X-Uri': '$uri' } } }),
        r('both', { delay: { duration: 0.5 }, abort: { http_status: 418, body: 'late teapot' } }),
        r('delay-vars', { delay: { duration: 1, vars: [[['http_x_slow', '==', 'yes']]] } }),
        ...extra,
      ],
    };
  };

  const rig = gatewayWithUpstream(() => ({ routes: routes() }));

  // [what, path, request headers, status, body (undefined: the upstream's answer), headers expected]
  const cases: Array<[string, string, Record<string, string>, number, string | undefined, Record<string, string>]> = [
    ['docs "Inject Faults": 404 and the body, no upstream call', '/docs-abort', {}, 404, 'APISIX Fault Injection', {}],
    ['docs "Inject Faults Conditionally": name=john is aborted, with $remote_addr in a header', '/docs-vars?name=john', {}, 404, 'APISIX Fault Injection', { 'x-apisix-remote-addr': '127.0.0.1' }],
    ['docs "Inject Faults Conditionally": name=jane reaches the upstream', '/docs-vars?name=jane', {}, 200, undefined, {}],
    ['no name at all reaches the upstream', '/docs-vars', {}, 200, undefined, {}],
    ['vars: the first expression (AND) holds', '/vars-or?name=jack&age=18', {}, 403, '', {}],
    ['vars: half of the AND is not enough', '/vars-or?name=jack&age=19', {}, 200, undefined, {}],
    ['vars: the second expression (OR) holds', '/vars-or?name2=allen', {}, 403, '', {}],
    ['percentage 0 never aborts', '/never', {}, 200, undefined, {}],
    ['percentage 100 always aborts', '/always', {}, 503, 'down', {}],
    ['no body: the status alone', '/no-body', {}, 500, '', {}],
    ['body and header templates; a number header value', '/template?name=jack', {}, 200, 'client addr: 127.0.0.1, name: jack\n', { 'x-num': '42', 'x-uri': '/template' }],
    ['a template default (??) for an absent variable', '/template', {}, 200, 'client addr: 127.0.0.1, name: nobody\n', {}],
  ];

  for (const [what, path, headers, status, body, expectHeaders] of cases) {
    test(what, async () => {
      const before = rig.up.requests.length;
      const a = await send(rig.gw.url + path, { headers });
      assert.equal(a.status, status, a.body);
      if (body === undefined) {
        assert.equal(rig.up.requests.length, before + 1);
        assert.equal(JSON.parse(a.body).upstream, 'up');
      } else {
        assert.equal(a.body, body);
        assert.equal(rig.up.requests.length, before, 'an aborted request never reaches the upstream');
      }
      for (const [name, value] of Object.entries(expectHeaders)) assert.equal(a.headers[name], value, name);
    });
  }

  test('docs "Inject Latencies": the answer comes from the upstream after the delay', async () => {
    const a = await send(`${rig.gw.url}/docs-delay`);
    assert.equal(a.status, 200);
    assert.equal(JSON.parse(a.body).upstream, 'up');
    assert.ok(a.ms >= 950 && a.ms < 3_000, `took ${a.ms.toFixed(0)} ms`);
  });

  test('delay then abort: the abort answer comes after the delay', async () => {
    const a = await send(`${rig.gw.url}/both`);
    assert.equal(a.status, 418);
    assert.equal(a.body, 'late teapot');
    assert.ok(a.ms >= 450 && a.ms < 2_500, `took ${a.ms.toFixed(0)} ms`);
  });

  test('delay with vars: only matching requests wait; a delay does not hold other requests', async () => {
    const slow = send(`${rig.gw.url}/delay-vars`, { headers: { 'x-slow': 'yes' } });
    const fast = await send(`${rig.gw.url}/delay-vars`);
    assert.equal(fast.status, 200);
    assert.ok(fast.ms < 500, `unmatched request took ${fast.ms.toFixed(0)} ms`);
    const s = await slow;
    assert.equal(s.status, 200);
    assert.ok(s.ms >= 950, `matched request took ${s.ms.toFixed(0)} ms`);
  });

  test('percentage 50 aborts about half of the requests', async () => {
    let aborted = 0;
    const n = 200;
    for (let i = 0; i < n; i += 20) {
      const batch = await Promise.all(Array.from({ length: 20 }, () => send(`${rig.gw.url}/half`)));
      aborted += batch.filter((a) => a.status === 503).length;
    }
    // binomial(200, 0.5): sd ~7; 60..140 fails about once in 10^8 runs
    assert.ok(aborted > 60 && aborted < 140, `${aborted} of ${n} aborted`);
  });

  test('invalid configs are rejected with the reason in /status; the rest keeps serving', async () => {
    const invalid: InvalidConfig[] = [
      ['bad-empty', {}, '/plugins/fault-injection: must NOT have fewer than 1 properties'],
      ['bad-abort', { abort: { body: 'x' } }, "/plugins/fault-injection/abort: must have required property 'http_status'"],
      ['bad-status', { abort: { http_status: 100 } }, '/plugins/fault-injection/abort/http_status: must be >= 200'],
      ['bad-percentage', { abort: { http_status: 500, percentage: 101 } }, '/plugins/fault-injection/abort/percentage: must be <= 100'],
      ['bad-delay', { delay: { duration: -1 } }, '/plugins/fault-injection/delay/duration: must be >= 0'],
      ['bad-vars', { abort: { http_status: 500, vars: [[['arg_name', 'is', 'x']]] } }, "abort.vars[0]: vars[0]: invalid operator 'is'"],
      ['bad-header', { abort: { http_status: 500, headers: { 'X-Bad': 'a\r\nb' } } }, 'abort.headers.X-Bad: value contains CR'],
    ];
    writeRoutes(rig.gw.routesPath, routes(invalidRoutes('fault-injection', rig.up.address, invalid)));
    await expectRoutesRejected(rig.gw, invalid);
    assert.equal((await send(`${rig.gw.url}/docs-abort`)).status, 404, 'the valid routes keep working');
    writeRoutes(rig.gw.routesPath, routes());
  });
});
