/**
 * The router's contract. The router sees a small request description, never node:http objects,
 * so the transport can change without touching matching.
 */

/** APISIX's three HTTP routers (conf `apisix.router.http`). */
export type RouterMode = 'radixtree_host_uri' | 'radixtree_uri' | 'radixtree_uri_with_parameter';

/** What the router needs of a route: already validated, hosts lower-cased, methods upper-cased. */
export interface RouteMatchSpec {
  id: string;
  /** at least one: '/foo' exact, '/foo/*' or '/foo*' prefix, '/user/:id' parameter (parameter mode only) */
  uris: string[];
  /** lower-case host names; '*.example.com' wildcards allowed; undefined = any host */
  hosts?: string[];
  /** upper-case methods; undefined = any */
  methods?: string[];
  /** higher wins among routes with the same path key; default 0 */
  priority: number;
  /** IPv4/IPv6 addresses or CIDRs; undefined = any */
  remoteAddrs?: string[];
  /** APISIX (lua-resty-expr) expression array, e.g. [["arg_name","==","json"],["http_x","~~","^a"]] */
  vars?: unknown[];
}

export interface MatchRequest {
  /** upper-case method */
  method: string;
  /** lower-case host without port */
  host: string;
  /** decoded, normalized path, no query string */
  path: string;
  /** client address as the socket reports it (IPv4 or IPv6, IPv4-mapped IPv6 allowed) */
  remoteAddr: string;
  /** lower-cased header names, as node:http gives them */
  headers: Record<string, string | string[] | undefined>;
  /** raw query string without '?' ('' when none) */
  query: string;
}

export interface RouteMatch<T> {
  id: string;
  target: T;
  /** values of ':name' segments (parameter mode only) and of '*name' wildcards (every mode, as radixtree) */
  params?: Record<string, string>;
}
