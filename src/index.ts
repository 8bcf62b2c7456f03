/**
 * What Portico exports to code that runs in it: the plugin API. A plugin in one of `plugin_dirs`
 * (portico.yaml) is a file whose default export is `definePlugin({...})`:
 *
 *   import { Type } from '@sinclair/typebox';
 *   import { definePlugin } from 'portico';
 *   export default definePlugin({ name: 'my-plugin', priority: 1000, schema: Type.Object({}), access(conf, ctx) { ... } });
 */
export { definePlugin, PHASES } from './plugins/types.ts';
export type {
  Consumer,
  ConsumerDirectory,
  Phase,
  PhaseResult,
  Plugin,
  PluginAnswer,
  PluginContext,
  PluginScope,
  RequestView,
  ResponseView,
  UpstreamRequest,
} from './plugins/types.ts';
