import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { ErrorCode, PorticoError } from '../../errors.ts';

/**
 * DNS discovery, the APISIX way (`discovery_type: dns`, `service_name: "host[:port]"`), on node's
 * c-ares resolver. Two layers:
 * - DnsResolver answers one question now: the addresses of a name, or the nodes of a service.
 * - DnsWatcher keeps answers fresh: it re-resolves each watched name by its TTL and tells its
 *   subscribers only when the answer changes, keeping the last good answer through failures.
 * Neither knows about upstreams or the config store; the caller turns nodes into UpstreamNodes.
 */

export interface DnsOptions {
  /** "ip" or "ip:port" ("[v6]:port"); undefined: the system's (resolv.conf) */
  servers?: string[];
  /** seconds: the shortest re-resolution interval, and the first retry after a failure */
  minTtl: number;
  /** seconds: the longest re-resolution interval, and the cap of the failure backoff */
  maxTtl: number;
  /**
   * ms, the first attempt's timeout; c-ares doubles it at each retry, so a server that never
   * answers fails a query after about timeoutMs * (2^tries - 1)
   */
  timeoutMs: number;
  /** attempts per query (per server) before c-ares gives up with ETIMEOUT */
  tries: number;
}

export const DEFAULT_DNS_OPTIONS: Readonly<DnsOptions> = Object.freeze({ minTtl: 1, maxTtl: 300, timeoutMs: 2000, tries: 2 });

/** A node found by discovery; `host` is always an IP address. */
export interface ResolvedNode {
  host: string;
  port: number;
  weight: number;
  /** APISIX's node priority: higher is tried first; SRV priority p becomes -p */
  priority: number;
}

export interface HostResolution {
  /** sorted, no duplicates */
  addresses: string[];
  /** seconds; the smallest TTL of the records used; Infinity for an IP literal */
  ttl: number;
}

export interface ServiceResolution {
  /** sorted by priority (highest first), then host, then port */
  nodes: ResolvedNode[];
  /** seconds; the smallest TTL of the address records used; Infinity for an IP literal */
  ttl: number;
}

/** Codes of the errors this module throws (src/errors.ts's). */
export const DnsErrorCode = {
  /** the name exists nowhere we looked: NXDOMAIN, or no A/AAAA (or SRV) records */
  NO_RECORDS: ErrorCode.DNS_NO_RECORDS,
  /** the DNS server failed (SERVFAIL, REFUSED, timeout, unreachable, bad answer): the name's state is unknown */
  FAILED: ErrorCode.DNS_FAILED,
  /** DnsWatcher.ready(): no answer within the bound the caller gave */
  NOT_READY: ErrorCode.DNS_NOT_READY,
} as const;
export type DnsErrorCode = (typeof DnsErrorCode)[keyof typeof DnsErrorCode];

export class DnsError extends Error {
  readonly code: DnsErrorCode;
  /** the name asked about */
  readonly hostname: string;
  /** c-ares' code (ENOTFOUND, ESERVFAIL, ETIMEOUT, ...), when one caused this */
  readonly dnsCode: string | undefined;
  constructor(code: DnsErrorCode, hostname: string, message: string, dnsCode?: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DnsError';
    this.code = code;
    this.hostname = hostname;
    this.dnsCode = dnsCode;
  }
}

/** c-ares codes meaning "the server answered: nothing of this type here". */
const NO_DATA_CODES = new Set(['ENODATA', 'ENOTFOUND']);

/**
 * One resolver (one c-ares channel) with the configured servers, timeout and tries.
 * Every call queries the servers: caching is the watcher's job, by TTL.
 */
export class DnsResolver {
  readonly options: Readonly<DnsOptions>;
  readonly #resolver: Resolver;

