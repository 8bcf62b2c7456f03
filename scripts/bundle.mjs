#!/usr/bin/env node
// Bundles the compiled gateway (dist/, from tsc) into what a build runs, written into dist/ itself
// (src/layout.ts: paths relative to the root of the tree hold for the bundles too):
//
// - dist/portico.js, the CLI, split into chunks (dist/portico-HASH.js) along its dynamic imports:
//   what one command does not need (the admin commands for `start`, the proxy for a primary with
//   workers) stays unloaded. bin/portico.js runs it unless it is older than tsc's dist/cli/main.js.
// - dist/worker-main.js, one file: what a worker process runs (`proxy.workers` > 1), forked by
//   server/worker-fork.js unless it is older than tsc's dist/server/worker-main.js.
// - dist/validators.cjs: ajv's code for the schema validators, used instead of compiling them at
//   start when it was written for the running code's schemas (src/config/precompiled.ts).
//
// Why: node's ESM loader resolves, reads and links each module on its own. A worker's data plane is
// ~650 modules with its packages (TypeBox alone is 200): ~180 ms to load, ~60 ms bundled. At 50,000
// routes in etcd (10 alternating starts each, docs/operations.md "Large configs and fleets"): the
// worker bundle took the two-worker start from 2.60 to 2.38 s; the CLI bundle took the one-process
// start from 1.95 to 1.77 s and its RSS at ready from 180 to 161 MB, and the two-worker start from
// 2.39 to 2.23 s (8 alternating starts each).
//
// Left out of the bundles, loaded from node_modules when first used: the OpenTelemetry SDK (only
// with tracing.otlp), ioredis (limit-count's redis policy) and ajv (the first plugin config
// compiled): src/lazy-package.ts. undici is left out of the worker bundle only (a worker needs it
// for the node transport alone); the CLI bundle holds it, since the etcd client loads it at every
// start: from node_modules that was ~110 CommonJS modules resolved, read and wrapped one by one
// before the listing could begin (a one-process start at 50,000 routes 1.28 -> 1.15 s and 1.37 ->
// 1.27 s, its CPU 0.15-0.18 s less, 12 alternating starts twice; the node transport's pools use the
// same copy).
//
// Usage: node scripts/bundle.mjs [distDir]   (default: dist/ of this checkout; npm run build runs it)
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.resolve(process.argv[2] ?? path.join(root, 'dist'));

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (err) {
  console.error(`bundle: esbuild is not installed (run npm install): ${err.message}`);
  process.exit(1);
}

for (const entry of ['cli/main.js', 'server/worker-main.js']) {
  if (!existsSync(path.join(dist, entry))) {
    console.error(`bundle: ${path.join(dist, entry)} does not exist (run tsc -p tsconfig.build.json first)`);
    process.exit(1);
  }
}

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // loaded on first use (src/lazy-package.ts, tracing's import()): resolved from node_modules then
  external: ['@opentelemetry/*', 'ioredis', 'ajv'],
  // bundled CommonJS packages (pino, ...) call require(): give the ES module one
  banner: { js: "import { createRequire as __porticoRequire } from 'node:module'; const require = __porticoRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
};

const started = performance.now();
// the previous build's chunks (their names change with their content)
for (const name of readdirSync(dist)) if (/^portico(-[A-Z0-9]+)?\.js$/.test(name)) rmSync(path.join(dist, name));
await Promise.all([
  esbuild.build({
    ...common,
    entryPoints: [{ in: path.join(dist, 'cli/main.js'), out: 'portico' }],
    outdir: dist,
    splitting: true,
    chunkNames: 'portico-[hash]',
  }),
  esbuild.build({
    ...common,
    external: [...common.external, 'undici'],
    entryPoints: [path.join(dist, 'server/worker-main.js')],
    outfile: path.join(dist, 'worker-main.js'),
  }),
]);
// the schema validators, compiled now rather than at every start (src/config/precompiled.ts)
const { validatorsModule, VALIDATORS_FILE } = await import(pathToFileURL(path.join(dist, 'config/precompiled.js')).href);
const { KIND_VALIDATORS } = await import(pathToFileURL(path.join(dist, 'config/validate.js')).href);
const { GATEWAY_VALIDATORS } = await import(pathToFileURL(path.join(dist, 'config/gateway.js')).href);
writeFileSync(path.join(dist, VALIDATORS_FILE), validatorsModule([KIND_VALIDATORS, GATEWAY_VALIDATORS]));
const chunks = readdirSync(dist).filter((n) => /^portico-[A-Z0-9]+\.js$/.test(n)).length;
console.log(`bundle: ${path.relative(root, path.join(dist, 'portico.js'))} (+${chunks} chunks), worker-main.js and validators.cjs in ${Math.round(performance.now() - started)} ms`);
