import { fileURLToPath } from 'node:url';

/*
 * Where the package's own files are, wherever this code runs from: the TypeScript sources (src/),
 * tsc's output (dist/), or the bundled CLI, whose files scripts/bundle.mjs writes into dist/ itself.
 * This module sits at the root of src/ (so of dist/), as every file of the bundle does: a path
 * relative to it holds in all three, where one relative to a module deeper in the tree would not
 * once that module is bundled.
 */

const root = new URL('.', import.meta.url);

/** This code runs from the TypeScript sources (through tsx), not from a build. */
export const fromSources = import.meta.url.endsWith('.ts');

/** A module of the running code by its path without extension: `server/worker-main` → src/server/worker-main.ts or dist/server/worker-main.js. */
export function codeFile(module: string): string {
  return fileURLToPath(new URL(`${module}.${fromSources ? 'ts' : 'js'}`, root));
}

/** In a build, a file at the root of dist/ (a bundle scripts/bundle.mjs made), whether or not it exists. */
export function buildFile(name: string): string {
  return fileURLToPath(new URL(name, root));
}

/** A file at the package's root (package.json). */
export function packageFile(name: string): string {
  return fileURLToPath(new URL(`../${name}`, root));
}
