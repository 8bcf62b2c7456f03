import { Router } from '../../src/router/router.ts';
import type { MatchRequest, RouteMatchSpec, RouterMode } from '../../src/router/types.ts';

export type RouteInput = Partial<RouteMatchSpec> & { id: string; uris: string[] };

export function spec(input: RouteInput): RouteMatchSpec {
  return { priority: 0, ...input };
}

/** A router whose targets are the route ids, so assertions read as "which route won". */
export function routerWith(mode: RouterMode, routes: readonly RouteInput[]): Router<string> {
  const router = new Router<string>(mode);
  for (const route of routes) router.upsert(spec(route), route.id);
  return router;
}

export function request(path: string, overrides: Partial<MatchRequest> = {}): MatchRequest {
  return {
    method: 'GET',
    host: 'example.com',
    path,
    remoteAddr: '127.0.0.1',
    headers: {},
    query: '',
    ...overrides,
  };
}
