#!/usr/bin/env node
// Bundles the compiled gateway (dist/, from tsc) into one file per process entry:
//   dist/portico.js      the CLI (cli/main.js): the gateway's primary, the admin commands
//   dist/worker-main.js  a worker process of `proxy.workers` > 1 (server/worker-main.js)
//   dist/file-worker.js  the file source's reader thread (sources/file-worker.js)
// Each sits where the code that starts it looks for it (next to the bundle that holds that code),
// and at the depth of dist/version.js, whose `../package.json` must still be the package's.
//
// Why: node's ESM loader resolves, reads and links each module on its own. A worker's data plane is
// ~650 modules with its packages (TypeBox alone is 200), ~180 ms to load; bundled, ~60 ms. The
// primary likewise. That is CPU taken from the config listing while workers start next to it:
// measured in docs/operations.md ("Start time").
//
// Left out of the bundles, loaded from node_modules when first used: the OpenTelemetry SDK (only
// with tracing.otlp), undici (the node transport) and ioredis (limit-count's redis policy).
//
// Usage: node scripts/bundle.mjs [distDir]   (default: dist/ of this checkout; npm run build runs it)
import { existsSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const dist = path.resolve(process.argv[2] ?? path.join(root, 'dist'));
const ENTRIES = [
  ['cli/main.js', 'portico.js'],
  ['server/worker-main.js', 'worker-main.js'],
  ['sources/file-worker.js', 'file-worker.js'],
];

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (err) {
  console.error(`bundle: esbuild is not installed (run npm install): ${err.message}`);
  process.exit(1);
}

const started = performance.now();
for (const [entry, out] of ENTRIES) {
  const from = path.join(dist, entry);
  if (!existsSync(from)) {
    console.error(`bundle: ${from} does not exist (run tsc -p tsconfig.build.json first)`);
    process.exit(1);
  }
  await esbuild.build({
    entryPoints: [from],
    outfile: path.join(dist, out),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['@opentelemetry/*', 'undici', 'ioredis'],
    // bundled CommonJS packages (pino, ajv, ...) call require(): give the ES module one
    banner: { js: "import { createRequire as __porticoRequire } from 'node:module'; const require = __porticoRequire(import.meta.url);" },
    legalComments: 'none',
    logLevel: 'warning',
  });
}
console.log(`bundle: ${ENTRIES.map(([, out]) => path.relative(root, path.join(dist, out))).join(', ')} in ${Math.round(performance.now() - started)} ms`);
