/**
 * The fleet registration at scale: registrations stay out of the config watch, the record is not
 * rewritten on every change (bounded-rate revision), and `portico status --fleet` takes the live
 * revision from each instance's /status, falling back to the record. Real etcd, real gateways.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { InstanceRegistration, type InstanceRecord } from '../../src/server/registration.ts';
import { EtcdClient } from '../../src/sources/etcd/client.ts';
import { freePort, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { etcdForSuite } from '../helpers/etcd-suite.ts';
import { startGateway, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const PROGRESS = '--experimental-watch-progress-notify-interval=1s';

/** etcd's count of events it sent to watchers (all watchers of this member) */
async function eventsSent(etcd: EtcdProcess): Promise<number> {
  const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
  const m = /^etcd_debugging_mvcc_events_total (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  if (!m) throw new Error('etcd_debugging_mvcc_events_total not in /metrics');
  return Number(m[1]);
}

function record(over: Partial<InstanceRecord> = {}): InstanceRecord {
  const now = new Date().toISOString();
  return {
    instance_id: 'sim',
    hostname: 'h',
    pid: 1,
    version: '0.0.0',
    address: ['127.0.0.1:1'],
    status_address: '127.0.0.1:1',
    revision: 0,
    ready: true,
    stale: false,
    rejected: 0,
    started_at: now,
    updated_at: now,
    ...over,
  };
}

interface FleetJson {
  configRevision: number;
  instances: { instance_id: string; revision: number; record_revision: number; from: 'live' | 'record'; converged: boolean; ready: boolean }[];
}

function fleetCli(configPath: string, json = true): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) =>
    execFile(
      process.execPath,
      [path.join(ROOT, 'bin/portico.js'), 'status', '--fleet', ...(json ? ['--json'] : []), '--config', configPath],
      { timeout: 20_000 },
      (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }),
    ),
  );
}

describe('fleet registration (InstanceRegistration against etcd)', () => {
  const suite = etcdForSuite();
  const read = async (key: string) => {
    const kv = (await suite.client.range(key)).kvs[0];
    return kv ? { ...kv, record: JSON.parse(kv.value) as InstanceRecord } : undefined;
  };

  test('40 revisions in 1 s with a 0.4 s interval: a handful of writes, and the last revision is published', async () => {
    const key = '/reg/_instances/rate';
    const reg = new InstanceRegistration(suite.client, key, { ttl: 5, fleetInterval: 0.4 });
    try {
      for (let rev = 1; rev <= 40; rev++) {
        reg.update(record({ revision: rev }));
        await sleep(25);
      }
      // 1 first write + at most one per 0.4 s over ~1 s (the old behaviour wrote about every 100 ms)
      assert.ok(reg.writes <= 4, `${reg.writes} writes`);
      await waitUntil(async () => (await read(key))?.record.revision === 40, 1000, 'revision 40 published within the interval');
      const kv = (await read(key))!;
      assert.equal(kv.version, reg.writes, 'every write is one etcd put of the key');
      assert.equal(kv.record.fleet_interval, 0.4);
      // nothing changed: no further writes
      const writes = reg.writes;
      await sleep(900);
      assert.equal(reg.writes, writes);
    } finally {
      await reg.stop();
    }
    assert.equal(await read(key), undefined, 'stop() revoked the lease: record gone');
  });

  test('state changes are written at once; revision-only changes wait for the interval', async () => {
    const key = '/reg/_instances/state';
    const reg = new InstanceRegistration(suite.client, key, { ttl: 5, fleetInterval: 30 });
    try {
      reg.update(record({ revision: 5, ready: false }));
      await waitUntil(async () => (await read(key))?.record.revision === 5, 1000, 'first record');
      for (let rev = 6; rev <= 15; rev++) {
        reg.update(record({ revision: rev, ready: false }));
        await sleep(50);
      }
      await sleep(200);
      // the random phase of the first periodic publication may fall in this second: at most once
      assert.ok((await read(key))!.version <= 2, 'revision-only changes are not written one by one');
      const t0 = Date.now();
      reg.update(record({ revision: 16, ready: true }));
      const kv = await waitUntil(async () => {
        const r = await read(key);
        return r?.record.ready ? r : undefined;
      }, 1000, 'ready written');
      assert.ok(Date.now() - t0 < 600, `ready written after ${Date.now() - t0} ms`);
      assert.equal(kv.record.revision, 16, 'a state write carries the current revision too');
    } finally {
      await reg.stop();
    }
  });

  test('lease lost (revoked behind our back): registered again under a new lease', async () => {
    const key = '/reg/_instances/lease';
    const reg = new InstanceRegistration(suite.client, key, { ttl: 3, fleetInterval: 30 });
    try {
      reg.update(record({ revision: 1 }));
      const first = await waitUntil(() => read(key), 1000, 'registered');
      await suite.client.revokeLease(first.lease!);
      assert.equal(await read(key), undefined);
      // keep-alive runs every ttl/3 = 1 s and finds the lease gone
      const again = await waitUntil(() => read(key), 3000, 're-registered');
      assert.notEqual(again.lease, first.lease);
    } finally {
      await reg.stop();
    }
  });
});

