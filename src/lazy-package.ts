import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * A package loaded on its first use rather than with the module that uses it: undici (only the
 * node transport's pools), ajv (a worker process needs it only once it compiles a plugin config),
 * ioredis (only limit-count's redis policy). A gateway that never needs one does not pay for loading
 * it, and a worker bundle (scripts/bundle.mjs) leaves it out: it resolves from node_modules when used.
 */
export function onFirstUse<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= require(name) as T);
}
