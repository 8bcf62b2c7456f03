import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DnsError, DnsResolver, DnsWatcher, type DnsAnswer, type DnsOptions } from '../../src/upstream/discovery/dns.ts';
import { startDnsServer, type TestDnsServer } from '../helpers/dns-server.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

/** Every test is bounded on its own; the watcher tests wait for TTL-driven re-resolutions (1-3 s). */
const bounded = { timeout: 10_000 };

let dns: TestDnsServer;
before(async () => {
  dns = await startDnsServer();
});
after(async () => {
  await dns.close();
});

/** Short timeouts: a dropped query must fail in a fraction of a second, not the default 2 x 2 s. */
function resolver(options: Partial<DnsOptions> = {}): DnsResolver {
  return new DnsResolver({ servers: [dns.address], timeoutMs: 300, tries: 1, ...options });
}

async function rejection(promise: Promise<unknown>): Promise<DnsError> {
  try {
    await promise;
  } catch (err) {
    return err as DnsError;
  }
  assert.fail('expected a rejection');
}

describe('DnsResolver.resolveHost', () => {
  it('answers the union of A and AAAA, sorted, with the smallest TTL', bounded, async () => {
    dns.setA('both.host.test', ['10.0.0.2', '10.0.0.1'], 60);
    dns.setAAAA('both.host.test', ['fd00::1'], 30);
    const r = await resolver().resolveHost('both.host.test');
    assert.deepEqual(r, { addresses: ['10.0.0.1', '10.0.0.2', 'fd00::1'], ttl: 30 });
  });

  it('answers one family when the other has no records (NODATA)', bounded, async () => {
    dns.setAAAA('v6only.host.test', ['fd00::7'], 20);
    assert.deepEqual(await resolver().resolveHost('V6ONLY.host.test'), { addresses: ['fd00::7'], ttl: 20 });
  });

  it('asks the server at every call: no resolver-side cache that would outlive maxTtl', async () => {
    dns.setA('fresh.host.test', ['10.0.0.1'], 3600);
    const r = resolver();
    await r.resolveHost('fresh.host.test');
    dns.setA('fresh.host.test', ['10.0.0.2'], 3600);
    assert.deepEqual((await r.resolveHost('fresh.host.test')).addresses, ['10.0.0.2']);
    assert.equal(dns.queries('fresh.host.test', 'A'), 2);
  });

  it('a failure of one family fails the answer (no half set); discovery does not ask AAAA when A answers', async () => {
    dns.setA('half.host.test', ['10.0.0.1'], 60);
    dns.setAAAA('half.host.test', ['fd00::1'], 60);
    dns.failWith('half.host.test', 'SERVFAIL', 'AAAA');
    const err = await rejection(resolver().resolveHost('half.host.test'));
    assert.equal(err.code, 'PORTICO_ERR_DNS_FAILED');
    assert.match(err.message, /AAAA.*ESERVFAIL/);
    assert.deepEqual((await resolver().resolveService('half.host.test:80', 80)).nodes, [{ host: '10.0.0.1', port: 80, weight: 1, priority: 0 }]);
  });

  it('answers an IP literal itself, ttl Infinity, without asking', bounded, async () => {
    const before = dns.queries();
    assert.deepEqual(await resolver().resolveHost('192.0.2.10'), { addresses: ['192.0.2.10'], ttl: Infinity });
    assert.deepEqual(await resolver().resolveHost('[2001:db8::1]'), { addresses: ['2001:db8::1'], ttl: Infinity });
    assert.equal(dns.queries(), before);
  });

  it('NXDOMAIN, or a name with neither A nor AAAA: PORTICO_ERR_DNS_NO_RECORDS naming the name', bounded, async () => {
    const err = await rejection(resolver().resolveHost('missing.host.test'));
    assert.equal(err.code, 'PORTICO_ERR_DNS_NO_RECORDS');
    assert.match(err.message, /missing\.host\.test/);
    dns.setSrv('srvonly.host.test', [{ target: 'x.host.test', port: 80, weight: 1, priority: 1 }], 10);
    assert.equal((await rejection(resolver().resolveHost('srvonly.host.test'))).code, 'PORTICO_ERR_DNS_NO_RECORDS');
  });

  it('SERVFAIL, REFUSED and no answer: PORTICO_ERR_DNS_FAILED with the c-ares code', bounded, async () => {
    dns.setA('broken.host.test', ['10.0.0.1'], 60);
    for (const [failure, code] of [['SERVFAIL', 'ESERVFAIL'], ['REFUSED', 'EREFUSED'], ['drop', 'ETIMEOUT']] as const) {
      dns.failWith('broken.host.test', failure);
      const err = await rejection(resolver().resolveHost('broken.host.test'));
      assert.equal(err.code, 'PORTICO_ERR_DNS_FAILED', failure);
      assert.equal(err.dnsCode, code, failure);
      assert.match(err.message, new RegExp(`broken\\.host\\.test.*${code}`), failure);
    }
    dns.failWith('broken.host.test', undefined);
    assert.deepEqual((await resolver().resolveHost('broken.host.test')).addresses, ['10.0.0.1']);
  });
});

