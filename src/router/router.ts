/**
 * The APISIX-compatible HTTP router: lua-resty-radixtree semantics behind APISIX's three router
 * modes, updated one route at a time.
 *
 * - `radixtree_uri`: routes indexed by uri; `hosts` is a filter like methods or vars.
 * - `radixtree_uri_with_parameter`: the same, and `:name` segments are parameters.
 * - `radixtree_host_uri`: routes with hosts are grouped by host and tried first — the exact host's
 *   group, then wildcard groups from the longest suffix to the shortest — and only then the routes
 *   without hosts (apisix/http/router/radixtree_host_uri.lua). So a host-bound route wins over a
 *   host-less one whatever their priorities.
 *
 * Upsert and remove touch only the keys of the route concerned (O(uri length + routes sharing
 * the key)); nothing is ever rebuilt from scratch.
 */
import { ErrorCode, PorticoError } from '../errors.ts';
import { IpMatcher } from './ip.ts';
import { checkMatcher, compileMatcher, RequestView, routeOf, type CompiledRoute, type RouteMatcher } from './route.ts';
import type { UriPattern } from './uri-pattern.ts';
import { RadixTree } from './trie.ts';
import type { MatchRequest, RouteMatch, RouteMatchSpec, RouterMode } from './types.ts';
import { UriTable, type UriEntry } from './uri-table.ts';

const MODES: ReadonlySet<string> = new Set<RouterMode>([
  'radixtree_host_uri',
  'radixtree_uri',
  'radixtree_uri_with_parameter',
]);

interface HostGroupKey {
  readonly wildcard: boolean;
  /** the exact host, or the reversed suffix after `*` for a wildcard */
  readonly key: string;
}

/**
 * One uri of an installed route where it sits (its table, and the host group the table belongs
 * to in radixtree_host_uri mode), so it can be taken out again without searching. A route's
 * entries are all the router keeps of it: one object per (uri, host group), nothing more.
 */
interface Placed<T> extends UriEntry<T> {
  readonly table: UriTable<T>;
  readonly hostGroup: HostGroupKey | undefined;
}

export class Router<T> {
  readonly mode: RouterMode;
  /**
   * route id -> its entries: the entry itself when there is one (most routes: one uri, no host
   * groups), else the list (never empty). No one-element array per route: 50,000 of them were 2.7 MB.
   */
  private readonly routes = new Map<string, Installed<T>>();
  private nextSequence = 0;
  /** all routes, or in radixtree_host_uri mode the routes without hosts */
  private readonly uriRoutes = new UriTable<T>();
  /** radixtree_host_uri: routes by exact host */
  private readonly exactHostGroups = new Map<string, UriTable<T>>();
  /** radixtree_host_uri: routes by wildcard host, keyed by the reversed suffix so that a prefix
   *  search over the reversed request host finds the longest matching suffix first */
  private readonly wildcardHostGroups = new RadixTree<UriTable<T>>();
  private readonly hostScratch: (UriTable<T> | undefined)[] = [];

  constructor(mode: RouterMode) {
    if (!MODES.has(mode)) throw new PorticoError(ErrorCode.CONFIG_INVALID, `unknown router mode: ${String(mode)}`);
    this.mode = mode;
  }

  /** Returns a human-readable reason when `spec` cannot be routed, else undefined. */
  static validate(spec: RouteMatchSpec, mode: RouterMode = 'radixtree_uri'): string | undefined {
    return checkRouteSpec(spec, mode);
  }

  get size(): number {
    return this.routes.size;
  }

