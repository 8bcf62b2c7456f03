import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** Packages a module already imported statically, by name (see `provide`). */
const provided = new Map<string, unknown>();

/**
 * A package loaded on its first use rather than with the module that uses it: undici (only the
 * node transport's pools), ajv (a worker process needs it only once it compiles a plugin config),
 * ioredis (only limit-count's redis policy). A gateway that never needs one does not pay for loading
 * it, and a worker bundle (scripts/bundle.mjs) leaves it out: it resolves from node_modules when used.
 * A package some module `provide`d is that copy: one instance where a bundle holds its own.
 */
export function onFirstUse<T>(name: string): () => T {
  let loaded: T | undefined;
  return () => (loaded ??= (provided.get(name) as T | undefined) ?? (require(name) as T));
}

/**
 * Says that this process has `name` loaded already, as `module`: the CLI bundle holds its own copy
 * of undici (the etcd client imports it), and a later onFirstUse('undici') (the node transport's
 * pools) must use that one, not load node_modules' copy beside it.
 */
export function provide(name: string, module: unknown): void {
  provided.set(name, module);
}
