import os from 'node:os';
import { ErrorCode, PorticoError } from '../../errors.ts';
import { escapeUri } from '../../plugins/nginx-var.ts';
import type { Balancer, BalancerOptions, PickRequest, UpstreamNode, NodeSet } from '../types.ts';

/**
 * Consistent hashing (APISIX upstream `type: chash`, resty.chash): every node owns points on a
 * 32-bit ring, 160 per unit of weight; a request's key (`hash_on` + `key`) is hashed and served by
 * the owner of the first point at or after it. Adding or removing a node only moves the keys of
 * the arcs it gains or loses (≈ its share), so caches behind the upstream stay warm.
 *
 * Decisions:
 *  - A point's position depends only on its node's key ("host:port") and its index, never on the
 *    other nodes or their order: the same config always yields the same ring, on every worker.
 *  - Weights are divided by their greatest common divisor first (APISIX's common weight 100 would
 *    otherwise cost 16,000 points per node), and the ring is capped at MAX_POINTS, scaled down
 *    proportionally. Both keep arcs proportional to weights; the price is that a change of the
 *    gcd (e.g. adding a node of weight 50 beside two of 100) re-spreads points of the others.
 *  - Retries (`tried`): walk on along the ring to the next node not yet tried, as resty.chash's
 *    `next` does, so a retried key still lands deterministically.
 *  - A key that resolves to nothing or to '' hashes the client address instead (APISIX falls back
 *    to `remote_addr` for nil; Portico also for '', which would send every such request to one node).
 *  - pick() without a request (not the proxy: it always passes one, see `needsRequest`) has no key
 *    to hash, so it walks the ring with a golden-ratio sequence: picks spread in proportion to
 *    each node's arcs (≈ weights), deterministically.
 *
 * Invalid keys are rejected when the upstream is compiled (so at validation), with the reason
 * starting `/key:`: an unknown variable name for `vars`/`vars_combinations`, a header or cookie
 * name outside APISIX's `^[a-zA-Z0-9-_]+$`, or no key at all where one is needed.
 */
export function createChash(nodes: UpstreamNode[], options?: BalancerOptions): Balancer {
  const readKey = compileKey(options?.hashOn ?? 'vars', options?.key);
  const eligible = nodes.filter((node) => node.weight > 0);
  if (eligible.length === 0) return { pick: () => undefined };
  return new HashRing(eligible, readKey);
}

/** resty.chash's CONSISTENT_POINTS: points per unit of weight */
const POINTS_PER_WEIGHT = 160;
/** a bound on the ring (and on the work of building it) whatever the weights */
const MAX_POINTS = 160 * 1024;
/** 2^32 / golden ratio: a Weyl sequence with this step covers the ring evenly */
const GOLDEN_STEP = 0x9e3779b9;

/** The key a request hashes on, or undefined when its variable(s) had no value. */
type KeyReader = (request: PickRequest) => string | undefined;

class HashRing implements Balancer {
  readonly needsRequest = true;
  /** point positions, ascending */
  private readonly points: Uint32Array;
  /** owner of each point: an index into `nodes` */
  private readonly owners: Uint32Array;
  private readonly nodes: UpstreamNode[];
  /** position of the next request-less pick */
  private spread = 0;

  constructor(
    nodes: UpstreamNode[],
    private readonly readKey: KeyReader,
  ) {
    // sorted by key so that equal positions (hash collisions) break ties the same way whatever the config order
    this.nodes = [...nodes].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const divisor = this.nodes.reduce((g, node) => gcd(g, node.weight), 0);
    const units = this.nodes.map((node) => node.weight / divisor);
    const total = units.reduce((sum, u) => sum + u, 0) * POINTS_PER_WEIGHT;
    const scale = total > MAX_POINTS ? MAX_POINTS / total : 1;
    const counts = units.map((u) => Math.max(1, Math.round(u * POINTS_PER_WEIGHT * scale)));
    // one sortable number per point: position * 2^20 + owner (exact in a double: 52 bits)
    const packed = new Float64Array(counts.reduce((sum, c) => sum + c, 0));
    let n = 0;
    for (let owner = 0; owner < this.nodes.length; owner++) {
      const key = this.nodes[owner]!.key;
      for (let i = 0; i < counts[owner]!; i++) packed[n++] = hash32(`${key}#${i}`) * 0x100000 + owner;
    }
    packed.sort();
    this.points = new Uint32Array(packed.length);
    this.owners = new Uint32Array(packed.length);
    for (let i = 0; i < packed.length; i++) {
      const owner = packed[i]! % 0x100000;
      this.owners[i] = owner;
      this.points[i] = (packed[i]! - owner) / 0x100000;
    }
  }

  pick(tried?: NodeSet, request?: PickRequest): UpstreamNode | undefined {
    let position: number;
    if (request === undefined) {
      position = this.spread;
      this.spread = (this.spread + GOLDEN_STEP) >>> 0;
    } else {
      const key = this.readKey(request);
      position = hash32(key === undefined || key === '' ? request.clientAddress : key);
    }
    let at = this.firstPointFrom(position);
    const { nodes, owners } = this;
    if (tried === undefined || tried.size === 0) return nodes[owners[at]!];
    if (tried.size >= nodes.length && nodes.every((node) => tried.has(node))) return undefined;
    for (let step = 0; step < owners.length; step++) {
      const node = nodes[owners[at]!]!;
      if (!tried.has(node)) return node;
      at = at + 1 === owners.length ? 0 : at + 1;
    }
    return undefined;
  }

  /** index of the first point at or after `position`, wrapping to 0 past the last */
  private firstPointFrom(position: number): number {
    const points = this.points;
    let lo = 0;
    let hi = points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (points[mid]! < position) lo = mid + 1;
      else hi = mid;
    }
    return lo === points.length ? 0 : lo;
  }
}

