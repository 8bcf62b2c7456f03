import { plugins } from './registry.ts';
import type { PluginScope } from './types.ts';

/**
 * Why an object's `plugins` map is not valid (`schema`: a schema violation, else a compile failure), or undefined: every name a known, enabled plugin, every
 * config valid against its schema (a consumer's auth plugins: against the credential schema), and
 * compiling (the plugin's own compile, as the runtime will run it: "valid" implies "compiles").
 * The reason names the plugin and the field: `/plugins/key-auth/header: must be string`.
 */
export function pluginsProblem(map: Record<string, unknown> | undefined, scope: PluginScope, consumer = false): { schema: boolean; reason: string } | undefined {
  if (map === undefined) return undefined;
  for (const [name, conf] of Object.entries(map)) {
    const at = `/plugins/${name}`;
    const plugin = plugins.get(name);
    const checked = plugins.check(name, conf, at, consumer && plugin?.type === 'auth');
    if (!checked.ok) return { schema: true, reason: checked.reason };
    // a consumer's credentials are looked up, not compiled
    if (consumer && plugin!.type === 'auth') continue;
    if (plugin!.compile) {
      try {
        plugin!.compile(checked.conf, scope);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        return { schema: false, reason: message.startsWith('/') ? `${at}${message}` : `${at}: ${message}` };
      }
    }
  }
  return undefined;
}
