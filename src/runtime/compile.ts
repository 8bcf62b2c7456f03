import type { Kind } from '../config/changeset.ts';
import { routeSpec } from '../config/route-spec.ts';
import type { RouteConfig } from '../config/schema/route.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import type { UpstreamConfig } from '../config/schema/upstream.ts';
import { streamUpstreamForCompile, type StreamRouteConfig } from '../config/schema/stream-route.ts';
import { checkRouteSpec } from '../router/router.ts';
import type { RouteMatchSpec, RouterMode } from '../router/types.ts';
import type { RouteMatcher } from '../router/route.ts';
import { compileTimeout, compileUpstream } from './upstream.ts';

export const ROUTER_MODES: readonly RouterMode[] = ['radixtree_host_uri', 'radixtree_uri', 'radixtree_uri_with_parameter'];

/**
 * Why the runtime cannot compile this object, or undefined: "valid" and "compiles" are one
 * decision. It runs the very steps Runtime.apply runs for the object (compileUpstream, the route
 * timeout, and the router's own check of Router.upsert: checkRouteSpec, which compiles the route),
 * minus installing the result. The validator calls it, so no check exists only at compile time.
 *
 * `mode`: the gateway's router mode; without one, the object must compile in every mode (the
 * `validate` CLI on a routes file alone). The reason starts with the field's path
 * (`/upstream/nodes/127.0.0.1:80800: port must be 1-65535`).
 */
export function compileProblem(kind: Kind, id: string, value: unknown, mode?: RouterMode): string | undefined {
  const modes = mode ? [mode] : ROUTER_MODES;
  switch (kind) {
    case 'upstreams':
      return upstreamProblem(id, value as UpstreamConfig, '');
    case 'services': {
      const s = value as ServiceConfig;
      const p = s.upstream && upstreamProblem(`services/${id}`, s.upstream, '/upstream');
      if (p) return p;
      // a service's hosts become the hosts of its routes that have none: the router must take them
      return s.hosts && routerProblem({ id, uris: ['/'], hosts: s.hosts.map((h) => h.toLowerCase()), priority: 0 }, modes);
    }
    case 'routes': {
      const r = value as RouteConfig;
      const p = r.upstream && upstreamProblem(`routes/${id}`, r.upstream, '/upstream');
      if (p) return p;
      if (r.timeout) {
        const t = attempt(() => compileTimeout(r.timeout), '');
        if (t) return t;
      }
      return routerProblem(routeSpec(id, r), modes, r);
    }
    case 'stream_routes': {
      const r = value as StreamRouteConfig;
      return r.upstream && upstreamProblem(`stream_routes/${id}`, streamUpstreamForCompile(r.upstream), '/upstream');
    }
    default:
      return undefined;
  }
}

function upstreamProblem(key: string, u: UpstreamConfig, at: string): string | undefined {
  return attempt(() => compileUpstream(key, u), at);
}

/**
 * In a process that validates and serves (one process, no workers), the route matchers the
 * validator compiled are kept for the data plane, which installs them instead of compiling each
 * route a second time (a fifth of loading 50,000 routes). By value object, weakly; taken once.
 */
let keepMatchers = false;
/** per router mode (one WeakMap each: no wrapper object per route, which outlived the load as garbage) */
const validatedMatchers = new Map<RouterMode, WeakMap<object, RouteMatcher>>();

export function keepValidatedMatchers(on: boolean): void {
  keepMatchers = on;
}

/** The matcher the validator compiled for this route value in `mode`, if kept (once). */
export function takeValidatedMatcher(value: object, mode: RouterMode): RouteMatcher | undefined {
  const kept = validatedMatchers.get(mode);
  const matcher = kept?.get(value);
  if (matcher !== undefined) kept!.delete(value);
  return matcher;
}

function matchersOf(mode: RouterMode): WeakMap<object, RouteMatcher> {
  let kept = validatedMatchers.get(mode);
  if (kept === undefined) validatedMatchers.set(mode, (kept = new WeakMap()));
  return kept;
}

/** Router.upsert's own steps, on a route that is then dropped. `value`: the route, to keep its matcher. */
function routerProblem(spec: RouteMatchSpec, modes: readonly RouterMode[], value?: object): string | undefined {
  const keep = keepMatchers && value !== undefined && modes.length === 1 ? (matcher: RouteMatcher) => matchersOf(modes[0]!).set(value, matcher) : undefined;
  for (const mode of modes) {
    // checkRouteSpec compiles the route (uri patterns, vars) as Router.upsert does
    const reason = checkRouteSpec(spec, mode, keep);
    // the router says `uris[0]: ...`; a rejection says `/uris/0: ...`
    if (reason !== undefined) return `/${reason.replace(/\[(\d+)\]/g, '/$1')}`;
  }
  return undefined;
}

/** Runs one compile step; a throw becomes a reason, its path prefixed with `at`. */
function attempt(step: () => unknown, at: string): string | undefined {
  try {
    step();
    return undefined;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return message.startsWith('/') ? `${at}${message}` : `${at || '/'}: ${message}`;
  }
}
