/**
 * The schema validators a build writes (src/config/precompiled.ts, dist/validators.cjs) against the
 * ones compiled at run time: the same verdicts, errors and filled-in defaults; a file written for
 * other schemas, or no file, means compiling.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ROOT } from '../../bench/lib.ts';
import { GATEWAY_VALIDATORS } from '../../src/config/gateway.ts';
import { groupHash, Validators, validatorsModule, type ValidatorGroup } from '../../src/config/precompiled.ts';
import { KIND_VALIDATORS } from '../../src/config/validate.ts';

const up = { nodes: { '127.0.0.1:80': 1 } };
/** per schema: objects it accepts and objects it rejects, for one reason or several */
const CASES: Record<string, Record<string, unknown[]>> = {
  kinds: {
    routes: [
      { uri: '/a', upstream: up },
      { uris: ['/a', '/b/*'], hosts: ['a.example.com', '*.b.example.com'], methods: ['GET', 'POST'], priority: 3, upstream_id: 'u1', vars: [['arg_x', '==', '1']] },
      { uri: '/p/:id', remote_addrs: ['10.0.0.0/8'], plugins: { 'limit-count': { count: 1, time_window: 1 } }, service_id: 's', labels: { team: 'a' } },
      { uri: 'no-slash' },
      { uri: '/a', methods: ['FETCH'], bogus: true },
      { uri: '/a', hosts: 'not-a-list', priority: 'high' },
      { uri: '/a', labels: { team: 'has space' }, upstream: { nodes: { '::1': 1 } } },
      { uri: '/a', upstream: { nodes: up.nodes, upstream_host: 'bad\nhost', pass_host: 'rewrite' } },
      'not an object',
    ],
    upstreams: [
      up,
      { type: 'chash', hash_on: 'header', key: 'x-user', nodes: [{ host: '10.0.0.1', port: 80, weight: 2 }], retries: 2, timeout: { connect: 1, send: 2, read: 3 } },
      { nodes: {}, checks: { active: { http_path: '/health', healthy: { interval: 1, successes: 1 } } } },
      { nodes: up.nodes, type: 'fastest' },
      { nodes: up.nodes, upstream_host: ' padded', pass_host: 'rewrite' },
      { nodes: [{ host: '', port: 70000 }], timeout: { connect: -1 } },
    ],
    services: [{ upstream_id: 'u' }, { name: 'x', hosts: ['a.com'], plugins: {} }, { hosts: [1] }],
    consumers: [{ username: 'jack', plugins: { 'key-auth': { key: 'k' } } }, { username: 'has space' }, {}],
    plugin_configs: [{ plugins: {} }, { plugins: 'x' }],
    global_rules: [{ plugins: { 'ip-restriction': { whitelist: ['10.0.0.0/8'] } } }, { plugins: [] }],
    ssls: [{ cert: 'x', key: 'y', snis: ['a.com'] }, { snis: [] }],
    stream_routes: [{ server_port: 9100, upstream: up }, { server_port: 'x' }],
  },
  gateway: {
    gateway: [{}, { proxy: { listen: ['127.0.0.1:9080'], workers: 2 } }, { config: { source: 'etcd' } }, { rotues: [] }, { proxy: { workers: 'many' } }],
    etcd: [{}, { endpoints: ['http://127.0.0.1:2379'], prefix: '/p' }, { endpoints: 'x' }],
  },
};

const asData = (v: unknown) => JSON.parse(JSON.stringify(v ?? null)) as unknown;

const GROUPS: ValidatorGroup[] = [KIND_VALIDATORS, GATEWAY_VALIDATORS];

describe('validators written by the build', () => {
  // inside the checkout: the file's code requires ajv's runtime helpers from its node_modules
  const dir = path.join(ROOT, '.tmp', `test-validators-${process.pid}`);
  const file = path.join(dir, 'validators.cjs');
  before(() => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, validatorsModule(GROUPS));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const group of GROUPS) {
    test(`${group.name}: the same verdicts, errors and defaults as compiled at run time`, () => {
      const built = new Validators(group, file);
      const compiled = new Validators(group, path.join(dir, 'absent.cjs'));
      assert.equal(built.fromBuild, true);
      assert.equal(compiled.fromBuild, false);
      let rejected = 0;
      for (const [name, objects] of Object.entries(CASES[group.name]!)) {
        assert.ok(name in group.schemas, name);
        for (const object of objects) {
          const a = structuredClone(object);
          const b = structuredClone(object);
          const va = built.get(name);
          const vb = compiled.get(name);
          assert.notEqual(va, vb);
          const ok = va(a);
          assert.equal(ok, vb(b), `${name} ${JSON.stringify(object)}`);
          // as data: a compiled validator's errors point at the TypeBox schema objects themselves
          // (`schema`, `parentSchema`: their symbol-keyed markers too), the file's at copies
          assert.deepEqual(asData(va.errors), asData(vb.errors), `${name} ${JSON.stringify(object)}`);
          assert.deepEqual(a, b, 'the same defaults filled in');
          if (!ok) rejected++;
        }
      }
      assert.ok(rejected >= 3, `${rejected} rejected: the cases exercise the errors`);
    });
  }

  test('the header-value format runs the running code’s check', () => {
    const upstreams = new Validators(KIND_VALIDATORS, file).get('upstreams');
    assert.equal(upstreams({ nodes: up.nodes, upstream_host: 'ok.example.com' }), true);
    assert.equal(upstreams({ nodes: up.nodes, upstream_host: 'bad\r\nx: y' }), false);
    assert.deepEqual(upstreams.errors!.map((e) => [e.keyword, e.instancePath]), [['format', '/upstream_host']]);
  });

  test('a file that does not load (truncated): the validators are compiled', () => {
    const broken = path.join(dir, 'broken.cjs');
    writeFileSync(broken, validatorsModule([KIND_VALIDATORS]).slice(0, 5000));
    const validators = new Validators(KIND_VALIDATORS, broken);
    assert.equal(validators.fromBuild, false);
    assert.equal(validators.get('routes')({ uri: '/a', upstream_id: 'u' }), true);
    assert.equal(validators.get('routes')({ uri: 'a' }), false);
  });

  test('a file written for other schemas or options is not used: its validators are compiled', () => {
    const changed: ValidatorGroup = { ...KIND_VALIDATORS, schemas: { ...KIND_VALIDATORS.schemas, routes: { type: 'object', required: ['uri'] } } };
    assert.notEqual(groupHash(changed), groupHash(KIND_VALIDATORS));
    const stale = new Validators(changed, file);
    assert.equal(stale.fromBuild, false);
    assert.equal(stale.get('routes')({ uri: 'anything', bogus: 1 }), true, 'the changed schema, not the file’s');
    const otherOptions = new Validators({ ...GATEWAY_VALIDATORS, options: { ...GATEWAY_VALIDATORS.options, useDefaults: false } }, file);
    assert.equal(otherOptions.fromBuild, false);
    const value = {};
    assert.equal(otherOptions.get('gateway')(value), false, 'no defaults filled in: the options of the running code');
    assert.deepEqual(value, {});
    assert.equal(otherOptions.get('gateway').errors![0]!.keyword, 'required');
  });
});
