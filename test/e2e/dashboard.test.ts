/**
 * The built-in dashboard in a real Chromium against a real gateway: the page shows what the status
 * listener reports and follows it live — a route's request rate once traffic flows, a route added to
 * the routes file, an object the gateway rejected and why. Needs Chromium (PORTICO_CHROMIUM, default
 * /usr/bin/chromium) and the built bundle (node scripts/build-dashboard.mjs): without either the
 * test fails, saying which.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { freePort, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';
import { quantileBound, trafficRates } from '../../src/observability/dashboard/app/traffic.ts';
import { createDashboard } from '../../src/observability/dashboard/serve.ts';
import type { TrafficSnapshot } from '../../src/observability/exchange.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CHROMIUM = process.env.PORTICO_CHROMIUM ?? '/usr/bin/chromium';

async function launchBrowser(): Promise<Browser> {
  // fail, not skip: CI installs chromium, and a dashboard nobody opened is not tested
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: install it (apt-get install chromium) or set PORTICO_CHROMIUM`);
  assert.ok(
    existsSync(path.join(ROOT, 'dist/dashboard/app.js')),
    'dashboard not built: run node scripts/build-dashboard.mjs (npm run build:dashboard) first',
  );
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    // this machine's network is closed: no QUIC probes, no component updates or sync at start
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Console errors and uncaught exceptions of a page: the test ends asserting there were none. */
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
  return errors;
}

async function textOf(page: Page, testid: string): Promise<string> {
  return ((await page.getByTestId(testid).first().textContent({ timeout: 5000 })) ?? '').trim();
}

