import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { etcdctl, makeTestCerts, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PROGRESS = '--experimental-watch-progress-notify-interval=1s';

const status = async (gw: GatewayProcess, p: string) => (await fetch(`${gw.url}${p}`)).status;
const servedBy = async (gw: GatewayProcess, p: string) => {
  const res = await fetch(`${gw.url}${p}`);
  return res.status === 200 ? ((await res.json()) as { upstream: string }).upstream : res.status;
};

describe('etcd config center, end to end', () => {
  let etcd: EtcdProcess;
  let a: TestUpstream;
  let b: TestUpstream;
  let gw: GatewayProcess;
  const put = (key: string, value: unknown) => etcdctl(etcd.endpoint, 'put', `/portico/${key}`, typeof value === 'string' ? value : JSON.stringify(value));

  before(async () => {
    etcd = await startEtcd({ args: [PROGRESS] });
    a = await startUpstream('a');
    b = await startUpstream('b');
    gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl] } });
  });
  after(async () => {
    await gw?.cleanup();
    await etcd?.stop();
    await a?.close();
    await b?.close();
  });

  test('the seed scenario: 404 -> etcdctl put -> served; etcdctl del -> 404', async () => {
    assert.equal(await status(gw, '/hello'), 404);
    await put('routes/1', { uri: '/hello', upstream: { nodes: { [a.address]: 1 } } });
    await waitUntil(async () => (await status(gw, '/hello')) === 200, 2000, '/hello served');
    await etcdctl(etcd.endpoint, 'del', '/portico/routes/1');
    await waitUntil(async () => (await status(gw, '/hello')) === 404, 2000, '/hello gone');
    const st = await gw.status();
    assert.equal(st.source, 'etcd');
    assert.equal(st.connected, true);
    assert.equal(st.stale, false);
  });

  test('a route and its upstream in one txn are applied together', async () => {
    const { EtcdClient } = await import('../../src/sources/etcd/client.ts');
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    const res = await client.txn({
      success: [
        { put: { key: '/portico/routes/tx', value: JSON.stringify({ uri: '/tx', upstream_id: 'tx' }) } },
        { put: { key: '/portico/upstreams/tx', value: JSON.stringify({ nodes: { [b.address]: 1 } }) } },
      ],
    });
    await client.close();
    assert.equal(res.succeeded, true);
    await waitUntil(async () => (await servedBy(gw, '/tx')) === 'b', 2000, '/tx served by b');
    const st = await gw.status();
    assert.deepEqual(st.rejected, [], 'the route never dangled');
    assert.equal(st.rejections_total.PORTICO_ERR_REFERENCE, undefined);
  });

  test('200 puts in a burst: the final state is exact', async () => {
    const { EtcdClient } = await import('../../src/sources/etcd/client.ts');
    const client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    try {
      let last = 0;
      const track = (h: { revision: number }) => void (last = Math.max(last, h.revision));
      await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          // every route written twice: the second version (upstream b for odd i) must win
          client.put(`/portico/routes/burst${i}`, JSON.stringify({ uri: `/burst/${i}`, upstream: { nodes: { [a.address]: 1 } } })).then(() =>
            client.put(`/portico/routes/burst${i}`, JSON.stringify({ uri: `/burst/${i}`, upstream: { nodes: { [(i % 2 ? b : a).address]: 1 } } })).then(track),
          ),
        ),
      );
      // (etcd's own revision moves on with the gateways' registrations: compare with our last write)
      await waitUntil(async () => (await gw.status()).revision >= last, 3000, `gateway at revision ${last}`);
      for (let i = 0; i < 200; i++) assert.equal(await servedBy(gw, `/burst/${i}`), i % 2 ? 'b' : 'a', `/burst/${i}`);
      assert.equal((await gw.status()).counts.routes, 201);
    } finally {
      await client.close();
    }
  });

  test('invalid JSON or schema in etcd: rejected with reason and counted; the previous version keeps serving', async () => {
    await put('routes/v', { uri: '/v', upstream: { nodes: { [a.address]: 1 } } });
    await waitUntil(async () => (await status(gw, '/v')) === 200, 2000, '/v served');
    await put('routes/v', '{"uri": "/v", "upstream": ');
    let st = await waitUntil(async () => {
      const s = await gw.status();
      return s.rejected.find((r) => r.id === 'v') ? s : undefined;
    }, 2000, 'parse rejection');
    assert.equal(st.rejected.find((r) => r.id === 'v')!.code, 'PORTICO_ERR_PARSE');
    assert.equal(st.rejections_total.PORTICO_ERR_PARSE, 1);
    assert.equal(await servedBy(gw, '/v'), 'a', 'previous version still served');
    await put('routes/v', { uri: '/v', upstream: { nodes: { [b.address]: 1 } }, priority: 'high' });
    st = await waitUntil(async () => {
      const s = await gw.status();
      return s.rejected.find((r) => r.id === 'v' && r.code === 'PORTICO_ERR_SCHEMA') ? s : undefined;
    }, 2000, 'schema rejection');
    assert.equal(st.rejected.find((r) => r.id === 'v')!.reason, 'routes/v: /priority: must be integer');
    assert.equal(await servedBy(gw, '/v'), 'a');
    // other objects still apply meanwhile
    await put('routes/w', { uri: '/w', upstream: { nodes: { [b.address]: 1 } } });
    await waitUntil(async () => (await servedBy(gw, '/w')) === 'b', 2000, '/w served');
    // the same in Prometheus form
    const metrics = await (await fetch(`${gw.statusUrl}/metrics`)).text();
    assert.match(metrics, /^portico_config_rejections_total\{code="PORTICO_ERR_PARSE"\} 1$/m);
    assert.match(metrics, /^portico_config_rejections_total\{code="PORTICO_ERR_SCHEMA"\} 1$/m);
    assert.match(metrics, /^portico_config_rejected_objects\{code="PORTICO_ERR_SCHEMA"\} 1$/m);
    assert.match(metrics, /^portico_source_connected\{source="etcd"\} 1$/m);
    // a valid version clears the rejection
    await put('routes/v', { uri: '/v', upstream: { nodes: { [b.address]: 1 } } });
    await waitUntil(async () => (await servedBy(gw, '/v')) === 'b', 2000, '/v fixed');
    assert.equal((await gw.status()).rejected.find((r) => r.id === 'v'), undefined);
    const after = await (await fetch(`${gw.statusUrl}/metrics`)).text();
    assert.doesNotMatch(after, /^portico_config_rejected_objects\{/m, 'nothing rejected any more');
    assert.match(after, /^portico_config_rejections_total\{code="PORTICO_ERR_SCHEMA"\} 1$/m, 'the counter never goes down');
  });
});

