import { readdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Ajv, ErrorObject, ValidateFunction } from 'ajv';
import { ErrorCode, PorticoError } from '../errors.ts';
import { onFirstUse } from '../lazy-package.ts';
import { BUILTIN_PLUGINS } from './builtin.ts';
import { PHASES, type Plugin } from './types.ts';

/*
 * Which plugins exist and are enabled in this process, and their config validators. Built-ins are
 * listed in builtin.ts; `plugin_dirs` of portico.yaml adds the user's own (loaded at start);
 * `plugins:` of portico.yaml enables a subset (default: every plugin known). An object that names a
 * plugin that is unknown or not enabled is rejected with the reason, like any schema violation.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyPlugin = Plugin<any, any>;

interface Entry {
  plugin: AnyPlugin;
  /**
   * validates a clone of the config and fills in the schema's defaults. Built-ins compile on first
   * use (20 schemas were a tenth of a gateway's start); a user's plugin at load, so a broken schema
   * stops the start.
   */
  validate: ValidateFunction | undefined;
  validateConsumer: ValidateFunction | undefined;
}

function compileEntry(entry: Entry): { validate: ValidateFunction; validateConsumer: ValidateFunction | undefined } {
  if (entry.validate === undefined) {
    const compiler = validators();
    entry.validate = compiler.compile(entry.plugin.schema);
    entry.validateConsumer = entry.plugin.consumerSchema && compiler.compile(entry.plugin.consumerSchema);
  }
  return { validate: entry.validate, validateConsumer: entry.validateConsumer };
}

const ajvPackage = onFirstUse<typeof import('ajv')>('ajv');
let ajv: Ajv | undefined;
/**
 * The schema compiler, loaded with the first plugin schema compiled, not with this module: a worker
 * process of `proxy.workers` > 1 validates no objects (the primary does) and needs it only to fill in
 * the defaults of the plugin configs it compiles. Defaults are filled in on a clone: the stored object
 * stays as the source wrote it.
 */
function validators(): Ajv {
  return (ajv ??= new (ajvPackage().Ajv)({ allErrors: false, strict: false, useDefaults: true }));
}

class PluginRegistry {
  private readonly known = new Map<string, Entry>();
  private enabled: Set<string> | undefined;

  constructor() {
    for (const p of BUILTIN_PLUGINS) this.add(p, 'built-in');
  }

  /** `checkSchema`: compile a user's plugin schema now, so that a broken one stops the start (a worker skips it: the primary did) */
  add(plugin: AnyPlugin, origin: string, checkSchema = true): void {
    const problem = pluginShapeProblem(plugin);
    if (problem) throw new PorticoError(ErrorCode.CONFIG_INVALID, `plugin from ${origin}: ${problem}`);
    if (this.known.has(plugin.name) && origin !== 'built-in') {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, `plugin '${plugin.name}' from ${origin}: a plugin of that name already exists`);
    }
    const entry: Entry = { plugin, validate: undefined, validateConsumer: undefined };
    if (origin !== 'built-in' && checkSchema) {
      try {
        compileEntry(entry);
      } catch (err) {
        throw new PorticoError(ErrorCode.CONFIG_INVALID, `plugin '${plugin.name}' from ${origin}: invalid schema: ${(err as Error).message}`);
      }
    }
    this.known.set(plugin.name, entry);
  }

  /** `plugins:` of portico.yaml (undefined: all). Unknown names are a config error. */
  enable(names: readonly string[] | undefined): void {
    if (names === undefined) {
      this.enabled = undefined;
      return;
    }
    const unknown = names.filter((n) => !this.known.has(n));
    if (unknown.length) throw new PorticoError(ErrorCode.CONFIG_INVALID, `plugins: unknown plugin(s) ${unknown.map((n) => `'${n}'`).join(', ')} (known: ${this.names().join(', ')})`);
    this.enabled = new Set(names);
  }

  names(): string[] {
    return [...this.known.keys()].sort();
  }

  get(name: string): AnyPlugin | undefined {
    return this.known.get(name)?.plugin;
  }

  /**
   * Why `conf` is not a valid config of plugin `name` (as a consumer's credentials when `consumer`),
   * or the config with its defaults filled in. `at` prefixes the reason: `/plugins/key-auth`.
   */
  check(name: string, conf: unknown, at: string, consumer = false): { ok: true; conf: Record<string, unknown> } | { ok: false; reason: string } {
    const entry = this.known.get(name);
    if (entry === undefined) return { ok: false, reason: `${at}: unknown plugin '${name}'` };
    if (this.enabled !== undefined && !this.enabled.has(name)) return { ok: false, reason: `${at}: plugin '${name}' is not enabled (portico.yaml plugins:)` };
    const compiled = compileEntry(entry);
    const validate = consumer && compiled.validateConsumer ? compiled.validateConsumer : compiled.validate;
    const copy = structuredClone(conf);
    if (!validate(copy)) return { ok: false, reason: `${at}${describe(validate.errors![0]!)}` };
    return { ok: true, conf: copy as Record<string, unknown> };
  }
}

