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

/**
 * The routes of one key: the entry itself when it is the only one (most keys), else the list in
 * bucket order. No one-element array per key: at 50,000 routes they were 2.7 MB.
 */
type Bucket<T> = UriEntry<T> | UriEntry<T>[];

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
    const bucket = exact ? this.exact.get(key) : this.prefixes.get(key);
    this.entries++;
    if (bucket === undefined) return this.setBucket(key, exact, entry);
    const list = Array.isArray(bucket) ? bucket : [bucket];
    let at = list.length;
    while (at > 0 && ranksBefore(entry, list[at - 1]!)) at--;
    list.splice(at, 0, entry);
    if (list !== bucket) this.setBucket(key, exact, list);
  }

  remove(entry: UriEntry<T>): void {
    const { key, exact } = entry.pattern;
    const bucket = exact ? this.exact.get(key) : this.prefixes.get(key);
    if (bucket === undefined) return;
    if (!Array.isArray(bucket)) {
      if (bucket !== entry) return;
      this.entries--;
      if (exact) this.exact.delete(key);
      else this.prefixes.delete(key);
      return;
    }
    const at = bucket.indexOf(entry);
    if (at === -1) return;
    bucket.splice(at, 1);
    this.entries--;
    if (bucket.length === 1) this.setBucket(key, exact, bucket[0]!);
  }

  private setBucket(key: string, exact: boolean, bucket: Bucket<T>): void {
    if (exact) this.exact.set(key, bucket);
    else this.prefixes.set(key, bucket);
  }

  match(path: string, view: RequestView): RouteMatch<T> | undefined {
    const exactBucket = this.exact.get(path);
    if (exactBucket !== undefined) {
      if (!Array.isArray(exactBucket)) {
        if (routeFiltersPass(exactBucket.route, view)) return { id: exactBucket.route.id, target: exactBucket.route.target };
      } else {
        for (const entry of exactBucket) {
          if (routeFiltersPass(entry.route, view)) return { id: entry.route.id, target: entry.route.target };
        }
      }
    }
    if (this.prefixes.size === 0) return undefined;

    const scratch = this.scratch;
    const n = this.prefixes.collectPrefixValues(path, scratch);
    let found: RouteMatch<T> | undefined;
    for (let i = 0; i < n && found === undefined; i++) {
      const bucket = scratch[i]!;
      if (!Array.isArray(bucket)) {
        found = matchEntry(bucket, path, view);
        continue;
      }
      for (const entry of bucket) {
        found = matchEntry(entry, path, view);
        if (found !== undefined) break;
      }
    }
    // Drop references so removed buckets are not kept alive by the scratch array.
    for (let i = 0; i < n; i++) scratch[i] = undefined; // (fill() is a C++ call per match)
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
