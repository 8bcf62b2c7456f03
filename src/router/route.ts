/**
 * A route compiled for matching: everything parsed once at upsert (method set, host matcher, IP
 * ranges, vars expression, uri patterns), so matching a request does no parsing of config.
 */
import { IpMatcher, unmapIpv4 } from './ip.ts';
import type { MatchRequest, PostArgs, RouteMatchSpec, RouterMode } from './types.ts';
import { checkUriPattern, compileUriPattern, type UriPattern } from './uri-pattern.ts';
import { compileVars, evaluateVars, postArgValue, type CompiledVars, type ValueLookup, type VarSource } from './vars.ts';

/**
 * Host filter of lua-resty-radixtree: an exact name, or `*suffix` which matches any host ending in
 * `suffix` — so `*.example.com` matches `a.example.com` and `a.b.example.com` (and `.example.com`)
 * but not `example.com`.
 */
export class HostMatcher {
  private readonly exact: ReadonlySet<string>;
  private readonly suffixes: readonly string[];

  constructor(hosts: readonly string[]) {
    const exact = new Set<string>();
    const suffixes: string[] = [];
    for (const raw of hosts) {
      const host = raw.toLowerCase();
      if (host.charCodeAt(0) === 0x2a /* * */) suffixes.push(host.slice(1));
      else exact.add(host);
    }
    this.exact = exact;
    this.suffixes = suffixes;
  }

  matches(host: string): boolean {
    if (this.exact.has(host)) return true;
    for (const suffix of this.suffixes) {
      if (host.endsWith(suffix)) return true;
    }
    return false;
  }
}

export interface CompiledRoute<T> {
  readonly id: string;
  readonly target: T;
  readonly priority: number;
  /** first-upsert order; breaks ties among equal priority and equal uri length */
  readonly sequence: number;
  /** lower-cased hosts as configured (radixtree_host_uri groups routes by them) */
  readonly hosts: readonly string[] | undefined;
  readonly methods: ReadonlySet<string> | undefined;
  /** undefined in radixtree_host_uri mode, where the host decides the route group instead */
  readonly hostFilter: HostMatcher | undefined;
  readonly remoteAddrs: IpMatcher | undefined;
  readonly vars: CompiledVars | undefined;
}

/**
 * The route as the router keeps it: what matching reads, without the uri list (each uri's pattern
 * is in the route's table entries; a list per route would be one more array per route).
 */
export function routeOf<T>(id: string, target: T, sequence: number, m: RouteMatcher): CompiledRoute<T> {
  return {
    id,
    target,
    priority: m.priority,
    sequence,
    hosts: m.hosts,
    methods: m.methods,
    hostFilter: m.hostFilter,
    remoteAddrs: m.remoteAddrs,
    vars: m.vars,
  };
}

/** What matching needs of a route, without its id, target and order, and its uri patterns: the costly part. */
export type RouteMatcher = Omit<CompiledRoute<unknown>, 'id' | 'target' | 'sequence'> & { readonly uris: readonly UriPattern[] };

/**
 * Compiles a spec that passed checkRouteShape (method set, host matcher, IP ranges, vars, uri
 * patterns); throws an Error whose message is the user-facing reason (`uris[0]: ...`,
 * `vars[1]: ...`). The data plane can do it ahead (while the rest of a large config is still
 * arriving) and hand the result to Router.upsert.
 *
 * The immutable parts many routes share (method sets, host lists and host matchers) are interned:
 * at 50,000 routes, one Set per route was a fifth of the router's memory.
 */
export function compileMatcher(spec: RouteMatchSpec, mode: RouterMode): RouteMatcher {
  const hosts = spec.hosts && spec.hosts.length > 0 ? internHosts(spec.hosts) : undefined;
  return {
    priority: spec.priority ?? 0,
    uris: compileUris(spec.uris, mode),
    hosts,
    methods: spec.methods && spec.methods.length > 0 ? internMethods(spec.methods) : undefined,
    hostFilter: hosts && mode !== 'radixtree_host_uri' ? internHostMatcher(hosts) : undefined,
    remoteAddrs: spec.remoteAddrs && spec.remoteAddrs.length > 0 ? IpMatcher.compile(spec.remoteAddrs) : undefined,
    vars: spec.vars !== undefined ? compileVars(spec.vars, ROUTE_VARS) : undefined,
  };
}