describe('createDashboard (the static files)', () => {
  /** a listener that serves only what the dashboard handler takes, 418 for the rest */
  async function serve(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
    const handle = createDashboard({ dir, admin: () => false });
    const server = createServer((req, res) => {
      if (!handle(req, res, (req.url ?? '/').split('?')[0]!)) res.writeHead(418).end();
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () => new Promise<void>((r) => server.close(() => r())),
    };
  }

  test('the page and its assets with their types and security headers; unknown /dashboard/* is 404, other paths are not taken', async () => {
    const s = await serve(path.join(ROOT, 'dist/dashboard'));
    try {
      for (const [p, type] of [['/dashboard', /text\/html/], ['/dashboard/', /text\/html/], ['/dashboard/app.js', /text\/javascript/], ['/dashboard/app.css', /text\/css/]] as const) {
        const res = await fetch(`${s.url}${p}`);
        assert.equal(res.status, 200, p);
        assert.match(res.headers.get('content-type') ?? '', type, p);
        assert.equal(res.headers.get('cache-control'), 'no-cache');
        assert.equal(res.headers.get('content-security-policy'), "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'");
        assert.equal(res.headers.get('x-frame-options'), 'DENY');
        assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
        assert.ok((await res.arrayBuffer()).byteLength > 0);
      }
      assert.deepEqual(await (await fetch(`${s.url}/dashboard/features.json`)).json(), { admin: false });
      // sent as is (fetch would normalize it): only the named files are served, no path is joined
      const traversal = await new Promise<number>((resolve, reject) =>
        request(`${s.url}/`, { path: '/dashboard/../package.json' }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        })
          .on('error', reject)
          .end(),
      );
      assert.equal(traversal, 404);
      const nope = await fetch(`${s.url}/dashboard/secret.txt`);
      assert.equal(nope.status, 404);
      await nope.arrayBuffer();
      const post = await fetch(`${s.url}/dashboard`, { method: 'POST' });
      assert.equal(post.status, 405);
      await post.arrayBuffer();
      assert.equal((await fetch(`${s.url}/dashboardx`)).status, 418);
    } finally {
      await s.close();
    }
  });

  test('not built: 503 saying how to build it', async () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'portico-dash-'));
    const s = await serve(empty);
    try {
      const res = await fetch(`${s.url}/dashboard`);
      assert.equal(res.status, 503);
      assert.match(await res.text(), /dashboard not built: run npm run build:dashboard/);
    } finally {
      await s.close();
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('traffic rates (the arithmetic behind the live columns)', () => {
  test('p99 is the upper bound of the bucket holding the 99th percentile; none without requests', () => {
    const buckets = [0.005, 0.01, 0.1, 1];
    assert.equal(quantileBound(buckets, [0, 0, 0, 0, 0], 0.99), null);
    assert.equal(quantileBound(buckets, [99, 0, 1, 0, 0], 0.99), 0.005);
    assert.equal(quantileBound(buckets, [98, 0, 2, 0, 0], 0.99), 0.1);
    assert.equal(quantileBound(buckets, [0, 0, 0, 0, 3], 0.99), Infinity);
  });

  test('rates, error shares and p99 come from the interval between two snapshots, not since start', () => {
    const hist = (counts: number[]) => ({ counts, sum: 0, count: counts.reduce((a, b) => a + b, 0) });
    const snap = (at: number, codes: Record<string, number>, counts: number[]): TrafficSnapshot => ({
      at,
      buckets: [0.01, 0.1],
      routes: [{ route: 'r1', service: '', codes, duration: hist(counts), upstreamDuration: hist(counts), bytesIn: 0, bytesOut: 0 }],
      upstreams: [{ upstream: 'upstreams/u', node: '127.0.0.1:1', codes }],
      connections: 0,
    });
    // 1,000 slow requests before; in the next 2 s: 180 fast 2xx, 20 5xx
    const a = snap(10_000, { '2xx': 1000 }, [0, 0, 1000]);
    const b = snap(12_000, { '2xx': 1180, '5xx': 20 }, [200, 0, 1000]);
    const r = trafficRates(a, b)!.routes.get('r1')!;
    assert.equal(r.requests, 200);
    assert.equal(r.rate, 100);
    assert.equal(r.errors5xx, 0.1);
    assert.equal(r.p99, 0.01);
    assert.equal(trafficRates(a, b)!.nodes.get('upstreams/u 127.0.0.1:1'), 100);
    // a counter that went down (a worker restarted) is no rate at all, never a negative one
    assert.equal(trafficRates(b, a), undefined);
    assert.equal(trafficRates(b, snap(13_000, { '2xx': 5 }, [5, 0, 0]))!.routes.has('r1'), false);
  });
});

describe('dashboard in Chromium (file source)', () => {
  let browser: Browser;
  let upstream: TestUpstream;
  /** answers every 4th request 500: the error columns and a node's last error */
  let flaky: TestUpstream;
  /** a node nothing listens on: active checks mark it unhealthy */
  let deadNode: string;
  let gw: GatewayProcess;
  let page: Page;
  let errors: string[] = [];
  const routes = (extra: Array<Record<string, unknown>> = []) => ({
    upstreams: [
      { id: 'u1', name: 'backend', nodes: { [upstream.address]: 1 } },
      { id: 'u2', name: 'orders', nodes: { [flaky.address]: 1 } },
      {
        id: 'u3',
        name: 'checked',
        nodes: { [upstream.address]: 1, [deadNode]: 1 },
        checks: { active: { http_path: '/health', timeout: 1, healthy: { interval: 1, successes: 1 }, unhealthy: { interval: 1, tcp_failures: 1, http_failures: 1 } } },
      },
    ],
    routes: [
      { id: 'r1', name: 'hello', uri: '/hello', methods: ['GET'], upstream_id: 'u1' },
      { id: 'orders', name: 'orders', uri: '/orders/*', hosts: ['api.example.com'], upstream_id: 'u2' },
      ...extra,
    ],
  });
  /** requests through the gateway for `ms`: some to each route, some that no route matches */
  const traffic = async (ms: number) => {
    const until = Date.now() + ms;
    let sent = 0;
    while (Date.now() < until) {
      // get() of the helpers, not fetch: fetch cannot send another Host
      await Promise.all([get(`${gw.url}/hello`), get(`${gw.url}/orders/${sent}`, { host: 'api.example.com' }), get(`${gw.url}/nope`)]);
      sent += 3;
      await new Promise((r) => setTimeout(r, 5));
    }
    return sent;
  };

  before(async () => {
    browser = await launchBrowser();
    upstream = await startUpstream('u1');
    deadNode = `127.0.0.1:${await freePort()}`;
    let n = 0;
    flaky = await startUpstream('u2', (req, res) => {
      req.resume();
      res.writeHead(++n % 4 === 0 ? 500 : 200, { 'content-type': 'text/plain' }).end('orders');
    });
    gw = await startGateway({ routes: routes() });
    page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    page.setDefaultTimeout(10_000);
    errors = watchErrors(page);
  });
  after(async () => {
    await browser?.close();
    await gw?.cleanup();
    await upstream?.close();
    await flaky?.close();
  });

  test('served with its security headers; the page shows the revision and the route', async () => {
    const res = await page.goto(`${gw.statusUrl}/dashboard`, { timeout: 10_000 });
    assert.equal(res?.status(), 200);
    const headers = res!.headers();
    assert.match(headers['content-security-policy'] ?? '', /default-src 'self'/);
    assert.equal(headers['x-frame-options'], 'DENY');
    assert.equal(headers['x-content-type-options'], 'nosniff');
    const status = await gw.status();
    await waitUntil(async () => (await textOf(page, 'revision')) === String(status.revision), 5000, `revision ${status.revision} shown`, 50);
    await page.getByTestId('route-row-r1').waitFor({ state: 'visible', timeout: 5000 });
    assert.match(await textOf(page, 'route-row-r1'), /hello.*\/hello.*GET/);
    assert.equal(await textOf(page, 'source'), 'file');
    await waitUntil(async () => /updated \d\d:\d\d:\d\d/.test(await textOf(page, 'updated')), 5000, '"updated hh:mm:ss"', 50);
  });

  test('requests through the gateway: the route\'s rate goes above 0, its node counts them', async () => {
    const rate = page.getByTestId('route-row-r1').getByTestId('rate');
    let sent = 0;
    await waitUntil(
      async () => {
        // keep traffic flowing until a 1 s interval of the page has seen some
        for (let i = 0; i < 10; i++) {
          const res = await fetch(`${gw.url}/hello`);
          assert.equal(res.status, 200);
          await res.text();
          sent++;
        }
        const shown = Number((await rate.textContent()) ?? '');
        return shown > 0;
      },
      8000,
      'a request rate > 0 on route r1',
      100,
    );
    assert.ok(sent > 0);
    assert.notEqual(await textOf(page, 'route-row-r1'), '');
    const p99 = (await page.getByTestId('route-row-r1').getByTestId('p99').textContent()) ?? '';
    assert.match(p99, /^(≤|>) [\d.]+ (µs|ms|s)$/, `p99 cell: ${p99}`);
    const node = page.getByTestId(`node-upstreams/u1-${upstream.address}`);
    await waitUntil(async () => /\d/.test((await node.textContent()) ?? ''), 5000, 'the node row with counts', 50);
  });

  test('a route added to the routes file appears within 2 s of the write', async (t) => {
    const t0 = performance.now();
    writeRoutes(gw.routesPath, routes([{ id: 'r2', name: 'added', uri: '/added', upstream_id: 'u1' }]));
    await page.getByTestId('route-row-r2').waitFor({ state: 'visible', timeout: 5000 });
    const elapsed = performance.now() - t0;
    t.diagnostic(`row shown ${elapsed.toFixed(0)} ms after the write`);
    assert.ok(elapsed < 2000, `row shown ${elapsed.toFixed(0)} ms after the write`);
    const status = await gw.status();
    await waitUntil(async () => (await textOf(page, 'revision')) === String(status.revision), 3000, 'the new revision', 50);
  });

  test('invalid objects: each rejected entry is listed with its code and reason', async () => {
    writeRoutes(
      gw.routesPath,
      routes([
        { id: 'r2', name: 'added', uri: '/added', upstream_id: 'u1' },
        { id: 'bad-uri', uri: 7, upstream_id: 'u1' },
        { id: 'dangling', uri: '/dangling', upstream_id: 'nope' },
      ]),
    );
    const badUri = page.getByTestId('rejected-routes-bad-uri');
    await badUri.waitFor({ state: 'visible', timeout: 5000 });
    assert.match((await badUri.getByTestId('reason').textContent()) ?? '', /\/uri/);
    const dangling = page.getByTestId('rejected-routes-dangling');
    await dangling.waitFor({ state: 'visible', timeout: 5000 });
    assert.match((await dangling.getByTestId('reason').textContent()) ?? '', /nope/);
    assert.match(await textOf(page, 'rejected-routes-dangling'), /PORTICO_ERR_/);
    // the good routes stay listed and served
    assert.equal(await page.getByTestId('route-row-r2').count(), 1);
    assert.equal(await page.getByTestId('route-row-dangling').count(), 0);
  });

  test('5xx answers: the route\'s error share, the node\'s 5xx count and last error', async () => {
    const row = page.getByTestId('route-row-orders');
    await Promise.all([
      traffic(2500),
      waitUntil(async () => /%/.test((await row.getByTestId('errors').textContent()) ?? ''), 5000, 'an error share on route orders', 50),
    ]);
    const node = page.getByTestId(`node-upstreams/u2-${flaky.address}`);
    await waitUntil(async () => /500 on routes\/orders/.test((await node.getByTestId('last-error').textContent()) ?? ''), 3000, 'the node\'s last error', 50);
  });

  test('active health checks: each checked node\'s state', async () => {
    const health = (node: string) => page.getByTestId(`node-upstreams/u3-${node}`).getByTestId('health').textContent();
    await waitUntil(async () => /^unhealthy active/.test((await health(deadNode)) ?? ''), 8000, 'the dead node shown unhealthy', 100);
    assert.match((await health(upstream.address)) ?? '', /^healthy /);
  });

  test('no console errors; a screenshot for the README', async () => {
    await traffic(1500); // live numbers in the picture
    mkdirSync(path.join(ROOT, '.tmp'), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, '.tmp/dashboard.png'), fullPage: true, timeout: 10_000 });
    assert.deepEqual(errors, []);
  });

  test('the status listener stops answering: the page says so instead of showing old numbers as live', async () => {
    await gw.stop('SIGKILL');
    await page.getByTestId('offline').waitFor({ state: 'visible', timeout: 8000 });
    assert.match(await textOf(page, 'offline'), /not answering since \d\d:\d\d:\d\d/);
  });
});

