#!/usr/bin/env node
// Runs the CLI from a build when there is one (npm run build): the bundle scripts/bundle.mjs made
// (dist/portico.js), unless it is older than tsc's dist/cli/main.js (a rebuild with tsc alone), which
// then runs instead; else straight from the TypeScript sources through tsx, so `npx portico` works
// right after `npm ci`.
import { statSync } from 'node:fs';

const mtime = (url) => {
  try {
    return statSync(url).mtimeMs;
  } catch {
    return undefined;
  }
};
const bundle = new URL('../dist/portico.js', import.meta.url);
const compiled = new URL('../dist/cli/main.js', import.meta.url);
const [bundled, built] = [mtime(bundle), mtime(compiled)];
if (bundled !== undefined && (built === undefined || bundled >= built)) {
  await import(bundle.href);
} else if (built !== undefined) {
  await import(compiled.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/cli/main.ts', import.meta.url).href);
}
