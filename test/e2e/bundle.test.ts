import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildGateway, ROOT } from '../../bench/lib.ts';
import { GATEWAY_VALIDATORS } from '../../src/config/gateway.ts';
import { groupHash } from '../../src/config/precompiled.ts';
import { KIND_VALIDATORS } from '../../src/config/validate.ts';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { get } from '../helpers/http.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

/*
 * The production build (`npm run build`: tsc, then scripts/bundle.mjs) runs the CLI from a bundle
 * split into chunks and forks workers from a one-file bundle, where the rest of the suite runs the
 * TypeScript sources. This builds once into a folder inside the checkout (the bundles' external
 * packages resolve from its node_modules) and runs the built gateway as a user would: through
 * bin/portico.js, two workers from the bundle, a plugin, a live change of the routes file (read by
 * the file source's thread, whose module the bundled CLI finds through src/layout.ts).
 */

describe('the build: the CLI and the workers from the bundles', () => {
  const out = path.join(ROOT, '.tmp', `test-bundle-${process.pid}`);
  let up: TestUpstream;
  let gw: GatewayProcess;
  const route = (id: string, uri: string) => ({
    id,
    uri,
    plugins: { 'response-rewrite': { headers: { set: { 'x-built': id } } } },
    upstream: { nodes: { [up.address]: 1 } },
  });

  before(async () => {
    up = await startUpstream('u');
    const entry = buildGateway(out);
    assert.equal(path.relative(out, entry), path.join('dist', 'portico.js'));
    // bin/portico.js runs ../dist/: a copy of it in `out` runs this build
    mkdirSync(path.join(out, 'bin'));
    copyFileSync(path.join(ROOT, 'bin', 'portico.js'), path.join(out, 'bin', 'portico.js'));
    gw = await startGateway({ bin: path.join(out, 'bin', 'portico.js'), workers: 2, routes: { routes: [route('a', '/a')] } });
  });
  after(async () => {
    await gw?.cleanup();
    await up?.close();
    rmSync(out, { recursive: true, force: true });
  });

  test('serves through two workers that run the worker bundle', async () => {
    const st = await gw.status();
    assert.equal(st.workers!.length, 2);
    assert.ok(st.workers!.every((w) => w.listening));
    for (const w of st.workers!) {
      const argv = readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(argv.includes(path.join(out, 'dist', 'worker-main.js')), argv.join(' '));
    }
    for (let i = 0; i < 10; i++) {
      const res = await fetch(`${gw.url}/a`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('x-built'), 'a');
      assert.equal(((await res.json()) as { upstream: string }).upstream, 'u');
    }
  });

  test('a change to the routes file reaches the bundled workers', async () => {
    writeRoutes(gw.routesPath, { routes: [route('a', '/a'), route('b', '/b')] });
    await waitUntil(async () => (await get(`${gw.url}/b`)).status === 200, 5000, 'route b served');
    const st = await gw.status();
    assert.ok(st.workers!.every((w) => w.revision === st.revision));
  });

  test('the build wrote the schema validators for these very schemas; the built gateway rejects with them', async () => {
    const file = createRequire(import.meta.url)(path.join(out, 'dist', 'validators.cjs')) as { groups: Record<string, { hash: string }> };
    assert.equal(file.groups.kinds!.hash, groupHash(KIND_VALIDATORS));
    assert.equal(file.groups.gateway!.hash, groupHash(GATEWAY_VALIDATORS));
    writeRoutes(gw.routesPath, { routes: [route('a', '/a'), { ...route('bad', '/bad'), upstream: { nodes: { '::1': 1 } } }] });
    await waitUntil(async () => (await gw.status()).rejected.length === 1, 5000, 'the route with an unbracketed IPv6 node rejected');
    const [rejection] = (await gw.status()).rejected;
    assert.equal(rejection!.id, 'bad');
    assert.match(rejection!.reason, /upstream\/nodes/);
    assert.equal((await get(`${gw.url}/bad`)).status, 404);
    assert.equal((await get(`${gw.url}/a`)).status, 200);
  });

  test('undici: inside the CLI bundle, one copy (the node transport uses it), outside the worker bundle', async () => {
    const dist = path.join(out, 'dist');
    const chunks = readdirSync(dist).filter((n) => /^portico(-[A-Z0-9]+)?\.js$/.test(n));
    const imports = /(from|import|require)\s*\(?\s*["']undici["']/;
    for (const c of chunks) assert.doesNotMatch(readFileSync(path.join(dist, c), 'utf8'), imports, c);
    // (DispatcherBase: a class of undici's, named nowhere in Portico's code)
    assert.ok(chunks.some((c) => readFileSync(path.join(dist, c), 'utf8').includes('DispatcherBase')), 'undici is in a chunk');
    assert.ok(!readFileSync(path.join(dist, 'worker-main.js'), 'utf8').includes('DispatcherBase'), 'the worker bundle leaves undici out');
    // a one-process gateway on the node transport (its pools are undici's) loads nothing of
    // node_modules/undici: a probe lists the CommonJS modules the process required when it exits
    const probe = path.join(out, 'probe-undici.mjs');
    const loaded = path.join(out, 'undici-loaded.txt');
    writeFileSync(
      probe,
      `import { createRequire } from 'node:module'; import { writeFileSync } from 'node:fs';\n` +
        `const cache = createRequire(import.meta.url).cache;\n` +
        `process.on('exit', () => writeFileSync(${JSON.stringify(loaded)}, Object.keys(cache).filter((k) => k.includes('node_modules/undici/')).join('\\n')));\n`,
    );
    const one = await startGateway({
      bin: path.join(out, 'bin', 'portico.js'),
      routes: { routes: [route('a', '/a')] },
      env: { PORTICO_PROXY_TRANSPORT: 'node', NODE_OPTIONS: `--import=${probe}` },
    });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await fetch(`${one.url}/a`)).headers.get('x-built'), 'a');
      assert.equal(await one.stop(), 0);
      assert.equal(readFileSync(loaded, 'utf8'), '', 'modules of node_modules/undici loaded');
    } finally {
      await one.cleanup();
    }
  });

  test('bin/portico.js runs the CLI bundle, unless it is older than tsc\'s output', async () => {
    const bin = path.join(out, 'bin', 'portico.js');
    const bundle = path.join(out, 'dist', 'portico.js');
    const compiled = path.join(out, 'dist', 'cli', 'main.js');
    const version = () =>
      new Promise<{ code: number; text: string }>((resolve) =>
        execFile(process.execPath, [bin, '--version'], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, text: stdout + stderr })),
      );
    const expected = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    // each file in turn is made to fail when run, with the mtimes that should make bin/portico.js skip it
    for (const [broken, newer] of [[compiled, bundle], [bundle, compiled]]) {
      const kept = readFileSync(broken);
      try {
        writeFileSync(broken, "throw new Error('the wrong entry ran');\n");
        const later = new Date(Date.now() + 60_000);
        utimesSync(newer, later, later);
        const { code, text } = await version();
        assert.equal(code, 0, `${path.basename(broken)} ran: ${text}`);
        assert.equal(text.trim(), expected);
      } finally {
        writeFileSync(broken, kept);
      }
    }
  });

  test('a bundle older than tsc\'s output is not forked (a rebuild with tsc alone)', async () => {
    const entry = path.join(out, 'dist', 'server', 'worker-main.js');
    const later = new Date(Date.now() + 60_000);
    utimesSync(entry, later, later);
    const again = await startGateway({ bin: path.join(out, 'dist', 'cli', 'main.js'), workers: 2, routes: { routes: [route('a', '/a')] } });
    try {
      for (const w of (await again.status()).workers!) {
        const argv = readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0');
        assert.ok(argv.includes(entry), argv.join(' '));
      }
      assert.equal((await get(`${again.url}/a`)).status, 200);
    } finally {
      await again.cleanup();
    }
  });

  test('a start that fails after the workers were forked: one error, exit 1, no worker left to crash', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-early-'));
    try {
      writeFileSync(path.join(dir, 'routes.yaml'), 'routes: []\n');
      // the CLI forks the workers once portico.yaml is read (server/worker-fork.ts), then fails on the
      // plugin folder. (Without killWorkers() the workers still exit, but when the start fails before a
      // worker has said it is online, that worker crashed on the closed channel and printed the trace:
      // seen by hand, a race this test does not force.)
      // and once before the file is even validated (the workers are forked on what it asks for)
      const cases: [string, RegExp][] = [
        [`plugin_dirs: ["${dir}/missing"]\n`, /plugin_dirs: cannot read .*missing/],
        ['status: { listen: "127.0.0.1:0", dashbord: true }\n', /\/status: must NOT have additional properties 'dashbord'/],
      ];
      for (const [extra, reason] of cases) {
        writeFileSync(
          path.join(dir, 'portico.yaml'),
          `proxy: { listen: ["127.0.0.1:0"], workers: 2 }\n${extra.startsWith('status') ? '' : 'status: { listen: "127.0.0.1:0" }\n'}config: { source: file, file: { path: routes.yaml } }\n${extra}`,
        );
        // execFile calls back once stdout and stderr are closed, which the workers hold too
        const { code, out: text } = await new Promise<{ code: number; out: string }>((resolve) =>
          execFile(process.execPath, [path.join(out, 'dist', 'portico.js'), 'start', '--config', path.join(dir, 'portico.yaml')], { timeout: 30_000 }, (err, stdout, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
          ),
        );
        assert.equal(code, 1, text);
        assert.match(text, reason);
        assert.doesNotMatch(text, /EPIPE|ERR_IPC|Unhandled/, text);
        assert.equal(text.trim().split('\n').length, 1, text);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