  /**
   * Inserts the route, or replaces the route with the same id. A replaced route keeps its place
   * among equal-priority routes (APISIX rebuilds from its route list, where an update keeps the
   * route's position). Throws PorticoError (PORTICO_ERR_SEMANTIC) for an invalid spec, leaving
   * any previous version in place.
   */
  upsert(spec: RouteMatchSpec, target: T, matcher?: RouteMatcher): void {
    const reason = checkRouteShape(spec, this.mode);
    if (reason !== undefined) throw new PorticoError(ErrorCode.SEMANTIC, `route ${spec.id}: ${reason}`);
    const previous = this.routes.get(spec.id);
    const sequence = previous === undefined ? this.nextSequence : firstOf(previous).route.sequence;
    let m: RouteMatcher;
    try {
      // `matcher`: compileMatcher(spec, this.mode) done ahead by the caller
      m = matcher ?? compileMatcher(spec, this.mode);
    } catch (err) {
      throw new PorticoError(ErrorCode.SEMANTIC, `route ${spec.id}: ${(err as Error).message}`);
    }
    if (previous === undefined) this.nextSequence++;
    if (previous !== undefined) this.uninstall(previous);
    this.routes.set(spec.id, this.install(routeOf(spec.id, target, sequence, m), m.uris));
  }

  remove(id: string): boolean {
    const installed = this.routes.get(id);
    if (installed === undefined) return false;
    this.uninstall(installed);
    this.routes.delete(id);
    return true;
  }

  match(request: MatchRequest): RouteMatch<T> | undefined {
    const view = new RequestView(request);
    if (this.mode === 'radixtree_host_uri') {
      const found = this.matchHostGroups(request, view);
      if (found !== undefined) return found;
    }
    return this.uriRoutes.match(request.path, view);
  }

  private matchHostGroups(request: MatchRequest, view: RequestView): RouteMatch<T> | undefined {
    if (this.exactHostGroups.size > 0) {
      const found = this.exactHostGroups.get(request.host)?.match(request.path, view);
      if (found !== undefined) return found;
    }
    if (this.wildcardHostGroups.size === 0) return undefined;
    const scratch = this.hostScratch;
    const n = this.wildcardHostGroups.collectPrefixValues(reverse(request.host), scratch);
    let found: RouteMatch<T> | undefined;
    for (let i = 0; i < n && found === undefined; i++) found = scratch[i]!.match(request.path, view);
    for (let i = 0; i < n; i++) scratch[i] = undefined; // (fill() is a C++ call per match)
    return found;
  }

  private install(route: CompiledRoute<T>, uris: readonly UriPattern[]): Installed<T> {
    const groups: readonly (HostGroupKey | undefined)[] =
      this.mode === 'radixtree_host_uri' && route.hosts !== undefined
        ? (route.hosts.length === 1 ? route.hosts : [...new Set(route.hosts)]).map(hostGroupKey)
        : NO_HOST_GROUP;
    // exact-size: an array grown by push() keeps room for 16 more (a tenth of a route's memory)
    const entries = new Array<Placed<T>>(groups.length * uris.length);
    let i = 0;
    for (const hostGroup of groups) {
      const table = hostGroup === undefined ? this.uriRoutes : this.hostGroupTable(hostGroup, true)!;
      for (const pattern of uris) {
        const entry: Placed<T> = { route, pattern, table, hostGroup };
        table.add(entry);
        entries[i++] = entry;
      }
    }
    return entries.length === 1 ? entries[0]! : entries;
  }

  private uninstall(installed: Installed<T>): void {
    for (const entry of Array.isArray(installed) ? installed : [installed as Placed<T>]) {
      const { table, hostGroup } = entry;
      table.remove(entry);
      if (hostGroup !== undefined && table.size === 0) this.dropHostGroup(hostGroup);
    }
  }

  private hostGroupTable(group: HostGroupKey, create: boolean): UriTable<T> | undefined {
    let table = group.wildcard ? this.wildcardHostGroups.get(group.key) : this.exactHostGroups.get(group.key);
    if (table === undefined && create) {
      table = new UriTable<T>();
      if (group.wildcard) this.wildcardHostGroups.set(group.key, table);
      else this.exactHostGroups.set(group.key, table);
    }
    return table;
  }

  private dropHostGroup(group: HostGroupKey): void {
    if (group.wildcard) this.wildcardHostGroups.delete(group.key);
    else this.exactHostGroups.delete(group.key);
  }
}

