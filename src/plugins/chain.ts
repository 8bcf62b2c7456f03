import { plugins } from './registry.ts';
import type { Consumer, Plugin, PluginScope } from './types.ts';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyPlugin = Plugin<any, any>;

/** One plugin of a chain with its compiled config. */
export interface ChainEntry {
  readonly plugin: AnyPlugin;
  readonly conf: unknown;
}

/** A plugin config and where it came from (its state is kept per scope). */
export interface ScopedConf {
  readonly conf: unknown;
  readonly scope: PluginScope;
}

/**
 * The plugins that run for a route, compiled once per config change: per phase, the entries that
 * have a handler for it, highest priority first. A route without plugins has no chain at all.
 */
export class PluginChain {
  readonly rewrite: readonly ChainEntry[];
  readonly access: readonly ChainEntry[];
  readonly before_proxy: readonly ChainEntry[];
  readonly header_filter: readonly ChainEntry[];
  readonly body_filter: readonly ChainEntry[];
  readonly log: readonly ChainEntry[];
  /** the configs it was built from, by plugin name (consumer merges start from these) */
  readonly sources: ReadonlyMap<string, ScopedConf>;
  /** chains of this route with a consumer's plugins merged in, by consumer object */
  readonly withConsumer = new WeakMap<Consumer, PluginChain>();

  /** no plugins: what a consumer's plugins merge into on a route that has none (global rules authenticated) */
  static readonly EMPTY = new PluginChain([], new Map());

  private constructor(entries: ChainEntry[], sources: ReadonlyMap<string, ScopedConf>) {
    entries.sort((a, b) => b.plugin.priority - a.plugin.priority);
    const having = (phase: keyof AnyPlugin) => entries.filter((e) => typeof e.plugin[phase] === 'function');
    this.rewrite = having('rewrite');
    this.access = having('access');
    this.before_proxy = having('before_proxy');
    this.header_filter = having('header_filter');
    this.body_filter = having('body_filter');
    this.log = having('log');
    this.sources = sources;
  }

  /**
   * Compiles configs (later layers override earlier ones per plugin name: plugin_config, then
   * service, then route, as APISIX). Throws with the plugin's reason when one does not compile.
   */
  static compile(layers: readonly (readonly [Record<string, unknown> | undefined, PluginScope])[]): PluginChain | undefined {
    const sources = new Map<string, ScopedConf>();
    for (const [map, scope] of layers) if (map) for (const [name, conf] of Object.entries(map)) sources.set(name, { conf, scope });
    if (sources.size === 0) return undefined;
    return PluginChain.fromSources(sources);
  }

  private static fromSources(sources: Map<string, ScopedConf>): PluginChain {
    const entries: ChainEntry[] = [];
    for (const [name, { conf, scope }] of sources) {
      const checked = plugins.check(name, conf, `/plugins/${name}`);
      if (!checked.ok) throw new Error(checked.reason);
      const plugin = plugins.get(name)!;
      entries.push({ plugin, conf: plugin.compile ? plugin.compile(checked.conf, scope) : checked.conf });
    }
    return new PluginChain(entries, sources);
  }

  /**
   * This chain with the consumer's plugins merged in (theirs win per name, as APISIX; auth
   * plugins are credentials, not merged). Built on first use per consumer version, then cached.
   */
  forConsumer(consumer: Consumer): PluginChain {
    let chain = this.withConsumer.get(consumer);
    if (chain !== undefined) return chain;
    const extra = Object.entries(consumer.plugins).filter(([name]) => plugins.get(name)?.type !== 'auth');
    if (extra.length === 0) chain = this;
    else {
      const sources = new Map(this.sources);
      for (const [name, conf] of extra) sources.set(name, { conf, scope: { kind: 'consumers', id: consumer.username } });
      try {
        chain = PluginChain.fromSources(sources);
      } catch {
        // validated when the consumer was accepted: only a plugin disabled since then gets here
        chain = this;
      }
    }
    this.withConsumer.set(consumer, chain);
    return chain;
  }
}