describe('etcd: auth and TLS', () => {
  test('user/password auth, with tokens expiring every second', async () => {
    const etcd = await startEtcd({ args: [PROGRESS, '--auth-token=simple', '--auth-token-ttl=1'] });
    const up = await startUpstream('auth');
    let gw: GatewayProcess | undefined;
    try {
      await etcdctl(etcd.endpoint, 'user', 'add', 'root:s3cret');
      await etcdctl(etcd.endpoint, 'auth', 'enable');
      const ctl = (...args: string[]) => etcdctl(etcd.endpoint, '--user=root:s3cret', ...args);
      await ctl('put', '/portico/routes/1', JSON.stringify({ uri: '/one', upstream: { nodes: { [up.address]: 1 } } }));
      gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl], user: 'root', password: 's3cret' } });
      assert.equal(await status(gw, '/one'), 200);
      await new Promise((r) => setTimeout(r, 2500)); // the token expired
      await ctl('put', '/portico/routes/2', JSON.stringify({ uri: '/two', upstream: { nodes: { [up.address]: 1 } } }));
      await waitUntil(async () => (await status(gw!, '/two')) === 200, 5000, '/two served after token expiry');
      assert.equal((await gw.status()).connected, true);
    } finally {
      await gw?.cleanup();
      await etcd.stop();
      await up.close();
    }
  });

  test('a wrong password: not ready, and the reason is in /status', async () => {
    const etcd = await startEtcd({ args: [PROGRESS] });
    let gw: GatewayProcess | undefined;
    try {
      await etcdctl(etcd.endpoint, 'user', 'add', 'root:s3cret');
      await etcdctl(etcd.endpoint, 'auth', 'enable');
      gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl], user: 'root', password: 'wrong' }, noWaitReady: true });
      const st = await waitUntil(async () => {
        const s = await gw!.status();
        return s.source_error ? s : undefined;
      }, 5000, 'auth error in /status');
      assert.equal(st.ready, false);
      assert.equal(st.source_error!.code, 'PORTICO_ERR_ETCD_AUTH');
      assert.equal((await fetch(`${gw.statusUrl}/status/ready`)).status, 503);
    } finally {
      await gw?.cleanup();
      await etcd.stop();
    }
  });

  test('TLS to etcd with a client certificate', async () => {
    const certs = makeTestCerts();
    const etcd = await startEtcd({ tls: { ...certs, clientCertAuth: true }, args: [PROGRESS] });
    const up = await startUpstream('tls');
    let gw: GatewayProcess | undefined;
    try {
      const ctl = [`--cacert=${certs.ca}`, `--cert=${certs.clientCert}`, `--key=${certs.clientKey}`];
      await etcdctl(etcd.endpoint, ...ctl, 'put', '/portico/routes/1', JSON.stringify({ uri: '/tls', upstream: { nodes: { [up.address]: 1 } } }));
      gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl], tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } } });
      assert.equal(await status(gw, '/tls'), 200);
      await etcdctl(etcd.endpoint, ...ctl, 'del', '/portico/routes/1');
      await waitUntil(async () => (await status(gw!, '/tls')) === 404, 3000, '/tls deleted');
    } finally {
      await gw?.cleanup();
      await etcd.stop();
      await up.close();
    }
  });
});