const NO_HOST_GROUP: readonly undefined[] = [undefined];

/** A route's entries in the tables: one entry, or several (see Router.routes). */
type Installed<T> = Placed<T> | readonly Placed<T>[];

function firstOf<T>(installed: Installed<T>): Placed<T> {
  return Array.isArray(installed) ? installed[0]! : (installed as Placed<T>);
}

/**
 * `*.example.com` becomes the wildcard key `moc.elpmaxe.` — APISIX reverses the host and stores
 * `*` as a trailing prefix wildcard, so it matches any depth of subdomain (and `.example.com`).
 */
function hostGroupKey(host: string): HostGroupKey {
  return host.charCodeAt(0) === 0x2a /* * */
    ? { wildcard: true, key: reverse(host.slice(1)) }
    : { wildcard: false, key: host };
}

function reverse(text: string): string {
  let out = '';
  for (let i = text.length - 1; i >= 0; i--) out += text[i];
  return out;
}

/**
 * Semantic checks the JSON schema cannot express, so the config validator can reject a route with
 * a reason naming the field before it reaches the router. `:param` in a non-parameter mode is not
 * an error: the segment is matched literally, as APISIX does.
 */
export function checkRouteSpec(spec: RouteMatchSpec, mode: RouterMode, keep?: (matcher: RouteMatcher) => void): string | undefined {
  const reason = checkRouteShape(spec, mode);
  if (reason !== undefined) return reason;
  try {
    // the uri patterns (config regexes, with the compiler's limits) and the vars; `keep`: the
    // caller installs what was compiled here rather than compiling it again, else nothing is built
    // that cannot fail (a primary with workers checks 50,000 routes it never serves)
    if (keep !== undefined) keep(compileMatcher(spec, mode));
    else checkMatcher(spec, mode);
  } catch (err) {
    return (err as Error).message;
  }
  return undefined;
}

/** checkRouteSpec minus what compileRoute checks by compiling (uri patterns, vars). */
function checkRouteShape(spec: RouteMatchSpec, mode: RouterMode): string | undefined {
  if (typeof spec.id !== 'string' || spec.id === '') return 'id: must be a non-empty string';
  if (!Array.isArray(spec.uris) || spec.uris.length === 0) return 'uris: at least one uri is required';
  for (let i = 0; i < spec.uris.length; i++) {
    const uri = spec.uris[i];
    if (typeof uri !== 'string' || uri === '') return `uris[${i}]: must be a non-empty string`;
    if (mode === 'radixtree_uri_with_parameter' && uri.includes(':') && /(^|\/):(\/|$)/.test(uri)) {
      return `uris[${i}]: parameter segment ':' needs a name, e.g. /user/:id`;
    }
  }
  if (typeof spec.priority !== 'number' || !Number.isFinite(spec.priority)) {
    return 'priority: must be a finite number';
  }
  if (spec.hosts !== undefined) {
    if (!Array.isArray(spec.hosts)) return 'hosts: must be an array';
    for (let i = 0; i < spec.hosts.length; i++) {
      const host = spec.hosts[i];
      if (typeof host !== 'string' || host === '' || host === '*') return `hosts[${i}]: must be a host name`;
      if (host.indexOf('*', 1) !== -1) {
        return `hosts[${i}]: '*' is only allowed as the first character (e.g. *.example.com)`;
      }
    }
  }
  if (spec.methods !== undefined) {
    if (!Array.isArray(spec.methods) || !spec.methods.every((m) => typeof m === 'string' && m !== '')) {
      return 'methods: must be an array of method names';
    }
  }
  if (spec.remoteAddrs !== undefined) {
    if (!Array.isArray(spec.remoteAddrs)) return 'remote_addrs: must be an array';
    for (const [i, addr] of spec.remoteAddrs.entries()) {
      const reason = IpMatcher.check(addr);
      if (reason !== undefined) return `remote_addrs[${i}]: ${reason}`;
    }
  }
  return undefined;
}
