import type { MatchRequest, RouteMatch } from '../router/types.ts';
import type { UpstreamTarget } from '../upstream/types.ts';

/** A route compiled for the data plane: references resolved, service merged in. */
export interface CompiledRoute {
  id: string;
  upstream: UpstreamTarget | undefined;
  /** plugin configs, kept for the plugin pipeline (not yet executed) */
  plugins?: Record<string, unknown>;
}

/** What the proxy asks of the runtime for each request. */
export interface RouteTable {
  /** the router's own match object: no per-request wrapper */
  matchRoute(req: MatchRequest): RouteMatch<CompiledRoute> | undefined;
}
