import type { RouteMatchSpec } from '../router/types.ts';
import type { RouteConfig } from './schema/route.ts';
import type { ServiceConfig } from './schema/service.ts';

/** The router's view of a route: service hosts filled in, hosts lower-cased, single forms folded into lists. */
export function routeSpec(id: string, r: RouteConfig, service?: ServiceConfig): RouteMatchSpec {
  const hosts = r.hosts ?? (r.host ? [r.host] : service?.hosts);
  const remote = r.remote_addrs ?? (r.remote_addr ? [r.remote_addr] : undefined);
  return {
    id,
    uris: r.uris ?? [r.uri!],
    hosts: hosts?.map((h) => h.toLowerCase()),
    methods: r.methods,
    priority: r.priority ?? 0,
    remoteAddrs: remote,
    vars: r.vars,
  };
}
