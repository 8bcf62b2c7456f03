import { Type, type Static } from '@sinclair/typebox';
import { Meta, Plugins } from './common.ts';

/** APISIX plugin_config: a set of plugins routes share through `plugin_config_id`. */
export const PluginConfigSchema = Type.Object({ ...Meta, plugins: Plugins }, { additionalProperties: false });
export type PluginConfigConfig = Static<typeof PluginConfigSchema>;

/** APISIX global_rule: plugins that run on every request, before the route's. */
export const GlobalRuleSchema = Type.Object({ ...Meta, plugins: Plugins }, { additionalProperties: false });
export type GlobalRuleConfig = Static<typeof GlobalRuleSchema>;
