import { Type } from '@sinclair/typebox';
import { StringEnum } from '../config/schema/common.ts';
import { definePlugin, type PluginContext } from './types.ts';

/*
 * consumer-restriction (APISIX apisix/plugins/consumer-restriction.lua): allows or denies a request
 * by the identified consumer's name, the route's or service's id, or the consumer's group, in the
 * access phase (after the auth plugins of rewrite). Order of the checks, as APISIX:
 *   no value (no consumer, route without service) → 401 "The request is rejected, please check the <type> for this request"
 *   value in blacklist                            → rejected_code {"message": rejected_msg | "The <type> is forbidden."}
 *   whitelist given and value not in it           → rejected
 *   not whitelisted, and allowed_by_methods has an entry for the value without this method → rejected
 */

const TYPES = ['consumer_name', 'service_id', 'route_id', 'consumer_group_id'] as const;
const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PURGE'] as const;

const schema = Type.Object({
  type: StringEnum(TYPES, { default: 'consumer_name' }),
  blacklist: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
  whitelist: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
  allowed_by_methods: Type.Optional(
    Type.Array(
      Type.Object({
        user: Type.Optional(Type.String()),
        methods: Type.Optional(Type.Array(StringEnum(METHODS), { minItems: 1 })),
      }),
    ),
  ),
  rejected_code: Type.Integer({ minimum: 200, default: 403 }),
  rejected_msg: Type.Optional(Type.String()),
});

interface Compiled {
  valueOf: (ctx: PluginContext) => string | undefined;
  blacklist: ReadonlySet<string> | undefined;
  whitelist: ReadonlySet<string> | undefined;
  /** user → allowed methods; the first entry of a user wins, as APISIX's linear search */
  methodsByUser: ReadonlyMap<string, ReadonlySet<string>> | undefined;
  missing: { status: number; body: { message: string } };
  rejected: { status: number; body: { message: string } };
}

const VALUE_OF: Record<(typeof TYPES)[number], (ctx: PluginContext) => string | undefined> = {
  consumer_name: (ctx) => ctx.consumer?.username,
  service_id: (ctx) => ctx.serviceId,
  route_id: (ctx) => ctx.routeId,
  // the consumer's group_id, when the runtime's Consumer carries it
  consumer_group_id: (ctx) => (ctx.consumer as { group_id?: string } | undefined)?.group_id,
};

export const consumerRestriction = definePlugin({
  name: 'consumer-restriction',
  priority: 2400,
  schema,
  compile(conf): Compiled {
    // APISIX's schema says this with anyOf/required; said here, the reason names the three fields
    if (conf.blacklist === undefined && conf.whitelist === undefined && conf.allowed_by_methods === undefined) {
      throw new Error('one of whitelist, blacklist or allowed_by_methods is required');
    }
    let methodsByUser: Map<string, Set<string>> | undefined;
    if (conf.allowed_by_methods !== undefined && conf.allowed_by_methods.length > 0) {
      methodsByUser = new Map();
      for (const entry of conf.allowed_by_methods) {
        // an entry without user matches no consumer (APISIX compares with nil)
        if (entry.user !== undefined && !methodsByUser.has(entry.user)) methodsByUser.set(entry.user, new Set(entry.methods ?? []));
      }
    }
    return {
      valueOf: VALUE_OF[conf.type],
      blacklist: conf.blacklist && new Set(conf.blacklist),
      whitelist: conf.whitelist && new Set(conf.whitelist),
      methodsByUser,
      missing: { status: 401, body: { message: `The request is rejected, please check the ${conf.type} for this request` } },
      rejected: { status: conf.rejected_code, body: { message: conf.rejected_msg ?? `The ${conf.type} is forbidden.` } },
    };
  },
  access(conf, ctx) {
    const value = conf.valueOf(ctx);
    // copies: the framework may add to an answer (headers) and these are shared by every request
    if (value === undefined) return { ...conf.missing };
    if (conf.blacklist?.has(value)) return { ...conf.rejected };
    const whitelisted = conf.whitelist?.has(value) ?? false;
    if (conf.whitelist !== undefined && !whitelisted) return { ...conf.rejected };
    if (conf.methodsByUser !== undefined && !whitelisted) {
      const allowed = conf.methodsByUser.get(value);
      if (allowed !== undefined && !allowed.has(ctx.request.method)) return { ...conf.rejected };
    }
    return;
  },
});