describe('dashboard in Chromium (etcd source, Admin API): fleet, history, diff, rollback', () => {
  const ADMIN_KEY = 'dashboard-e2e-admin-key';
  const VIEWER_KEY = 'dashboard-e2e-viewer-key';
  let browser: Browser;
  let etcd: EtcdProcess;
  let upstream: TestUpstream;
  let gw: GatewayProcess;
  let adminPort: number;
  let page: Page;
  let errors: string[] = [];
  let r1: number;
  let r2: number;

  async function put(p: string, body: unknown): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${adminPort}/apisix/admin/${p}?wait=served`, {
      method: 'PUT',
      headers: { 'X-API-KEY': ADMIN_KEY, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { modifiedIndex?: number; error_msg?: string };
    assert.ok(res.status === 200 || res.status === 201, `PUT ${p}: ${res.status} ${json.error_msg ?? ''}`);
    return Number(json.modifiedIndex);
  }

  async function useKey(key: string): Promise<void> {
    if ((await page.getByTestId('admin-forget').count()) > 0) await page.getByTestId('admin-forget').click();
    await page.getByTestId('admin-key').fill(key);
    await page.getByTestId('admin-key-use').click();
  }

  before(async () => {
    browser = await launchBrowser();
    etcd = await startEtcd();
    upstream = await startUpstream('u1');
    adminPort = await freePort();
    gw = await startGateway({
      etcd: { endpoints: [etcd.clientUrl] },
      instanceId: 'dash-a',
      extra: {
        admin: {
          listen: `127.0.0.1:${adminPort}`,
          keys: [
            { key: ADMIN_KEY, role: 'admin', name: 'ops' },
            { key: VIEWER_KEY, role: 'viewer', name: 'looker' },
          ],
        },
      },
    });
    await put('upstreams/u1', { type: 'roundrobin', nodes: { [upstream.address]: 1 } });
    r1 = await put('routes/hist', { uri: '/v1', upstream_id: 'u1' });
    r2 = await put('routes/hist', { uri: '/v2', upstream_id: 'u1' });
    page = await browser.newPage({ viewport: { width: 1440, height: 1100 } });
    page.setDefaultTimeout(10_000);
    errors = watchErrors(page);
    await page.goto(`${gw.statusUrl}/dashboard`, { timeout: 10_000 });
  });
  after(async () => {
    await browser?.close();
    await gw?.cleanup();
    await etcd?.stop();
    await upstream?.close();
  });

  test('the fleet panel lists this instance, converged', async () => {
    const row = page.getByTestId('fleet-dash-a');
    await row.waitFor({ state: 'visible', timeout: 10_000 });
    await waitUntil(async () => /converged/.test((await row.textContent()) ?? ''), 10_000, 'dash-a converged', 100);
  });

  test('a viewer key: the history with who made each change and its diff; rollback disabled', async () => {
    await useKey(VIEWER_KEY);
    await waitUntil(async () => /looker \(viewer, read-only\)/.test(await textOf(page, 'whoami')), 5000, 'whoami', 50);
    const entry = page.getByTestId(`history-entry-${r2}`).first();
    await entry.waitFor({ state: 'visible', timeout: 10_000 });
    assert.match((await entry.textContent()) ?? '', /routes\/hist.*put.*ops \(admin\)/);
    assert.equal(await page.getByTestId(`rollback-${r1}`).first().isDisabled(), true);
    await page.getByTestId(`diff-toggle-${r2}`).first().click();
    const diff = page.getByTestId(`diff-${r2}`);
    await waitUntil(async () => /replace \/uri "\/v2" \(was "\/v1"\)/.test((await diff.textContent()) ?? ''), 5000, 'the diff of the change', 50);
  });

  test('an admin key: rollback asks first, then the gateway serves the old route again', async () => {
    await useKey(ADMIN_KEY);
    await waitUntil(async () => /ops \(admin\)/.test(await textOf(page, 'whoami')), 5000, 'whoami admin', 50);
    const button = page.getByTestId(`rollback-${r1}`).first();
    await waitUntil(() => button.isEnabled(), 5000, 'rollback enabled', 50);
    await button.click();
    // nothing written before the confirmation
    await page.getByTestId('rollback-cancel').click();
    assert.equal((await get(`${gw.url}/v2`)).status, 200);
    await button.click();
    await page.getByTestId('rollback-confirm').click();
    await waitUntil(async () => /rolled back to revision/.test(await textOf(page, 'rollback-result')), 10_000, 'the rollback result', 50);
    await waitUntil(async () => (await get(`${gw.url}/v1`)).status === 200 && (await get(`${gw.url}/v2`)).status === 404, 5000, '/v1 served again', 20);
    // the rollback is the newest entry of the history, by ops
    const status = await gw.status();
    await page.getByTestId(`history-entry-${status.revision}`).first().waitFor({ state: 'visible', timeout: 5000 });
    mkdirSync(path.join(ROOT, '.tmp'), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, '.tmp/dashboard-admin.png'), fullPage: true, timeout: 10_000 });
    assert.deepEqual(errors, []);
  });
});
