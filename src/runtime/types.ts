import type { MatchRequest } from '../router/types.ts';
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
  matchRoute(req: MatchRequest): { route: CompiledRoute; params?: Record<string, string> } | undefined;
}