function describe(e: ErrorObject): string {
  const where = e.instancePath || '';
  if (e.keyword === 'additionalProperties') return `${where}: unknown field '${(e.params as { additionalProperty: string }).additionalProperty}'`;
  if (e.keyword === 'enum') return `${where}: must be one of ${((e.params as { allowedValues: unknown[] }).allowedValues ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
  return `${where}: ${e.message ?? e.keyword}`;
}

/** What is wrong with an object presented as a plugin (a user's file may export anything). */
function pluginShapeProblem(p: unknown): string | undefined {
  if (p === null || typeof p !== 'object') return 'not an object';
  const o = p as Record<string, unknown>;
  if (typeof o.name !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,63}$/.test(o.name)) return `'name' must be a lower-case name (a-z, 0-9, - and _), got ${JSON.stringify(o.name)}`;
  if (typeof o.priority !== 'number' || !Number.isFinite(o.priority)) return `plugin '${o.name}': 'priority' must be a number`;
  if (o.schema === null || typeof o.schema !== 'object') return `plugin '${o.name}': 'schema' must be a JSON schema object`;
  for (const phase of [...PHASES, 'compile'] as const) {
    if (o[phase] !== undefined && typeof o[phase] !== 'function') return `plugin '${o.name}': '${phase}' must be a function`;
  }
  return undefined;
}

export const plugins = new PluginRegistry();

/**
 * Loads the user's plugins: every .js, .mjs and .ts file of each folder (a .ts file needs a loader
 * such as tsx, as `npx portico` has). Each file's default export, or its exports that look like
 * plugins, are added. A file that does not load or export a valid plugin stops the start with the
 * reason: a gateway must not start without a plugin its config relies on.
 */
export async function loadPluginDirs(dirs: readonly string[], checkSchemas = true): Promise<string[]> {
  const loaded: string[] = [];
  for (const dir of dirs) {
    let files: string[];
    try {
      files = readdirSync(dir).filter((f) => /\.(m?js|ts)$/.test(f) && !f.endsWith('.d.ts')).sort();
    } catch (err) {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, `plugin_dirs: cannot read ${dir}: ${(err as Error).message}`);
    }
    for (const file of files) {
      const full = path.join(dir, file);
      let mod: Record<string, unknown>;
      try {
        mod = (await import(pathToFileURL(full).href)) as Record<string, unknown>;
      } catch (err) {
        throw new PorticoError(ErrorCode.CONFIG_INVALID, `plugin_dirs: ${full} does not load: ${(err as Error).message}`);
      }
      const candidates = mod.default !== undefined ? [mod.default] : Object.values(mod).filter((v) => v !== null && typeof v === 'object' && 'name' in (v as object) && 'schema' in (v as object));
      if (candidates.length === 0) throw new PorticoError(ErrorCode.CONFIG_INVALID, `plugin_dirs: ${full} exports no plugin (export default definePlugin({...}))`);
      for (const c of candidates) {
        plugins.add(c as AnyPlugin, full, checkSchemas);
        loaded.push((c as AnyPlugin).name);
      }
    }
  }
  return loaded;
}

/**
 * portico.yaml's plugin settings: the user's plugins loaded, then the enabled set. Once per process.
 * `checkSchemas` false: a worker's, whose primary has loaded the same files and checked their schemas.
 */
export async function setupPlugins(config: { plugins?: string[]; plugin_dirs: string[] }, checkSchemas = true): Promise<void> {
  await loadPluginDirs(config.plugin_dirs, checkSchemas);
  plugins.enable(config.plugins);
}
