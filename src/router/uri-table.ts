/**
 * Routes indexed by uri, searched the way lua-resty-radixtree searches:
 *
 * 1. the routes whose uri equals the path exactly (a hash lookup) — an exact uri therefore beats
 *    every prefix uri, whatever their priorities;
 * 2. then prefix keys that are prefixes of the path, longest first;
 * and within one key, the routes in bucket order (see `ranksBefore`). The first route whose
 * filters pass and whose uri pattern (if any) matches the whole path wins.
 */
import { routeFiltersPass, type CompiledRoute, type RequestView } from './route.ts';
import { RadixTree } from './trie.ts';
import type { RouteMatch } from './types.ts';
import type { UriPattern } from './uri-pattern.ts';

/** One (route, uri) pair: a route with several uris has one entry per uri. */
export interface UriEntry<T> {
  readonly route: CompiledRoute<T>;
  readonly pattern: UriPattern;
}

type Bucket<T> = UriEntry<T>[];

/**
 * radixtree's sort_route: higher priority first; equal priority, the longer configured uri first
 * (so `/user/:id/:tab` is tried before `/user/:id`, which share the key `/user/`). Portico adds
 * the route's first-upsert order as the last tie-breaker, so the winner never depends on how a
 * bucket happened to be edited.
 */
function ranksBefore<T>(a: UriEntry<T>, b: UriEntry<T>): boolean {
  if (a.route.priority !== b.route.priority) return a.route.priority > b.route.priority;
  if (a.pattern.uri.length !== b.pattern.uri.length) return a.pattern.uri.length > b.pattern.uri.length;
  return a.route.sequence < b.route.sequence;
}

export class UriTable<T> {
  private readonly exact = new Map<string, Bucket<T>>();
  private readonly prefixes = new RadixTree<Bucket<T>>();
  /** reused by match(): prefix buckets of the current path, longest first */
  private readonly scratch: (Bucket<T> | undefined)[] = [];
  private entries = 0;

  get size(): number {
    return this.entries;
  }

  add(entry: UriEntry<T>): void {
    const { key, exact } = entry.pattern;
    let bucket = exact ? this.exact.get(key) : this.prefixes.get(key);
    if (bucket === undefined) {
      // most keys hold one route: an exact-size array (`[]` then an insert reserves 16 slots)
      bucket = [entry];
      if (exact) this.exact.set(key, bucket);
      else this.prefixes.set(key, bucket);
      this.entries++;
      return;
    }
    let at = bucket.length;
    while (at > 0 && ranksBefore(entry, bucket[at - 1]!)) at--;
    bucket.splice(at, 0, entry);
    this.entries++;
  }

  remove(entry: UriEntry<T>): void {
    const { key, exact } = entry.pattern;
    const bucket = exact ? this.exact.get(key) : this.prefixes.get(key);
    if (bucket === undefined) return;
    const at = bucket.indexOf(entry);
    if (at === -1) return;
    bucket.splice(at, 1);
    this.entries--;
    if (bucket.length === 0) {
      if (exact) this.exact.delete(key);
      else this.prefixes.delete(key);
    }
  }

  match(path: string, view: RequestView): RouteMatch<T> | undefined {
    const exactBucket = this.exact.get(path);
    if (exactBucket !== undefined) {
      for (const entry of exactBucket) {
        if (routeFiltersPass(entry.route, view)) return { id: entry.route.id, target: entry.route.target };
      }
    }
    if (this.prefixes.size === 0) return undefined;

    const scratch = this.scratch;
    const n = this.prefixes.collectPrefixValues(path, scratch);
    let found: RouteMatch<T> | undefined;
    for (let i = 0; i < n && found === undefined; i++) {
      for (const entry of scratch[i]!) {
        found = matchEntry(entry, path, view);
        if (found !== undefined) break;
      }
    }
    // Drop references so removed buckets are not kept alive by the scratch array.
    scratch.fill(undefined, 0, n);
    return found;
  }
}

function matchEntry<T>(entry: UriEntry<T>, path: string, view: RequestView): RouteMatch<T> | undefined {
  // Filters first, then the uri pattern, as radixtree does (_match_from_routes).
  if (!routeFiltersPass(entry.route, view)) return undefined;
  const { regex, paramNames } = entry.pattern;
  if (regex === undefined) return { id: entry.route.id, target: entry.route.target };
  const m = regex.exec(path);
  if (m === null) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < paramNames.length; i++) {
    const name = paramNames[i];
    if (name !== undefined) params[name] = m[i + 1] ?? '';
  }
  return { id: entry.route.id, target: entry.route.target, params };
}