describe('fleet: gateways on one etcd', () => {
  let etcd: EtcdProcess;
  let up: TestUpstream;
  let gw: GatewayProcess;
  let client: EtcdClient;
  const route = (i: number) => JSON.stringify({ uri: `/fleet/${i}`, upstream: { nodes: { [up.address]: 1 } } });
  const served = async (p: string) => (await fetch(`${gw.url}${p}`)).status === 200;

  before(async () => {
    etcd = await startEtcd({ args: [PROGRESS] });
    up = await startUpstream('fleet');
    client = new EtcdClient({ endpoints: [etcd.clientUrl] });
    gw = await startGateway({ etcd: { endpoints: [etcd.clientUrl] }, instanceId: 'gw-real' });
  });
  after(async () => {
    await gw?.cleanup();
    await client?.close();
    await etcd?.stop();
    await up?.close();
  });

  test('registration writes never reach the config watch, nor move the applied revision', async () => {
    const put = await client.put('/portico/routes/1', route(1));
    await waitUntil(() => served('/fleet/1'), 3000, '/fleet/1 served');
    const st0 = await gw.status();
    assert.equal(st0.revision, put.revision);

    // the metric counts: one config put = one event to the one watching gateway
    const e0 = await eventsSent(etcd);
    const put2 = await client.put('/portico/routes/2', route(2));
    await waitUntil(() => served('/fleet/2'), 3000, '/fleet/2 served');
    assert.equal((await eventsSent(etcd)) - e0, 1, 'a config put is delivered to the watch');

    // 100 registrations of simulated instances (and the gateway's own, whatever it writes now)
    const e1 = await eventsSent(etcd);
    const lease = await client.grantLease(30);
    for (let i = 0; i < 100; i++) await client.put(`/portico/_instances/sim-${i % 10}`, JSON.stringify(record({ instance_id: `sim-${i % 10}`, revision: i })), { lease: lease.id });
    await sleep(300);
    assert.equal((await eventsSent(etcd)) - e1, 0, 'no watch event for <prefix>/_instances/ writes');
    const st = await gw.status();
    assert.equal(st.revision, put2.revision, 'the applied revision stays at the last config change');
    assert.equal(st.last_applied, (await gw.status()).last_applied);
    await client.revokeLease(lease.id);
  });

  test('20 config changes in 2 s: the record is rewritten at most once (15 s interval), /status follows each', async () => {
    const key = '/portico/_instances/gw-real';
    const v0 = (await client.range(key)).kvs[0]!.version;
    let last = 0;
    for (let i = 0; i < 20; i++) {
      last = (await client.put(`/portico/routes/r${i}`, route(100 + i))).revision;
      await sleep(100);
    }
    await waitUntil(async () => (await gw.status()).revision === last, 3000, 'gateway at the last revision');
    const v1 = (await client.range(key)).kvs[0]!.version;
    // the old behaviour wrote after each change (coalesced 100 ms): ~20 writes here
    assert.ok(v1 - v0 <= 1, `record written ${v1 - v0} times for 20 changes`);
  });

  test('`status --fleet` shows the live revision; an instance whose status does not answer shows its record', async () => {
    const put = await client.put('/portico/routes/live', route(999));
    await waitUntil(() => served('/fleet/999'), 3000, '/fleet/999 served');

    // a registered instance that is gone from its address, one that never answers (accepts, then
    // silence: the 500 ms timeout), and one whose address answers as another instance
    const silent = net.createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    const silentPort = (silent.address() as net.AddressInfo).port;
    const statusAddr = new URL(gw.statusUrl).host;
    const lease = await client.grantLease(30);
    const fakes = [
      record({ instance_id: 'gone', status_address: `127.0.0.1:${await freePort()}`, revision: 3 }),
      record({ instance_id: 'silent', status_address: `127.0.0.1:${silentPort}`, revision: put.revision }),
      record({ instance_id: 'impostor', status_address: statusAddr, revision: 4 }),
    ];
    for (const f of fakes) await client.put(`/portico/_instances/${f.instance_id}`, JSON.stringify(f), { lease: lease.id });
    try {
      const t0 = Date.now();
      const r = await fleetCli(gw.configPath);
      assert.ok(Date.now() - t0 < 10_000);
      assert.equal(r.code, 2, 'exit 2: some instance lags');
      const view = JSON.parse(r.stdout) as FleetJson;
      assert.equal(view.configRevision, put.revision);
      const by = Object.fromEntries(view.instances.map((i) => [i.instance_id, i]));
      assert.deepEqual(Object.keys(by).sort(), ['gone', 'gw-real', 'impostor', 'silent']);
      const real = by['gw-real']!;
      assert.equal(real.from, 'live');
      assert.equal(real.revision, put.revision, 'live revision');
      assert.equal(real.converged, true);
      assert.ok(real.record_revision <= real.revision);
      assert.deepEqual([by.gone!.from, by.gone!.revision, by.gone!.converged], ['record', 3, false]);
      assert.deepEqual([by.silent!.from, by.silent!.converged], ['record', true], 'its record is at the newest config change');
      assert.deepEqual([by.impostor!.from, by.impostor!.revision, by.impostor!.converged], ['record', 4, false]);

      const text = await fleetCli(gw.configPath, false);
      assert.match(text.stdout.split('\n')[0]!, /CONVERGED\s+FROM$/);
      assert.match(text.stdout, /^gw-real\s.*\syes\s+live$/m);
      assert.match(text.stdout, /^gone\s.*\sNO\s+record$/m);
      assert.match(text.stdout, /2\/4 instances converged/);
      assert.match(text.stdout, /3 instance\(s\) shown FROM record/);
    } finally {
      await client.revokeLease(lease.id);
      silent.close();
    }
    const alone = JSON.parse((await fleetCli(gw.configPath)).stdout) as FleetJson;
    assert.deepEqual(alone.instances.map((i) => [i.instance_id, i.from, i.converged]), [['gw-real', 'live', true]]);
  });
});
