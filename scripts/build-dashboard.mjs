#!/usr/bin/env node
// Builds the built-in dashboard: src/observability/dashboard/app/ -> dist/dashboard/{index.html,app.js,app.css}.
// Plain Node (no tsx) so that `npm ci` can run it as `prepare`. Type-checking is separate:
// `tsc --noEmit -p src/observability/dashboard/app`.
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const app = path.join(root, 'src/observability/dashboard/app');
const out = path.join(root, 'dist/dashboard');
const started = performance.now();

let esbuild;
try {
  esbuild = await import('esbuild');
} catch (err) {
  // `npm ci --omit=dev` (a production image) runs `prepare` without devDependencies: the gateway
  // must still install; its dashboard then answers 503 saying how to build it
  const omitted = /\bdev\b/.test(process.env.npm_config_omit ?? '') || process.env.npm_config_production === 'true' || process.env.NODE_ENV === 'production';
  if (omitted) {
    console.warn('build-dashboard: skipped, esbuild not installed (dev dependencies omitted); /dashboard answers 503 until built');
    process.exit(0);
  }
  console.error(`build-dashboard: esbuild is not installed (run npm install): ${err.message}`);
  process.exit(1);
}

try {
  mkdirSync(out, { recursive: true });
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: [path.join(app, 'main.ts')],
    outfile: path.join(out, 'app.js'),
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    platform: 'browser',
    legalComments: 'none',
    logLevel: 'silent',
  });
  copyFileSync(path.join(app, 'index.html'), path.join(out, 'index.html'));
  copyFileSync(path.join(app, 'app.css'), path.join(out, 'app.css'));
} catch (err) {
  const messages = err.errors?.length
    ? (await esbuild.formatMessages(err.errors, { kind: 'error', color: false })).join('')
    : `${err.message}\n`;
  console.error(`build-dashboard: failed\n${messages}`);
  process.exit(1);
}
console.log(`build-dashboard: ${path.relative(root, out)}/ in ${Math.round(performance.now() - started)} ms`);