describe('DnsResolver.resolveService (APISIX discovery_type: dns)', () => {
  before(() => {
    dns.setA('a.svc.test', ['10.1.0.1'], 40);
    dns.setA('b.svc.test', ['10.1.0.3', '10.1.0.2'], 50);
    dns.setAAAA('c.svc.test', ['fd01::1'], 45);
    dns.setSrv(
      'api.svc.test',
      [
        { target: 'a.svc.test', port: 8001, weight: 10, priority: 10 },
        { target: 'b.svc.test', port: 8002, weight: 20, priority: 10 },
        { target: 'c.svc.test', port: 0, weight: 0, priority: 20 },
      ],
      300,
    );
  });

  it('SRV: port from SRV (0: the default), priority -srv.priority, weight 0 as 1, weights split per address and scaled by the LCM', bounded, async () => {
    const r = await resolver().resolveService('api.svc.test', 80);
    // address counts 1, 2, 1: LCM 2. a: 10*2/1, b: 20*2/2 each, c: 1*2/1
    assert.deepEqual(r.nodes, [
      { host: '10.1.0.1', port: 8001, weight: 20, priority: -10 },
      { host: '10.1.0.2', port: 8002, weight: 20, priority: -10 },
      { host: '10.1.0.3', port: 8002, weight: 20, priority: -10 },
      { host: 'fd01::1', port: 80, weight: 2, priority: -20 },
    ]);
    assert.equal(r.ttl, 40);
  });

  it('SRV with a port in service_name: that port for every node', bounded, async () => {
    const r = await resolver().resolveService('api.svc.test:9000', 80);
    assert.deepEqual(new Set(r.nodes.map((n) => n.port)), new Set([9000]));
    assert.equal(r.nodes.length, 4);
  });

  it('no SRV records: A/AAAA of the host, weight 1, priority 0, port from service_name or the default', bounded, async () => {
    assert.deepEqual(await resolver().resolveService('b.svc.test:8080', 80), {
      nodes: [
        { host: '10.1.0.2', port: 8080, weight: 1, priority: 0 },
        { host: '10.1.0.3', port: 8080, weight: 1, priority: 0 },
      ],
      ttl: 50,
    });
    assert.deepEqual((await resolver().resolveService('c.svc.test', 443)).nodes, [{ host: 'fd01::1', port: 443, weight: 1, priority: 0 }]);
    assert.ok(dns.queries('b.svc.test', 'SRV') > 0, 'SRV is asked first, as APISIX does');
  });

  it('prefers A to AAAA, as APISIX does (resolveHost answers both)', bounded, async () => {
    dns.setA('mix.svc.test', ['10.6.0.1'], 60);
    dns.setAAAA('mix.svc.test', ['fd06::1'], 60);
    const aaaaAsked = dns.queries('mix.svc.test', 'AAAA');
    assert.deepEqual((await resolver().resolveService('mix.svc.test:80', 80)).nodes, [{ host: '10.6.0.1', port: 80, weight: 1, priority: 0 }]);
    assert.equal(dns.queries('mix.svc.test', 'AAAA'), aaaaAsked, 'AAAA is not asked when A answers');
    assert.deepEqual((await resolver().resolveHost('mix.svc.test')).addresses, ['10.6.0.1', 'fd06::1']);
  });

  it('an IP literal service_name is one node, without asking', bounded, async () => {
    const before = dns.queries();
    assert.deepEqual(await resolver().resolveService('192.0.2.1:81', 80), { nodes: [{ host: '192.0.2.1', port: 81, weight: 1, priority: 0 }], ttl: Infinity });
    assert.equal(dns.queries(), before);
  });

  it('an SRV target that does not resolve fails the whole answer, as in APISIX', bounded, async () => {
    dns.setSrv('dangling.svc.test', [
      { target: 'a.svc.test', port: 8001, weight: 1, priority: 1 },
      { target: 'nowhere.svc.test', port: 8001, weight: 1, priority: 1 },
    ], 60);
    const err = await rejection(resolver().resolveService('dangling.svc.test', 80));
    assert.equal(err.code, 'PORTICO_ERR_DNS_NO_RECORDS');
    assert.match(err.message, /dangling\.svc\.test.*nowhere\.svc\.test/);
  });

  it('SERVFAIL on SRV fails (no silent fallback to A); NXDOMAIN is NO_RECORDS; a bad port is a config error', bounded, async () => {
    dns.setA('flaky.svc.test', ['10.9.0.1'], 60);
    dns.failWith('flaky.svc.test', 'SERVFAIL');
    assert.equal((await rejection(resolver().resolveService('flaky.svc.test', 80))).code, 'PORTICO_ERR_DNS_FAILED');
    assert.equal((await rejection(resolver().resolveService('gone.svc.test:80', 80))).code, 'PORTICO_ERR_DNS_NO_RECORDS');
    assert.equal((await rejection(resolver().resolveService('a.svc.test:0', 80))).code, 'PORTICO_ERR_SEMANTIC');
  });
});

