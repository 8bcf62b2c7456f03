#!/usr/bin/env node
// Bundles a worker process's code (`proxy.workers` > 1) from the compiled gateway (dist/, from tsc)
// into one file, dist/worker-main.js, which server/cluster.js forks when it exists. At the depth of
// dist/version.js, whose `../package.json` must still be the package's.
//
// Why: node's ESM loader resolves, reads and links each module on its own. A worker's data plane is
// ~650 modules with its packages (TypeBox alone is 200): ~180 ms to load, ~60 ms bundled. Workers
// load while the primary lists the config, on the same cores, so this is time taken from the
// listing: the two-worker start at 50,000 routes 2.60 -> 2.38 s (docs/operations.md). The primary is
// not bundled: the same bundling made it start ~0.15 s sooner but hold 7-14 MiB more at 50,000
// routes (the same live heap after a full GC; more of it committed), against the 200 MB goal.
//
// Left out of the bundle, loaded from node_modules when first used: the OpenTelemetry SDK (only
// with tracing.otlp), undici (the node transport), ioredis (limit-count's redis policy) and ajv
// (the first plugin config compiled): src/lazy-package.ts.
//
// Usage: node scripts/bundle.mjs [distDir]   (default: dist/ of this checkout; npm run build runs it)
import { existsSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
const from = path.join(dist, 'server/worker-main.js');
const out = path.join(dist, 'worker-main.js');

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (err) {
  console.error(`bundle: esbuild is not installed (run npm install): ${err.message}`);
  process.exit(1);
}

if (!existsSync(from)) {
  console.error(`bundle: ${from} does not exist (run tsc -p tsconfig.build.json first)`);
  process.exit(1);
}
const started = performance.now();
await esbuild.build({
  entryPoints: [from],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // loaded on first use (src/lazy-package.ts, tracing's import()): resolved from node_modules then
  external: ['@opentelemetry/*', 'undici', 'ioredis', 'ajv'],
  // bundled CommonJS packages (pino, ...) call require(): give the ES module one
  banner: { js: "import { createRequire as __porticoRequire } from 'node:module'; const require = __porticoRequire(import.meta.url);" },
  legalComments: 'none',
  logLevel: 'warning',
});
console.log(`bundle: ${path.relative(root, out)} in ${Math.round(performance.now() - started)} ms`);
