import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { after, describe, it } from 'node:test';
import { createBalancer } from '../../src/upstream/balancer/index.ts';
import { HealthAwareBalancer, HealthBook, UpstreamHealth, type HealthVerdict } from '../../src/upstream/health/book.ts';
import { compileChecks, NodeCounters, type Thresholds } from '../../src/upstream/health/checks.ts';
import { probe } from '../../src/upstream/health/probe.ts';
import type { UpstreamNode } from '../../src/upstream/types.ts';
import { makeTestCerts } from '../helpers/etcd.ts';
import { validateObject } from '../../src/config/validate.ts';

const node = (port: number, priority = 0): UpstreamNode => ({ host: '127.0.0.1', port, weight: 1, key: `127.0.0.1:${port}`, priority });

describe('NodeCounters (consecutive outcomes, as lua-resty-healthcheck)', () => {
  const t: Thresholds = { successes: 2, httpFailures: 3, tcpFailures: 2, timeouts: 0 };

  it('flips unhealthy at a failure threshold; a success in between starts the count over', () => {
    const c = new NodeCounters();
    assert.equal(c.report('http_failure', t), undefined);
    assert.equal(c.report('http_failure', t), undefined);
    assert.equal(c.report('success', t), undefined);
    assert.equal(c.report('http_failure', t), undefined);
    assert.equal(c.report('http_failure', t), undefined);
    assert.equal(c.report('http_failure', t), false);
    assert.equal(c.healthy, false);
  });

  it('counts each kind of failure on its own; a threshold of 0 turns that kind off', () => {
    const c = new NodeCounters();
    assert.equal(c.report('http_failure', t), undefined);
    assert.equal(c.report('tcp_failure', t), undefined);
    for (let i = 0; i < 10; i++) assert.equal(c.report('timeout', t), undefined, 'timeouts: 0 never flips');
    assert.equal(c.report('tcp_failure', t), false);
  });

  it('flips healthy after `successes` consecutive successes; a failure in between starts over', () => {
    const c = new NodeCounters(false);
    assert.equal(c.report('success', t), undefined);
    assert.equal(c.report('tcp_failure', t), undefined);
    assert.equal(c.report('success', t), undefined);
    assert.equal(c.report('success', t), true);
    assert.equal(c.healthy, true);
  });
});

describe('compileChecks', () => {
  it("fills APISIX's defaults", () => {
    const c = compileChecks({ active: {}, passive: {} })!;
    assert.deepEqual(
      [c.active!.type, c.active!.timeout, c.active!.concurrency, c.active!.path, c.active!.healthyInterval, c.active!.successes, c.active!.httpFailures, c.active!.tcpFailures, c.active!.timeouts],
      ['http', 1000, 10, '/', 1000, 2, 5, 2, 3],
    );
    assert.deepEqual([...c.active!.healthyStatuses], [200, 302]);
    assert.deepEqual([...c.passive!.unhealthyStatuses], [429, 500, 503]);
    assert.deepEqual([c.passive!.successes, c.passive!.httpFailures, c.passive!.tcpFailures, c.passive!.timeouts, c.passive!.readmitAfter], [5, 5, 2, 7, 10_000]);
  });

  it('the same block written in another key order is the same checks (state survives)', () => {
    const one = compileChecks({ active: { http_path: '/h', timeout: 2 }, passive: {} })!;
    const two = compileChecks({ passive: {}, active: { timeout: 2, http_path: '/h' } })!;
    assert.equal(one.id, two.id);
    assert.notEqual(one.id, compileChecks({ active: { http_path: '/h', timeout: 3 } })!.id);
  });
});

describe('health filter and priority levels', () => {
  it('a level whose nodes are all down hands requests to the next level', () => {
    const high = node(1, 1);
    const low = node(2, 0);
    const health = new UpstreamHealth('upstreams/p', compileChecks({ passive: {} })!, () => undefined);
    const balancer = new HealthAwareBalancer(createBalancer('roundrobin', [high, low]), health);
    assert.equal(balancer.pick(), high);
    health.set(high.key, false);
    for (let i = 0; i < 5; i++) assert.equal(balancer.pick(), low);
  });

  it('passive outcomes: a verdict is reported once, when the threshold is reached', () => {
    const verdicts: HealthVerdict[] = [];
    const book = new HealthBook((v) => verdicts.push(v));
    const checks = compileChecks({ passive: { unhealthy: { http_failures: 2 } } })!;
    const n = node(3);
    const health = book.for('upstreams/q', checks, [n]);
    health.observeStatus(n, 500);
    health.observeStatus(n, 404); // in neither list: not counted, nothing reset
    assert.equal(verdicts.length, 0);
    health.observeStatus(n, 503);
    assert.deepEqual(verdicts.map((v) => [v.node, v.healthy, v.by]), [[n.key, false, 'passive']]);
    assert.ok(health.down.has(n.key));
    // the same checks again (a config change that kept them): the same state
    assert.equal(book.for('upstreams/q', checks, [n]), health);
    // other checks: a fresh start
    assert.equal(book.for('upstreams/q', compileChecks({ passive: {} })!, [n]).down.size, 0);
  });

  it('a verdict that arrives before the upstream is compiled applies once it is, if its checks match', () => {
    const book = new HealthBook();
    const checks = compileChecks({ active: {} })!;
    const n = node(4);
    book.apply({ upstream: 'upstreams/late', checks: checks.id, node: n.key, healthy: false, by: 'active' });
    book.apply({ upstream: 'upstreams/stale', checks: 'other', node: n.key, healthy: false, by: 'active' });
    assert.ok(book.for('upstreams/late', checks, [n]).down.has(n.key));
    assert.equal(book.for('upstreams/stale', checks, [n]).down.size, 0);
  });
});