  constructor(options: Partial<DnsOptions> = {}) {
    const merged: DnsOptions = { ...DEFAULT_DNS_OPTIONS, ...withoutUndefined(options) };
    checkOptions(merged);
    this.options = Object.freeze(merged);
    this.#resolver = new Resolver({ timeout: merged.timeoutMs, tries: merged.tries });
    if (merged.servers) {
      try {
        this.#resolver.setServers(merged.servers);
      } catch (err) {
        throw new PorticoError(ErrorCode.CONFIG_INVALID, `discovery.dns.servers: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /**
   * A and AAAA of `name`, asked in parallel, as one sorted set. An IP literal is its own answer
   * (ttl Infinity) without a query. One family without records is normal; both without records
   * throws NO_RECORDS. Any server failure on either family throws FAILED rather than answering
   * with the other family alone: a half answer would look like a change and move traffic.
   */
  async resolveHost(name: string): Promise<HostResolution> {
    const literal = ipLiteral(name);
    if (literal) return { addresses: [literal], ttl: Infinity };
    const [v4, v6] = await Promise.all([this.#v4(name), this.#v6(name)]);
    return addressSet(name, [...v4, ...v6]);
  }

  /**
   * APISIX's order for discovery (SRV, then A, then AAAA): the A records, and the AAAA records
   * only when there is no A record (APISIX t/discovery/dns/sanity.t "prefer A to AAAA").
   */
  async #resolveHostPreferringA(name: string): Promise<HostResolution> {
    const literal = ipLiteral(name);
    if (literal) return { addresses: [literal], ttl: Infinity };
    const v4 = await this.#v4(name);
    return addressSet(name, v4.length > 0 ? v4 : await this.#v6(name));
  }

  #v4(name: string): Promise<Array<{ address: string; ttl: number }>> {
    return this.#records(name, 'A', () => this.#resolver.resolve4(name, { ttl: true }));
  }

  #v6(name: string): Promise<Array<{ address: string; ttl: number }>> {
    return this.#records(name, 'AAAA', () => this.#resolver.resolve6(name, { ttl: true }));
  }

  /**
   * APISIX's `discovery_type: dns` nodes of `service_name` ("host" or "host:port"):
   * - SRV records of host first. Each target's addresses become nodes with the SRV port (a port in
   *   service_name overrides it; SRV port 0 falls back to `defaultPort`), priority -srv.priority
   *   (lower SRV priority is tried first), and APISIX's weights: SRV weight 0 counts as 1, a
   *   target's weight is split over its addresses and all weights are scaled by the LCM of the
   *   address counts so they stay integers.
   * - No SRV records (NXDOMAIN/NODATA): the A addresses of host (AAAA only when there is no A,
   *   APISIX's SRV, A, AAAA order), weight 1, priority 0, port from service_name or `defaultPort`.
   *   SRV targets resolve the same way.
   * Like APISIX, any SRV target that does not resolve fails the whole answer. TTL: node does not
   * expose an SRV record's TTL, so it is the smallest TTL of the address records used; the SRV
   * set is asked again at every re-resolution anyway.
   */
  async resolveService(serviceName: string, defaultPort: number): Promise<ServiceResolution> {
    const { host, port } = parseServiceName(serviceName);
    const literal = ipLiteral(host);
    if (literal) return { nodes: [{ host: literal, port: port ?? defaultPort, weight: 1, priority: 0 }], ttl: Infinity };

    const srv = await this.#records(host, 'SRV', () => this.#resolver.resolveSrv(host));
    // RFC 2782: a single SRV record with target "." says the service is decidedly not available
    const targets = srv.filter((r) => r.name !== '' && r.name !== '.');
    if (srv.length > 0 && targets.length === 0) {
      throw new DnsError(DnsErrorCode.NO_RECORDS, host, `DNS: ${host}: SRV says the service is not available (target ".")`);
    }
    if (targets.length === 0) {
      const { addresses, ttl } = await this.#resolveHostPreferringA(host);
      return { nodes: sortNodes(addresses.map((a) => ({ host: a, port: port ?? defaultPort, weight: 1, priority: 0 }))), ttl };
    }

    const resolved = await Promise.all(
      targets.map(async (r) => {
        try {
          return await this.#resolveHostPreferringA(r.name);
        } catch (err) {
          const e = err as DnsError;
          throw new DnsError(e.code ?? DnsErrorCode.FAILED, host, `DNS: ${host}: SRV target ${e.message.replace(/^DNS: /, '')}`, e.dnsCode, { cause: err });
        }
      }),
    );
    const lcm = resolved.reduce((acc, r) => leastCommonMultiple(acc, r.addresses.length), 1);
    const byKey = new Map<string, ResolvedNode>();
    targets.forEach((r, i) => {
      const { addresses } = resolved[i]!;
      const weight = (r.weight === 0 ? 1 : r.weight) * (lcm / addresses.length);
      const priority = r.priority === 0 ? 0 : -r.priority; // no -0: nodes compare with Object.is in places
      const nodePort = port ?? (r.port !== 0 ? r.port : defaultPort);
      for (const address of addresses) {
        // two SRV records can lead to one address: one node, at the better priority, weights summed
        const key = `${address} ${nodePort}`;
        const seen = byKey.get(key);
        if (!seen || seen.priority < priority) byKey.set(key, { host: address, port: nodePort, weight, priority });
        else if (seen.priority === priority) seen.weight += weight;
      }
    });
    return { nodes: sortNodes([...byKey.values()]), ttl: Math.min(...resolved.map((r) => r.ttl)) };
  }

  /** Cancels every query in flight; they reject with ECANCELLED (reported as FAILED). */
  cancel(): void {
    this.#resolver.cancel();
  }

  /** Runs one query; "no records of this type" is an empty list, anything else a DnsError. */
  async #records<T>(name: string, type: string, query: () => Promise<T[]>): Promise<T[]> {
    try {
      return await query();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'UNKNOWN';
      if (NO_DATA_CODES.has(code)) return [];
      throw new DnsError(DnsErrorCode.FAILED, name, `DNS: ${name}: ${type} query failed: ${code}`, code, { cause: err });
    }
  }
}

export type DnsQuery = { kind: 'host'; name: string } | { kind: 'service'; serviceName: string; defaultPort: number };
export type DnsAnswer = ({ kind: 'host' } & HostResolution) | ({ kind: 'service' } & ServiceResolution);

export interface DnsWatchState {
  id: string;
  query: DnsQuery;
  /** the last good answer (kept through failures); undefined until the first success */
  answer: DnsAnswer | undefined;
  /** ms since epoch of the last good answer */
  resolvedAt: number | undefined;
  /** ms since epoch of the next resolution; undefined when none is due (IP literal) */
  nextAt: number | undefined;
  /** the last resolution's failure, cleared by the next success */
  error: { code: string; message: string; at: number } | undefined;
}

interface Resolution {
  key: string;
  query: DnsQuery;
  subscribers: Map<string, (answer: DnsAnswer) => void>;
  answer: DnsAnswer | undefined;
  /** the answer's identity, to tell a change from a repeat */
  fingerprint: string | undefined;
  resolvedAt: number | undefined;
  nextAt: number | undefined;
  error: DnsError | undefined;
  errorAt: number | undefined;
  /** consecutive failures, for the backoff */
  failures: number;
  timer: NodeJS.Timeout | undefined;
  inflight: Promise<void> | undefined;
}

/**
 * Keeps watched names resolved. The model: one Resolution per distinct question (a host, or a
 * service name with its default port), shared by every watch id that asks it. A Resolution holds
 * the last good answer and when to ask again:
 * - success: the answer is kept; subscribers hear of it only if it differs from the previous one
 *   (and a new subscriber hears the current one once); next resolution after the TTL clamped to
 *   [minTtl, maxTtl] (never, for an IP literal).
 * - failure: the last good answer stays in force and nobody is told; the error shows in state();
 *   retry after minTtl, doubling per consecutive failure up to maxTtl. A DNS outage must not
 *   empty an upstream: the previous nodes are a better guess than none.
 * Timers are unref()ed: a watcher never keeps the process alive.
 */
export class DnsWatcher {
  readonly #resolver: DnsResolver;
  readonly #ownsResolver: boolean;
  readonly #byKey = new Map<string, Resolution>();
  readonly #byId = new Map<string, Resolution>();
  #stopped = false;

  constructor(resolver: DnsResolver | Partial<DnsOptions> = {}) {
    this.#ownsResolver = !(resolver instanceof DnsResolver);
    this.#resolver = resolver instanceof DnsResolver ? resolver : new DnsResolver(resolver);
  }

  /**
   * Starts (or joins) the resolution of `query` under `id`, resolving now if it is new. `onChange`
   * is called with the first answer and then with every different one. Watching an id again
   * replaces its previous watch.
   */
  watch(id: string, query: DnsQuery, onChange: (answer: DnsAnswer) => void): void {
    if (this.#stopped) throw new Error('DnsWatcher: stopped');
    this.unwatch(id);
    const key = queryKey(query);
    let resolution = this.#byKey.get(key);
    if (!resolution) {
      resolution = {
        key, query, subscribers: new Map(), answer: undefined, fingerprint: undefined, resolvedAt: undefined,
        nextAt: undefined, error: undefined, errorAt: undefined, failures: 0, timer: undefined, inflight: undefined,
      };
      this.#byKey.set(key, resolution);
      this.#byId.set(id, resolution);
      resolution.subscribers.set(id, onChange);
      this.#resolve(resolution);
      return;
    }
    this.#byId.set(id, resolution);
    resolution.subscribers.set(id, onChange);
    const current = resolution.answer;
    if (current) {
      // a joiner hears the current answer once, but not from inside watch()
      queueMicrotask(() => {
        if (resolution.subscribers.get(id) === onChange && resolution.answer === current) notify(onChange, current, id);
      });
    }
  }

  /** Stops watching under `id`; the resolution stops when its last watcher leaves. */
  unwatch(id: string): void {
    const resolution = this.#byId.get(id);
    if (!resolution) return;
    this.#byId.delete(id);
    resolution.subscribers.delete(id);
    if (resolution.subscribers.size === 0) {
      clearTimeout(resolution.timer);
      resolution.timer = undefined;
      this.#byKey.delete(resolution.key);
    }
  }

  /**
   * The first answer for `id`, waiting at most `timeoutMs`. Resolves with the current answer if
   * there is one; rejects with the resolution's error if the attempt failed before any success,
   * with NOT_READY when the bound passes first. A caller that prefers to start with no nodes can
   * catch and rely on onChange for the answer when it comes.
   */
  async ready(id: string, timeoutMs: number = worstCaseMs(this.#resolver.options)): Promise<DnsAnswer> {
    const resolution = this.#byId.get(id);
    if (!resolution) throw new Error(`DnsWatcher: no watch "${id}"`);
    if (!resolution.answer && resolution.inflight) {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
      await Promise.race([resolution.inflight, bound]);
      clearTimeout(timer);
    }
    if (resolution.answer) return resolution.answer;
    if (resolution.error) throw resolution.error;
    if (this.#byId.get(id) !== resolution) throw new Error(`DnsWatcher: watch "${id}" ended before its first answer`);
    const name = queryName(resolution.query);
    throw new DnsError(DnsErrorCode.NOT_READY, name, `DNS: ${name}: no answer within ${timeoutMs} ms`);
  }

  state(): DnsWatchState[] {
    return [...this.#byId].map(([id, r]) => ({
      id,
      query: r.query,
      answer: r.answer,
      resolvedAt: r.resolvedAt,
      nextAt: r.nextAt,
      error: r.error ? { code: r.error.code, message: r.error.message, at: r.errorAt! } : undefined,
    }));
  }

  /** Cancels every timer (and the queries in flight, if this watcher made its resolver). */
  stop(): void {
    this.#stopped = true;
    for (const resolution of this.#byKey.values()) clearTimeout(resolution.timer);
    this.#byKey.clear();
    this.#byId.clear();
    if (this.#ownsResolver) this.#resolver.cancel();
  }

  #resolve(resolution: Resolution): void {
    resolution.timer = undefined;
    resolution.nextAt = undefined;
    const done = this.#ask(resolution.query).then(
      (answer) => this.#succeeded(resolution, answer),
      (err: unknown) => this.#failed(resolution, err),
    );
    // the handlers clear it: ready() waits on this, and it settles after they ran
    resolution.inflight = done;
  }

  #ask(query: DnsQuery): Promise<DnsAnswer> {
    return query.kind === 'host'
      ? this.#resolver.resolveHost(query.name).then((r) => ({ kind: 'host' as const, ...r }))
      : this.#resolver.resolveService(query.serviceName, query.defaultPort).then((r) => ({ kind: 'service' as const, ...r }));
  }

  #live(resolution: Resolution): boolean {
    return !this.#stopped && this.#byKey.get(resolution.key) === resolution;
  }

  #succeeded(resolution: Resolution, answer: DnsAnswer): void {
    resolution.inflight = undefined;
    if (!this.#live(resolution)) return;
    resolution.failures = 0;
    resolution.error = undefined;
    resolution.errorAt = undefined;
    resolution.resolvedAt = Date.now();
    const { minTtl, maxTtl } = this.#resolver.options;
    if (Number.isFinite(answer.ttl)) this.#schedule(resolution, Math.min(Math.max(answer.ttl, minTtl), maxTtl));
    const fingerprint = fingerprintOf(answer);
    if (fingerprint === resolution.fingerprint) return;
    resolution.fingerprint = fingerprint;
    resolution.answer = answer;
    for (const [id, onChange] of [...resolution.subscribers]) notify(onChange, answer, id);
  }

  #failed(resolution: Resolution, err: unknown): void {
    resolution.inflight = undefined;
    if (!this.#live(resolution)) return;
    const name = queryName(resolution.query);
    resolution.error =
      err instanceof DnsError ? err : new DnsError(DnsErrorCode.FAILED, name, `DNS: ${name}: ${(err as Error)?.message ?? String(err)}`, undefined, { cause: err });
    resolution.errorAt = Date.now();
    resolution.failures++;
    const { minTtl, maxTtl } = this.#resolver.options;
    this.#schedule(resolution, Math.min(minTtl * 2 ** (resolution.failures - 1), maxTtl));
  }

  #schedule(resolution: Resolution, seconds: number): void {
    resolution.nextAt = Date.now() + seconds * 1000;
    resolution.timer = setTimeout(() => this.#resolve(resolution), seconds * 1000);
    resolution.timer.unref();
  }
}

/** A subscriber that throws must not stop the others nor the watcher: it becomes a process warning. */
function notify(onChange: (answer: DnsAnswer) => void, answer: DnsAnswer, id: string): void {
  try {
    onChange(answer);
  } catch (err) {
    process.emitWarning(`DnsWatcher: onChange of "${id}" threw: ${(err as Error)?.stack ?? String(err)}`);
  }
}

function queryKey(query: DnsQuery): string {
  return query.kind === 'host' ? `host ${query.name.toLowerCase()}` : `service ${query.serviceName.toLowerCase()} ${query.defaultPort}`;
}

function queryName(query: DnsQuery): string {
  return query.kind === 'host' ? query.name : query.serviceName;
}

/** Equal for equal sets: addresses and nodes are sorted by the resolver; TTL is not part of it. */
function fingerprintOf(answer: DnsAnswer): string {
  return answer.kind === 'host'
    ? answer.addresses.join(' ')
    : answer.nodes.map((n) => `${n.host} ${n.port} ${n.weight} ${n.priority}`).join(',');
}

function sortNodes(nodes: ResolvedNode[]): ResolvedNode[] {
  return nodes.sort((a, b) => b.priority - a.priority || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0) || a.port - b.port);
}

/** How long a resolution can take when the server never answers (c-ares doubles the timeout per retry), plus a second. */
function worstCaseMs(o: Readonly<DnsOptions>): number {
  return o.timeoutMs * (2 ** o.tries - 1) + 1000;
}

function addressSet(name: string, records: Array<{ address: string; ttl: number }>): HostResolution {
  if (records.length === 0) throw new DnsError(DnsErrorCode.NO_RECORDS, name, `DNS: ${name}: no A or AAAA records`, 'ENOTFOUND');
  return { addresses: [...new Set(records.map((r) => r.address))].sort(), ttl: Math.min(...records.map((r) => r.ttl)) };
}

/** The address itself if `name` is an IP literal ("[v6]" accepted), else undefined. */
function ipLiteral(name: string): string | undefined {
  const bare = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
  return isIP(bare) ? bare : undefined;
}

/**
 * APISIX's parse_addr: "host", "host:port", "[v6]", "[v6]:port"; a bare IPv6 address has no
 * port. A port that is not 1-65535 is a config error.
 */
export function parseServiceName(serviceName: string): { host: string; port: number | undefined } {
  let host = serviceName;
  let portText: string | undefined;
  if (serviceName.startsWith('[')) {
    const close = serviceName.indexOf(']');
    if (close !== -1) {
      host = serviceName.slice(1, close);
      const rest = serviceName.slice(close + 1);
      if (rest.startsWith(':')) portText = rest.slice(1);
      else if (rest !== '') throw badServiceName(serviceName, 'expected ":port" after "]"');
    }
  } else {
    const colon = serviceName.lastIndexOf(':');
    if (colon !== -1 && serviceName.indexOf(':') === colon) {
      host = serviceName.slice(0, colon);
      portText = serviceName.slice(colon + 1);
    }
  }
  if (host === '') throw badServiceName(serviceName, 'empty host');
  if (portText === undefined) return { host, port: undefined };
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) throw badServiceName(serviceName, 'port must be 1-65535');
  return { host, port };
}

function badServiceName(serviceName: string, rule: string): PorticoError {
  return new PorticoError(ErrorCode.SEMANTIC, `/service_name: ${JSON.stringify(serviceName)}: ${rule}`);
}

function checkOptions(o: DnsOptions): void {
  const bad = (field: string, rule: string) => new PorticoError(ErrorCode.CONFIG_INVALID, `discovery.dns.${field}: ${rule}`);
  if (!(o.minTtl > 0)) throw bad('minTtl', 'must be > 0');
  if (!(o.maxTtl >= o.minTtl)) throw bad('maxTtl', 'must be >= minTtl');
  if (!(Number.isInteger(o.timeoutMs) && o.timeoutMs > 0)) throw bad('timeoutMs', 'must be an integer > 0');
  if (!(Number.isInteger(o.tries) && o.tries >= 1)) throw bad('tries', 'must be an integer >= 1');
  if (o.servers !== undefined && o.servers.length === 0) throw bad('servers', 'must not be empty (omit it for the system resolver)');
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function leastCommonMultiple(a: number, b: number): number {
  let x = a;
  let y = b;
  while (y !== 0) [x, y] = [y, x % y];
  return (a / x) * b;
}
