import type { Kind } from '../config/changeset.ts';
import type { MatchRequest, RouteMatch } from '../router/types.ts';
import type { PluginChain } from '../plugins/chain.ts';
import type { ConsumerDirectory } from '../plugins/types.ts';
import type { UpstreamTarget } from '../upstream/types.ts';

/** A route compiled for the data plane: references resolved, service merged in. */
export interface CompiledRoute {
  id: string;
  upstream: UpstreamTarget | undefined;
  /** the route's plugins (plugin_config ← service ← route), compiled; undefined: none */
  chain?: PluginChain;
  /** the route's service, if any (plugins read it: consumer-restriction, limit keys) */
  serviceId?: string;
  /**
   * `enable_websocket` (the route's, else its service's; default false, as APISIX): whether an
   * Upgrade request may become a tunnel. Without it the request is proxied as plain HTTP.
   */
  websocket: boolean;
}

/** What the proxy asks of the runtime for each request. */
export interface RouteTable {
  /** the router's own match object: no per-request wrapper */
  matchRoute(req: MatchRequest): RouteMatch<CompiledRoute> | undefined;
  /** the global rules' plugins, run before every route's (undefined: none) */
  readonly globalChain?: PluginChain;
  /** the consumers in force (auth plugins look them up) */
  readonly consumers?: ConsumerDirectory;
}

/**
 * An object of the snapshot the runtime could not compile. The validator runs the same compile, so
 * this only happens through a bug; the store turns it into a rejection (PORTICO_ERR_COMPILE).
 */
export interface CompileFailure {
  kind: Kind;
  id: string;
  /** the version that failed, so a late report cannot reject a newer version */
  modRevision: number;
  /** `routes/7: /uris/0: ...` */
  reason: string;
}
