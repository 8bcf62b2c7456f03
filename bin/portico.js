#!/usr/bin/env node
// Runs the CLI from the build when present (npm run build: dist/portico.js, the bundle; else
// dist/cli/main.js, tsc's output alone), else straight from the TypeScript sources through tsx, so
// `npx portico` works right after `npm ci`.
import { existsSync } from 'node:fs';

const bundled = new URL('../dist/portico.js', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);
if (existsSync(bundled)) {
  await import(bundled.href);
} else if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
