import { IpMatcher, parseIp } from './ip.ts';

/**
 * The stream (L4) router: which stream route a new TCP connection or a UDP client's first datagram
 * belongs to. Semantics of APISIX's apisix/stream/router/ip_port.lua:
 *
 *  - A route compares only what it sets: `remote_addr` (the client's address, IP or CIDR),
 *    `server_addr` (the local address the connection arrived at, IP or CIDR), `server_port` (the
 *    local port), and `sni`. A route with none of them matches every connection.
 *  - Routes with an `sni` only ever match connections that sent that SNI (TLS). They are tried
 *    first: the exact name's routes, then wildcard names from the longest suffix to the shortest
 *    (`*.b.test.com` before `*.test.com`, the catch-all `*` last), as APISIX's radixtree over the
 *    reversed name does. `*.test.com` matches `a.test.com` and `a.b.test.com` (not `test.com`): the
 *    stream router only picks a route, it does not check a certificate.
 *  - When no SNI route matches (or the connection has no SNI), the routes without `sni` are tried.
 *  - Among candidates of one step, the first in the order given wins (APISIX: the order of its
 *    config table, i.e. etcd key order; pass routes in a stable order, e.g. as the store lists them).
 *  - Addresses as Node reports them on a dual-stack socket (`::ffff:127.0.0.1`) match IPv4 rules
 *    (`127.0.0.1`, `127.0.0.0/8`), and IPv4-mapped rules match plain IPv4 addresses (IpMatcher).
 *  - A route whose `protocol.superior_id` is set is a subordinate xRPC route: never matched here.
 *
 * Built once per change of the stream routes (rules parsed, SNIs lower-cased); match() does no
 * parsing beyond the two addresses of the connection.
 */

/** What the router reads of a stream route: the APISIX fields (a StreamRouteConfig fits). */
export interface StreamRouteRules {
  remote_addr?: string;
  server_addr?: string;
  server_port?: number;
  sni?: string;
  protocol?: { superior_id?: string | number };
}

/** The connection (or first datagram) being routed, as the listener sees it. */
export interface StreamConnection {
  /** local address the client connected to (socket.localAddress) */
  serverAddr: string;
  /** local port (socket.localPort) */
  serverPort: number;
  /** the client's address (socket.remoteAddress / rinfo.address) */
  remoteAddr: string;
  /** the TLS SNI, when the listener terminates TLS and the client sent one */
  sni?: string;
}

interface Compiled<R> {
  route: R;
  remote: IpMatcher | undefined;
  server: IpMatcher | undefined;
  port: number | undefined;
}

export class StreamRouter<R extends StreamRouteRules> {
  /** routes whose sni is an exact name, by lower-cased name */
  private readonly exact = new Map<string, Compiled<R>[]>();
  /** wildcard sni routes grouped by suffix (`*.test.com` → `.test.com`, `*` → ''), longest suffix first */
  private readonly wildcards: { suffix: string; routes: Compiled<R>[] }[] = [];
  private readonly plain: Compiled<R>[] = [];
  readonly size: number;

  /**
   * Throws (with the field in the message) on an address that is not an IP or CIDR; the validator
   * rejects those first (streamRouteProblem), so a throw here means unvalidated input.
   */
  constructor(routes: Iterable<R>) {
    const bySuffix = new Map<string, Compiled<R>[]>();
    let size = 0;
    for (const route of routes) {
      if (route.protocol?.superior_id !== undefined) continue;
      size++;
      const compiled: Compiled<R> = {
        route,
        remote: route.remote_addr === undefined ? undefined : compileIp(route.remote_addr, 'remote_addr'),
        server: route.server_addr === undefined ? undefined : compileIp(route.server_addr, 'server_addr'),
        port: route.server_port,
      };
      if (route.sni === undefined) {
        this.plain.push(compiled);
        continue;
      }
      const sni = route.sni.toLowerCase();
      if (sni.startsWith('*')) push(bySuffix, sni.slice(1), compiled);
      else push(this.exact, sni, compiled);
    }
    this.size = size;
    for (const [suffix, list] of bySuffix) this.wildcards.push({ suffix, routes: list });
    this.wildcards.sort((a, b) => b.suffix.length - a.suffix.length);
  }

  /** The route for this connection, or undefined (APISIX then closes the connection). */
  match(conn: StreamConnection): R | undefined {
    // parsed once per connection, not once per route
    const remote = parseIp(conn.remoteAddr);
    const server = parseIp(conn.serverAddr);
    const sni = conn.sni;
    if (sni !== undefined && sni !== '' && (this.exact.size > 0 || this.wildcards.length > 0)) {
      const name = sni.toLowerCase();
      const exact = this.exact.get(name);
      if (exact !== undefined) {
        const hit = first(exact, remote, server, conn.serverPort);
        if (hit !== undefined) return hit;
      }
      for (const { suffix, routes } of this.wildcards) {
        if (name.length <= suffix.length || !name.endsWith(suffix)) continue;
        const hit = first(routes, remote, server, conn.serverPort);
        if (hit !== undefined) return hit;
      }
    }
    return first(this.plain, remote, server, conn.serverPort);
  }
}

type Parsed = ReturnType<typeof parseIp>;

function first<R>(routes: readonly Compiled<R>[], remote: Parsed, server: Parsed, port: number): R | undefined {
  for (const c of routes) {
    // an address that cannot be parsed matches no rule that sets one (as ipmatcher:match fails)
    if (c.remote !== undefined && (remote === undefined || !c.remote.matchesParsed(remote))) continue;
    if (c.server !== undefined && (server === undefined || !c.server.matchesParsed(server))) continue;
    if (c.port !== undefined && c.port !== port) continue;
    return c.route;
  }
  return undefined;
}

function compileIp(entry: string, field: string): IpMatcher {
  try {
    return IpMatcher.compile([entry]);
  } catch (err) {
    throw new Error(`/${field}: ${(err as Error).message}`);
  }
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}
