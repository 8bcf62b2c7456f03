import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { get } from '../helpers/http.ts';
import { startGateway } from '../helpers/gateway.ts';
import { startUpstream } from '../helpers/upstream.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');


describe('gateway process', () => {
  const cleanups: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal} drains in-flight requests and exits 0`, async () => {
      const slow = await startUpstream('slow', (req, res) => {
        req.resume();
        setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('finished'), 800);
      });
      cleanups.push(() => slow.close());
      const gw = await startGateway({ routes: { routes: [{ id: 's', uri: '/slow', upstream: { nodes: { [slow.address]: 1 } } }] } });
      cleanups.push(() => gw.cleanup());
      const inflight = get(`${gw.url}/slow`);
      await waitUntil(() => slow.requests.length === 1, 5000, 'request to reach the upstream');
      const code = gw.stop(signal);
      await sleep(100);
      // the listener is closed while the request drains
      await assert.rejects(get(`${gw.url}/slow`), /ECONNREFUSED/);
      const res = await inflight;
      assert.equal(res.status, 200);
      assert.equal(res.body, 'finished');
      assert.equal(await code, 0);
    });
  }

  test('status endpoints: /status/ready is 200 once synced; unknown paths 404', async () => {
    const up = await startUpstream('u');
    cleanups.push(() => up.close());
    const gw = await startGateway({ routes: { routes: [{ id: 1, uri: '/x', upstream: { nodes: { [up.address]: 1 } } }] }, instanceId: 'gw-test-1' });
    cleanups.push(() => gw.cleanup());
    const ready = await get(`${gw.statusUrl}/status/ready`);
    assert.equal(ready.status, 200);
    const st = await gw.status();
    assert.equal(st.instance_id, 'gw-test-1');
    assert.equal(st.ready, true);
    assert.equal(st.stale, false);
    assert.equal(st.connected, true);
    assert.equal(st.counts.routes, 1);
    assert.ok(st.revision >= 1);
    assert.ok(st.last_applied);
    assert.equal((await get(`${gw.statusUrl}/nope`)).status, 404);
  });

  /** Starts the gateway on the given files and returns its exit code and stderr. */
  async function startFailing(files: Record<string, string>): Promise<{ code: unknown; err: string }> {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const dir = mkdtempSync(path.join((await import('node:os')).tmpdir(), 'portico-bad-'));
    for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/portico.js'), 'start', '--config', path.join(dir, 'portico.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise((r) => child.once('exit', r));
    return { code, err };
  }

  test('a broken routes file at start with no snapshot: exits 1 with the reason', async () => {
    const { code, err } = await startFailing({
      'routes.yaml': 'routes: [\n',
      'portico.yaml': 'proxy: { listen: ["127.0.0.1:0"] }\nstatus: { listen: "127.0.0.1:0" }\n',
    });
    assert.equal(code, 1);
    assert.match(err, /routes\.yaml.*\[PORTICO_ERR_PARSE\]/s);
  });

  test('an invalid portico.yaml is refused with the field and the rule', async () => {
    const { code, err } = await startFailing({ 'portico.yaml': 'proxy: { listen: ["127.0.0.1:0"], router: radix }\n' });
    assert.equal(code, 1);
    assert.match(err, /\/proxy\/router: must be equal to one of the allowed values \[PORTICO_ERR_CONFIG_INVALID\]/);
  });

  test('npm start: the bundled conf/portico.yaml serves the example routes via the demo upstream', async () => {
    const child = spawn('npm', ['start', '--silent'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((r) => child.once('exit', r));
    // npm runs node under a shell: signal the whole group, by the PID we started
    cleanups.push(async () => {
      if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    });
    await waitUntil(() => /listening on http:\/\/0\.0\.0\.0:9080/.test(out), 20_000, `npm start to listen (${out})`);
    const res = await get('http://127.0.0.1:9080/hello');
    assert.equal(res.status, 200);
    assert.equal((JSON.parse(res.body) as { upstream: string }).upstream, 'portico-demo');
    assert.equal((await get('http://127.0.0.1:9080/echo/anything?x=1')).status, 200);
    // the bundled plugin example: key-auth, then limit-count
    assert.equal((await get('http://127.0.0.1:9080/private')).status, 401);
    assert.equal((await get('http://127.0.0.1:9090/status/ready')).status, 200);
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
  });
});