/**
 * Throws what compileMatcher would throw for `spec`, building only what can fail (the uri patterns
 * the config-regex compiler analyses, the vars): for a process that checks routes it does not serve.
 */
export function checkMatcher(spec: RouteMatchSpec, mode: RouterMode): void {
  spec.uris.forEach((uri, i) => {
    try {
      checkUriPattern(uri, mode);
    } catch (err) {
      throw new Error(`uris[${i}]: ${(err as Error).message}`);
    }
  });
  if (spec.remoteAddrs !== undefined && spec.remoteAddrs.length > 0) IpMatcher.compile(spec.remoteAddrs);
  if (spec.vars !== undefined) compileVars(spec.vars, ROUTE_VARS);
}

/** Route vars may read the request body (the router asks the transport for it: RequestView). */
const ROUTE_VARS = { postArgs: true } as const;

/** The distinct uris, each compiled; a failure names the uri's index in the spec. */
function compileUris(uris: readonly string[], mode: RouterMode): UriPattern[] {
  const distinct = uris.length === 1 ? uris : [...new Set(uris)];
  return distinct.map((uri) => {
    try {
      return compileUriPattern(uri, mode);
    } catch (err) {
      throw new Error(`uris[${uris.indexOf(uri)}]: ${(err as Error).message}`);
    }
  });
}

/**
 * Interning of immutable values by a string key, without keeping unused ones alive: entries are
 * weak and drop out once no route holds them (a config that churns through host lists for days
 * must not grow this).
 */
class InternPool<V extends object> {
  private readonly values = new Map<string, WeakRef<V>>();
  private readonly cleanup = new FinalizationRegistry<string>((key) => {
    if (this.values.get(key)?.deref() === undefined) this.values.delete(key);
  });

  get(key: string, make: () => V): V {
    const found = this.values.get(key)?.deref();
    if (found !== undefined) return found;
    const value = make();
    this.values.set(key, new WeakRef(value));
    this.cleanup.register(value, key);
    return value;
  }
}

const methodSets = new InternPool<ReadonlySet<string>>();
const hostLists = new InternPool<readonly string[]>();
/** by interned host list (so it lives as long as the list does) */
const hostMatchers = new WeakMap<readonly string[], HostMatcher>();

// (keyed by the names joined by spaces, which no method or host name holds; a single name is its own key)

function internMethods(methods: readonly string[]): ReadonlySet<string> {
  if (methods.length === 1) {
    const method = methods[0]!.toUpperCase();
    return methodSets.get(method, () => new Set([method]));
  }
  const upper = methods.map((m) => m.toUpperCase());
  return methodSets.get(upper.join(' '), () => new Set(upper));
}

function internHosts(hosts: readonly string[]): readonly string[] {
  if (hosts.length === 1) {
    const host = hosts[0]!.toLowerCase();
    return hostLists.get(host, () => Object.freeze([host]));
  }
  const lower = hosts.map((h) => h.toLowerCase());
  return hostLists.get(lower.join(' '), () => Object.freeze(lower));
}

/** `hosts`: a list internHosts() returned */
function internHostMatcher(hosts: readonly string[]): HostMatcher {
  let matcher = hostMatchers.get(hosts);
  if (matcher === undefined) hostMatchers.set(hosts, (matcher = new HostMatcher(hosts)));
  return matcher;
}

/**
 * The request as route filters see it. Query args and cookies are parsed on first use only, and
 * once per request however many routes ask.
 *
 * The body is never waited for here: a `post_arg` variable read before the transport has read the
 * body (`request.postArgs` undefined) marks the request `bodyWanted` and sets `bodyPending`, which
 * fails that route and every later candidate (routeFiltersPass), so the match ends without a route
 * and the transport matches again once it has the body. A route tried before that one is decided
 * without the body, exactly as it will be on the second match; a request whose matching never
 * reaches a `post_arg` variable is never buffered.
 */
export class RequestView implements ValueLookup {
  readonly request: MatchRequest;
  private args: Map<string, string> | undefined;
  private cookies: Map<string, string> | undefined;
  private remoteAddr: string | undefined;
  /** a route's vars needed the body, which is not read yet: this match can decide nothing more */
  bodyPending = false;

