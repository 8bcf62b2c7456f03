/**
 * An example of a user's own plugin (portico.yaml: `plugin_dirs: [examples/plugins]`). It admits
 * only requests naming an allowed tenant in a header, tells the upstream which tenant it checked,
 * and echoes the tenant on the response. In a project of your own, import from 'portico':
 *
 *   import { definePlugin } from 'portico';
 *
 * Route config:   plugins: { tenant: { allow: [acme, globex], header: X-Tenant } }
 */
import { Type } from '@sinclair/typebox';
import { definePlugin } from '../../src/index.ts';

export default definePlugin({
  name: 'tenant',
  // after authentication (key-auth is 2500), before rate limiting (limit-count is 1002)
  priority: 1500,
  schema: Type.Object({
    allow: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
    header: Type.String({ minLength: 1, default: 'X-Tenant' }),
  }),
  // once per config change: a Set, not an array scan per request
  compile: (conf) => ({ header: conf.header, allow: new Set(conf.allow) }),
  access(conf, ctx) {
    const tenant = ctx.request.header(conf.header);
    if (tenant === undefined) return { status: 401, body: { message: `Missing ${conf.header}` } };
    // a stand-in for a call to a tenant directory that fails: the gateway answers 500 for this
    // request only, counts it under plugin_failures in /status, and goes on
    if (tenant === 'unavailable') throw new Error('tenant directory unavailable');
    if (!conf.allow.has(tenant)) return { status: 403, body: { message: `Tenant ${tenant} is not allowed` } };
    ctx.vars.set('tenant', tenant);
    ctx.upstream.setHeader('X-Tenant-Checked', tenant);
  },
  header_filter(_conf, ctx) {
    const tenant = ctx.vars.get('tenant');
    if (typeof tenant === 'string') ctx.response!.setHeader('X-Tenant', tenant);
  },
});