describe('DnsWatcher', () => {
  it('resolves at once, re-resolves by TTL and calls onChange only when the set changes', bounded, async (t) => {
    dns.setA('moving.watch.test', ['10.2.0.1'], 1);
    const watcher = new DnsWatcher(resolver({ minTtl: 1, maxTtl: 5 }));
    t.after(() => watcher.stop());
    const seen: string[][] = [];
    watcher.watch('u1', { kind: 'host', name: 'moving.watch.test' }, (a) => seen.push(a.kind === 'host' ? a.addresses : []));
    const first = await watcher.ready('u1', 2000);
    assert.deepEqual(first, { kind: 'host', addresses: ['10.2.0.1'], ttl: 1 });
    // same set at the next resolution: no call
    const asked = dns.queries('moving.watch.test', 'A');
    await waitUntil(() => dns.queries('moving.watch.test', 'A') > asked, 3000, 'a re-resolution after ttl 1');
    await sleep(50);
    assert.deepEqual(seen, [['10.2.0.1']]);
    dns.setA('moving.watch.test', ['10.2.0.2', '10.2.0.1'], 1);
    await waitUntil(() => seen.length === 2, 3000, 'onChange with the new set');
    assert.deepEqual(seen[1], ['10.2.0.1', '10.2.0.2']);
    const [state] = watcher.state();
    assert.equal(state!.id, 'u1');
    assert.equal(state!.error, undefined);
    assert.ok(state!.nextAt! > state!.resolvedAt!);
  });

  it('keeps the last good set through failures (no onChange, error in state()), then recovers', bounded, async (t) => {
    dns.setA('failing.watch.test', ['10.3.0.1'], 1);
    const watcher = new DnsWatcher(resolver({ minTtl: 1, maxTtl: 2 }));
    t.after(() => watcher.stop());
    const seen: DnsAnswer[] = [];
    watcher.watch('u2', { kind: 'host', name: 'failing.watch.test' }, (a) => seen.push(a));
    await watcher.ready('u2', 2000);
    dns.failWith('failing.watch.test', 'SERVFAIL');
    await waitUntil(() => watcher.state()[0]!.error, 3000, 'the failure in state()');
    const failed = watcher.state()[0]!;
    assert.equal(failed.error!.code, 'PORTICO_ERR_DNS_FAILED');
    assert.match(failed.error!.message, /ESERVFAIL/);
    assert.deepEqual(failed.answer, { kind: 'host', addresses: ['10.3.0.1'], ttl: 1 });
    assert.equal(seen.length, 1);
    // first retry after minTtl, then doubling up to maxTtl (2 s here)
    assert.ok(Math.abs(failed.nextAt! - failed.error!.at - 1000) < 50, `retry in ${failed.nextAt! - failed.error!.at} ms`);
    await waitUntil(() => watcher.state()[0]!.error!.at > failed.error!.at, 2000, 'the second failure');
    const again = watcher.state()[0]!;
    assert.ok(Math.abs(again.nextAt! - again.error!.at - 2000) < 50, `retry in ${again.nextAt! - again.error!.at} ms`);
    // recovery with a different set: the error clears and onChange fires
    dns.setA('failing.watch.test', ['10.3.0.9'], 1);
    dns.failWith('failing.watch.test', undefined);
    await waitUntil(() => seen.length === 2, 4000, 'onChange after recovery');
    assert.deepEqual(seen[1], { kind: 'host', addresses: ['10.3.0.9'], ttl: 1 });
    assert.equal(watcher.state()[0]!.error, undefined);
  });

  it('a name that never resolved: ready() rejects with the error, state() shows it, nothing is called', bounded, async (t) => {
    const watcher = new DnsWatcher(resolver());
    t.after(() => watcher.stop());
    let calls = 0;
    watcher.watch('u3', { kind: 'service', serviceName: 'never.watch.test:80', defaultPort: 80 }, () => calls++);
    const err = await rejection(watcher.ready('u3', 2000));
    assert.equal(err.code, 'PORTICO_ERR_DNS_NO_RECORDS');
    assert.equal(watcher.state()[0]!.answer, undefined);
    assert.equal(watcher.state()[0]!.error!.code, 'PORTICO_ERR_DNS_NO_RECORDS');
    assert.equal(calls, 0);
  });

  it('ready() is bounded when the server does not answer', bounded, async (t) => {
    dns.failWith('silent.watch.test', 'drop');
    // options, not a resolver: a watcher that made its resolver cancels its queries on stop()
    const watcher = new DnsWatcher({ servers: [dns.address], timeoutMs: 2000, tries: 2 });
    t.after(() => watcher.stop());
    watcher.watch('u4', { kind: 'host', name: 'silent.watch.test' }, () => {});
    const started = Date.now();
    const err = await rejection(watcher.ready('u4', 200));
    assert.equal(err.code, 'PORTICO_ERR_DNS_NOT_READY');
    assert.ok(Date.now() - started < 1000);
  });

  it('two watches of one name share one resolution; the last unwatch stops the queries', bounded, async (t) => {
    dns.setA('shared.watch.test', ['10.4.0.1'], 1);
    const watcher = new DnsWatcher(resolver({ minTtl: 1 }));
    t.after(() => watcher.stop());
    const calls = { x: 0, y: 0 };
    watcher.watch('x', { kind: 'host', name: 'shared.watch.test' }, () => calls.x++);
    watcher.watch('y', { kind: 'host', name: 'SHARED.watch.test' }, () => calls.y++);
    await watcher.ready('x', 2000);
    await watcher.ready('y', 2000);
    assert.equal(dns.queries('shared.watch.test', 'A'), 1);
    await waitUntil(() => dns.queries('shared.watch.test', 'A') === 2, 3000, 'the second resolution');
    await sleep(300);
    assert.equal(dns.queries('shared.watch.test', 'A'), 2, 'one query per resolution, not one per watch');
    assert.deepEqual(calls, { x: 1, y: 1 });
    // a late joiner hears the current answer once, without a query
    let z = 0;
    watcher.watch('z', { kind: 'host', name: 'shared.watch.test' }, () => z++);
    await sleep(10);
    assert.equal(z, 1);
    assert.equal(dns.queries('shared.watch.test', 'A'), 2);
    watcher.unwatch('x');
    watcher.unwatch('z');
    await waitUntil(() => dns.queries('shared.watch.test', 'A') === 3, 3000, 'resolution continues for y');
    watcher.unwatch('y');
    const stoppedAt = dns.queries('shared.watch.test', 'A');
    await sleep(1500);
    assert.equal(dns.queries('shared.watch.test', 'A'), stoppedAt, 'no query after the last unwatch');
    assert.deepEqual(watcher.state(), []);
  });

  it('stop() ends every resolution: no more queries, no state, no new watches; a throwing onChange does not stop the others', bounded, async () => {
    dns.setA('stopped.watch.test', ['10.7.0.1'], 1);
    const watcher = new DnsWatcher({ servers: [dns.address], timeoutMs: 300, tries: 1, minTtl: 1 });
    let calls = 0;
    const warned: string[] = [];
    const onWarning = (w: Error) => warned.push(w.message);
    process.on('warning', onWarning);
    try {
      watcher.watch('bad', { kind: 'host', name: 'stopped.watch.test' }, () => {
        throw new Error('subscriber bug');
      });
      watcher.watch('good', { kind: 'host', name: 'stopped.watch.test' }, () => calls++);
      await watcher.ready('good', 2000);
      await waitUntil(() => warned.length > 0, 1000, 'the warning for the throwing subscriber');
    } finally {
      process.off('warning', onWarning);
    }
    assert.equal(calls, 1);
    assert.match(warned[0]!, /"bad".*subscriber bug/s);
    watcher.stop();
    const stoppedAt = dns.queries('stopped.watch.test');
    await sleep(1500);
    assert.equal(dns.queries('stopped.watch.test'), stoppedAt);
    assert.deepEqual(watcher.state(), []);
    assert.throws(() => watcher.watch('late', { kind: 'host', name: 'stopped.watch.test' }, () => {}), /stopped/);
  });

  it('service watch: onChange with nodes when an SRV record changes', bounded, async (t) => {
    dns.setA('n1.watch.test', ['10.5.0.1'], 1);
    dns.setA('n2.watch.test', ['10.5.0.2'], 1);
    dns.setSrv('srv.watch.test', [{ target: 'n1.watch.test', port: 7001, weight: 5, priority: 0 }], 1);
    const watcher = new DnsWatcher(resolver({ minTtl: 1 }));
    t.after(() => watcher.stop());
    const seen: DnsAnswer[] = [];
    watcher.watch('s', { kind: 'service', serviceName: 'srv.watch.test', defaultPort: 80 }, (a) => seen.push(a));
    assert.deepEqual(await watcher.ready('s', 2000), { kind: 'service', nodes: [{ host: '10.5.0.1', port: 7001, weight: 5, priority: 0 }], ttl: 1 });
    dns.setSrv('srv.watch.test', [
      { target: 'n1.watch.test', port: 7001, weight: 5, priority: 0 },
      { target: 'n2.watch.test', port: 7002, weight: 5, priority: 1 },
    ], 1);
    await waitUntil(() => seen.length === 2, 3000, 'onChange with the second node');
    assert.deepEqual(seen[1], {
      kind: 'service',
      nodes: [
        { host: '10.5.0.1', port: 7001, weight: 5, priority: 0 },
        { host: '10.5.0.2', port: 7002, weight: 5, priority: -1 },
      ],
      ttl: 1,
    });
  });
});