  constructor(request: MatchRequest) {
    this.request = request;
  }

  /** remote address as nginx would report it (IPv4-mapped IPv6 unwrapped) */
  get clientAddress(): string {
    return (this.remoteAddr ??= unmapIpv4(this.request.remoteAddr));
  }

  get(source: VarSource): unknown {
    switch (source.kind) {
      case 'uri':
        return this.request.path;
      case 'host':
        return this.request.host;
      case 'request_method':
        return this.request.method;
      case 'remote_addr':
        return this.clientAddress;
      case 'scheme':
        return this.request.scheme ?? 'http';
      case 'query_string':
        return this.request.query;
      case 'arg':
        return (this.args ??= parseQueryArgs(this.request.query)).get(source.name);
      case 'http': {
        // Own properties only: node's header object inherits from Object.prototype, so a plain
        // lookup of `http_constructor` would find Object itself.
        const headers = this.request.headers;
        const value = Object.hasOwn(headers, source.header) ? headers[source.header] : undefined;
        return Array.isArray(value) ? value.join(', ') : value;
      }
      case 'cookie':
        return (this.cookies ??= parseCookies(this.request.headers['cookie'])).get(source.name);
      case 'post_arg':
      case 'post_arg_form': {
        const postArgs = this.request.postArgs;
        if (postArgs === undefined) {
          this.request.bodyWanted = true;
          this.bodyPending = true;
          return undefined;
        }
        return source.kind === 'post_arg' ? postArgValue(postArgs.body, source.path) : formArg(postArgs, source.name);
      }
    }
  }
}

/**
 * `post_arg_<name>`: APISIX reads it only from a body whose Content-Type starts with
 * application/x-www-form-urlencoded, and takes the first value of a repeated name.
 */
function formArg(postArgs: PostArgs, name: string): unknown {
  if (!postArgs.urlencoded) return undefined;
  const form = postArgs.body as Record<string, unknown> | undefined;
  if (form === undefined || !Object.hasOwn(form, name)) return undefined;
  const value = form[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Query args like ngx.req.get_uri_args: names and values percent-decoded with `+` as space, the
 * first value of a repeated name wins (APISIX's `arg_*` takes args[1]), a bare `?flag` is ''.
 */
function parseQueryArgs(query: string): Map<string, string> {
  const args = new Map<string, string>();
  if (query === '') return args;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = decodeQueryComponent(eq === -1 ? pair : pair.slice(0, eq));
    if (name === '' || args.has(name)) continue;
    args.set(name, eq === -1 ? '' : decodeQueryComponent(pair.slice(eq + 1)));
  }
  return args;
}

function decodeQueryComponent(text: string): string {
  const spaced = text.includes('+') ? text.replaceAll('+', ' ') : text;
  if (!spaced.includes('%')) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    // nginx leaves malformed escapes as they are rather than failing the request.
    return spaced;
  }
}

function parseCookies(header: string | string[] | undefined): Map<string, string> {
  const cookies = new Map<string, string>();
  if (header === undefined) return cookies;
  const text = Array.isArray(header) ? header.join('; ') : header;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    const name = part.slice(0, eq).trim();
    if (name === '' || cookies.has(name)) continue;
    cookies.set(name, part.slice(eq + 1).trim());
  }
  return cookies;
}

/**
 * The non-path conditions in radixtree's order: methods, remote_addrs, hosts, vars. The first
 * failing one rejects the route for this request (the router then tries the next candidate).
 */
export function routeFiltersPass<T>(route: CompiledRoute<T>, view: RequestView): boolean {
  // the body is needed before anything further can be decided (RequestView): no route this time
  if (view.bodyPending) return false;
  const request = view.request;
  if (route.methods !== undefined && !route.methods.has(request.method)) return false;
  if (route.remoteAddrs !== undefined && !route.remoteAddrs.matches(view.clientAddress)) return false;
  if (route.hostFilter !== undefined && !route.hostFilter.matches(request.host)) return false;
  // a negated post_arg test holds on the not-yet-read (absent) value: bodyPending overrides it
  if (route.vars !== undefined && (!evaluateVars(route.vars, view) || view.bodyPending)) return false;
  return true;
}