describe('probe', () => {
  const servers: Array<{ close(): unknown }> = [];
  after(() => servers.forEach((s) => s.close()));
  const listen = async <S extends Server | ReturnType<typeof createServer>>(server: S): Promise<number> => {
    servers.push(server);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return (server.address() as AddressInfo).port;
  };
  const active = (over: Record<string, unknown> = {}) => compileChecks({ active: { timeout: 0.5, ...over } })!.active!;

  it('http: the status decides; the path, method, Host and req_headers are sent', async () => {
    const seen: Array<{ method?: string; url?: string; host?: string; x?: string | string[] }> = [];
    let status = 200;
    const port = await listen(createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, host: req.headers.host, x: req.headers['x-probe'] });
      res.writeHead(status).end();
    }));
    const check = active({ http_path: '/healthz?deep=1', http_method: 'HEAD', req_headers: ['X-Probe: yes'] });
    assert.deepEqual(await probe(node(port), check, 'api.example'), { outcome: 'success', detail: '200' });
    status = 503;
    assert.deepEqual(await probe(node(port), check, 'api.example'), { outcome: 'http_failure', detail: '503' });
    status = 418;
    assert.deepEqual(await probe(node(port), check, 'api.example'), { outcome: undefined, detail: '418' });
    assert.deepEqual(seen[0], { method: 'HEAD', url: '/healthz?deep=1', host: 'api.example', x: 'yes' });
  });

  it('tcp: a connection is a success; refused is a TCP failure; silence is a timeout', async () => {
    const port = await listen(createTcpServer((s) => s.end()));
    assert.equal((await probe(node(port), active({ type: 'tcp' }), 'x')).outcome, 'success');
    // port 1: nothing listens there (see test/proxy/helpers.ts)
    const refused = await probe(node(1), active({ type: 'tcp' }), 'x');
    assert.deepEqual(refused, { outcome: 'tcp_failure', detail: 'ECONNREFUSED' });
    const silent = await listen(createServer(() => undefined));
    const started = performance.now();
    assert.equal((await probe(node(silent), active(), 'x')).outcome, 'timeout');
    assert.ok(performance.now() - started < 1500);
  });

  it('https: verifies the certificate unless https_verify_certificate is false', async () => {
    const certs = makeTestCerts();
    const port = await listen(createHttpsServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (_req, res) => res.end('ok')));
    const untrusted = await probe(node(port), active({ type: 'https' }), '127.0.0.1');
    assert.equal(untrusted.outcome, 'tcp_failure');
    assert.match(untrusted.detail, /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
    assert.equal((await probe(node(port), active({ type: 'https', https_verify_certificate: false }), '127.0.0.1')).outcome, 'success');
  });
});

describe('checks validation', () => {
  const upstream = (checks: unknown) => ({ nodes: { '127.0.0.1:1': 1 }, checks });
  const reason = (checks: unknown) => {
    const v = validateObject('upstreams', 'u', upstream(checks));
    return v.ok ? 'valid' : `${v.rejection.code} ${v.rejection.reason}`;
  };

  it('accepts APISIX checks blocks, and passive-only ones', () => {
    assert.equal(reason({ active: { type: 'tcp', healthy: { interval: 2, successes: 1 } } }), 'valid');
    assert.equal(reason({ active: { http_path: '/status', req_headers: ['User-Agent: probe'] }, passive: { unhealthy: { http_statuses: [500], tcp_failures: 0 } } }), 'valid');
    assert.equal(reason({ passive: { readmit_after: 5 } }), 'valid');
  });

  it('rejects each broken field with its path and rule', () => {
    assert.equal(reason({}), 'PORTICO_ERR_SCHEMA upstreams/u: /checks: must NOT have fewer than 1 properties');
    assert.match(reason({ active: { type: 'udp' } }), /^PORTICO_ERR_SCHEMA upstreams\/u: \/checks\/active\/type: must be one of "http", "https", "tcp"$/);
    assert.match(reason({ active: { healthy: { interval: 0 } } }), /\/checks\/active\/healthy\/interval: must be >= 1/);
    assert.match(reason({ active: { unhealthy: { http_statuses: [99] } } }), /\/checks\/active\/unhealthy\/http_statuses\/0: must be >= 200/);
    assert.match(reason({ active: { req_headers: ['no colon'] } }), /\/checks\/active\/req_headers\/0: must match pattern/);
    assert.match(reason({ active: { req_headers: ['X-A: a\r\nX-B: b'] } }), /\/checks\/active\/req_headers\/0: must match pattern/);
    assert.match(reason({ active: { http_path: 'no-slash' } }), /\/checks\/active\/http_path: must match pattern/);
    assert.match(reason({ passive: { unhealthy: { timeouts: 255 } } }), /\/checks\/passive\/unhealthy\/timeouts: must be <= 254/);
    assert.equal(reason({ active: { intervall: 1 } }), "PORTICO_ERR_SCHEMA upstreams/u: /checks/active: unknown field 'intervall'");
  });
});
