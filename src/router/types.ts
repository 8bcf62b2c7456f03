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
  /** 'https' when the client connection is TLS, else 'http' (nginx's $scheme); absent means 'http' */
  scheme?: string;
  /**
   * The request body as `post_arg.*` variables see it, once the transport has read it; undefined
   * before. Matching never waits for a body: a route whose `vars` reach a `post_arg` variable while
   * this is undefined sets `bodyWanted` and the match stops without a route (src/router/route.ts);
   * the transport then reads the body (bounded), sets this and matches again.
   */
  postArgs?: PostArgs | undefined;
  /** set by the router: a route's `vars` needed `postArgs` before the body was read */
  bodyWanted?: boolean;
}

/** A request body decoded for `post_arg.*` (src/proxy/post-args.ts decodes it). */
export interface PostArgs {
  /**
   * The body by its Content-Type: a JSON value; for an urlencoded or multipart form an object
   * without prototype, name → value (an urlencoded name given twice → array of values, a bare name
   * → true). undefined when there is nothing to read: no body, a body over the size limit, another
   * Content-Type, or a body that does not parse. Then every `post_arg` variable is absent.
   */
  readonly body: unknown;
  /** the Content-Type starts with application/x-www-form-urlencoded: what `post_arg_<name>` reads */
  readonly urlencoded: boolean;
}

export interface RouteMatch<T> {
  id: string;
  target: T;
  /** values of ':name' segments (parameter mode only) and of '*name' wildcards (every mode, as radixtree) */
  params?: Record<string, string>;
}