function gcd(a: number, b: number): number {
  // weights are integers in APISIX; a fractional one just makes the divisor 1-ish, never wrong
  if (!Number.isInteger(a) || !Number.isInteger(b)) return 1;
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * FNV-1a over the string's UTF-16 code units, then murmur3's finalizer: FNV alone leaves keys that
 * differ only in their last character (user1, user2, ...) close together on the ring.
 */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const SUPPORTED_VARS =
  'remote_addr, uri, request_uri, host, hostname, query_string (args), request_method, consumer_name, ' +
  'arg_<name>, http_<name>, cookie_<name>';

/** APISIX's upstream_hash_header_schema, for header and cookie names */
const NAME_PATTERN = /^[a-zA-Z0-9_-]+$/;

function keyError(message: string): PorticoError {
  return new PorticoError(ErrorCode.SEMANTIC, `/key: ${message}`);
}

/** Resolves `hash_on` + `key` once, at compile; throws a `/key: ...` reason for a key that cannot work. */
function compileKey(hashOn: string, key: string | undefined): KeyReader {
  switch (hashOn) {
    case 'vars':
      // APISIX requires a key here; Portico defaults to remote_addr, APISIX's own fallback
      return compileVar(key ?? 'remote_addr');
    case 'header': {
      const name = checkedName(hashOn, key);
      // nginx's $http_<key>: '_' in the key stands for '-'
      const header = name.toLowerCase().replaceAll('_', '-');
      return (request) => request.header(header);
    }
    case 'cookie': {
      // cookie names are case-sensitive (APISIX docs: cookie_x_foo and cookie_X_Foo differ)
      const name = checkedName(hashOn, key);
      return (request) => request.cookie(name);
    }
    case 'consumer':
      return (request) => request.consumerName;
    case 'vars_combinations':
      if (key === undefined || key === '') throw keyError('required when hash_on is vars_combinations');
      return compileCombination(key);
    default:
      throw new PorticoError(ErrorCode.SEMANTIC, `/hash_on: unknown value "${hashOn}"`);
  }
}

function checkedName(hashOn: string, key: string | undefined): string {
  if (key === undefined) throw keyError(`required when hash_on is ${hashOn}`);
  if (!NAME_PATTERN.test(key)) throw keyError(`"${key}" is not a valid ${hashOn} name (must match ^[a-zA-Z0-9-_]+$)`);
  return key;
}

/** The reader of one nginx variable over a PickRequest; throws for a name Portico cannot provide. */
function compileVar(name: string): KeyReader {
  switch (name) {
    case 'remote_addr':
      return (request) => request.clientAddress;
    case 'uri':
      return (request) => request.path;
    case 'request_uri':
      // nginx's $request_uri: the path as sent (re-escaped from the normalized one) plus the query
      return (request) => (request.query === '' ? escapeUri(request.path) : `${escapeUri(request.path)}?${request.query}`);
    case 'host':
      return (request) => request.host;
    case 'hostname': {
      const hostname = os.hostname();
      return () => hostname;
    }
    case 'args':
    case 'query_string':
      return (request) => request.query;
    case 'request_method':
      return (request) => request.method;
    case 'consumer_name':
      return (request) => request.consumerName;
    default:
      break;
  }
  if (name.startsWith('arg_') && name.length > 4) {
    const arg = name.slice(4);
    return (request) => request.arg(arg);
  }
  if (name.startsWith('cookie_') && name.length > 7) {
    const cookie = name.slice(7);
    return (request) => request.cookie(cookie);
  }
  if (name.startsWith('http_') && name.length > 5) {
    const header = name.slice(5).toLowerCase().replaceAll('_', '-');
    return (request) => request.header(header);
  }
  // server_name, server_addr and remote_port are APISIX vars too, but a balancer does not see them
  throw keyError(`unsupported variable "${name}"; supported: ${SUPPORTED_VARS}`);
}

// core.utils.resolve_var's references: `$name` or `${name}` / `${name ?? default}`, not after a backslash
const VAR_REF = /(?<!\\)\$(?:\{\s*([^}]+?)\s*\}|(\w+))/g;

/**
 * A vars_combinations template (`$remote_addr$uri`, `${http_x_user}-$arg_id`). As in APISIX, an
 * absent variable reads as '', and when none of them had a value the key is absent (→ the client
 * address), so a template of absent parts does not send every such request to one node.
 */
function compileCombination(template: string): KeyReader {
  const literals: string[] = [];
  const vars: { read: KeyReader; fallback: string | undefined }[] = [];
  let last = 0;
  for (const m of template.matchAll(VAR_REF)) {
    literals.push(template.slice(last, m.index));
    const spec = (m[1] ?? m[2])!;
    const defaultAt = spec.indexOf('??');
    const name = defaultAt === -1 ? spec : spec.slice(0, defaultAt).trim();
    const fallback = defaultAt === -1 ? undefined : spec.slice(defaultAt + 2).trim();
    vars.push({ read: compileVar(name), fallback });
    last = m.index + m[0].length;
  }
  const tail = template.slice(last);
  // no variable at all: resolve_var resolves none, so APISIX hashes the client address
  if (vars.length === 0) return () => undefined;
  return (request) => {
    let out = '';
    let resolved = 0;
    for (let i = 0; i < vars.length; i++) {
      const { read, fallback } = vars[i]!;
      const value = read(request) ?? fallback;
      if (value !== undefined) resolved++;
      out += literals[i]! + (value ?? '');
    }
    return resolved === 0 ? undefined : out + tail;
  };
}
