#!/usr/bin/env node
// Runs the CLI from the compiled dist/ when present (npm run build), else straight from the
// TypeScript sources through tsx, so `npx portico` works right after `npm ci`.
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