describe('fleet', () => {
  test('two gateways on one etcd converge; `portico status --fleet` shows both at the same revision', async () => {
    const etcd = await startEtcd({ args: [PROGRESS] });
    const up = await startUpstream('fleet');
    const gws: GatewayProcess[] = [];
    try {
      gws.push(await startGateway({ etcd: { endpoints: [etcd.clientUrl] }, instanceId: 'gw-a' }));
      gws.push(await startGateway({ etcd: { endpoints: [etcd.clientUrl] }, instanceId: 'gw-b' }));
      for (let i = 0; i < 5; i++) {
        await etcdctl(etcd.endpoint, 'put', `/portico/routes/${i}`, JSON.stringify({ uri: `/f/${i}`, upstream: { nodes: { [up.address]: 1 } } }));
      }
      await etcdctl(etcd.endpoint, 'del', '/portico/routes/0');
      for (const gw of gws) {
        await waitUntil(async () => (await status(gw, '/f/4')) === 200 && (await status(gw, '/f/0')) === 404, 3000, 'gateway converged');
      }
      const fleet = async () => {
        const r = await new Promise<{ code: number; stdout: string }>((resolve) =>
          execFile(process.execPath, [path.join(ROOT, 'bin/portico.js'), 'status', '--fleet', '--config', gws[0]!.configPath], { timeout: 20_000 }, (err, stdout) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }),
          ),
        );
        return r;
      };
      // the revision is asked live from each instance's /status (records publish it only every 15 s)
      const r = await waitUntil(async () => {
        const out = await fleet();
        return out.code === 0 ? out : undefined;
      }, 5000, 'fleet converged');
      const lines = r.stdout.trim().split('\n');
      assert.match(lines[0]!, /^INSTANCE\s+ADDRESS\s+VERSION\s+REVISION\s+READY\s+STALE\s+REJECTED\s+UPDATED\s+CONVERGED\s+FROM$/);
      const rows = lines.filter((l) => /^gw-[ab]\s/.test(l)).map((l) => l.split(/\s+/));
      assert.equal(rows.length, 2);
      assert.equal(rows[0]![3], rows[1]![3], 'same revision');
      assert.deepEqual(rows.map((c) => c[8]), ['yes', 'yes']);
      assert.deepEqual(rows.map((c) => c[9]), ['live', 'live']);
      assert.match(r.stdout, /2\/2 instances converged/);

      // a stopped instance deregisters at once (lease revoked)
      assert.equal(await gws[1]!.stop(), 0);
      const after1 = await fleet();
      assert.doesNotMatch(after1.stdout, /^gw-b\s/m);
      assert.match(after1.stdout, /1\/1 instances converged/);
    } finally {
      for (const gw of gws) await gw.cleanup();
      await etcd.stop();
      await up.close();
    }
  });
});
