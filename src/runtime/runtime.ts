import type { Kind } from '../config/changeset.ts';
import type { RouteConfig } from '../config/schema/route.ts';
import type { ServiceConfig } from '../config/schema/service.ts';
import type { UpstreamConfig } from '../config/schema/upstream.ts';
import type { Snapshot, SnapshotDiff } from '../config/snapshot.ts';
import { Router } from '../router/router.ts';
import type { MatchRequest, RouteMatch, RouterMode } from '../router/types.ts';
import { routeSpec } from '../config/route-spec.ts';
import { log } from '../observability/log.ts';
import { compileTimeout, compileUpstream } from './upstream.ts';
import type { UpstreamTarget } from '../upstream/types.ts';
import { HealthBook } from '../upstream/health/book.ts';
import type { DiscoveredNodes } from '../upstream/discovery/upstream-nodes.ts';
import { takeValidatedMatcher } from './compile.ts';
import type { CompileFailure, CompiledRoute, RouteTable } from './types.ts';
import { PluginChain } from '../plugins/chain.ts';
import { Consumers, NO_CONSUMERS } from '../plugins/consumers.ts';
import type { PluginConfigConfig } from '../config/schema/plugin-config.ts';
import { SniTable, SslEntry } from '../server/tls/sni-table.ts';
import { storedKeyPem } from '../config/data-encryption.ts';
import { StreamRouter, type StreamRouteRules } from '../router/stream.ts';
import { streamUpstreamForCompile, type StreamRouteConfig } from '../config/schema/stream-route.ts';
import { streamIdleTimeout } from '../proxy/stream/tcp.ts';
import { udpIdleTimeout } from '../proxy/stream/udp.ts';

/** Holds the upstream in force for one upstream object; routes keep the slot, not the target. */
interface UpstreamSlot {
  target: UpstreamTarget | undefined;
  /** what it was compiled from (recompiled from it when DNS finds other nodes) */
  config: UpstreamConfig | undefined;
}

class Route implements CompiledRoute {
  private derived: { from: UpstreamTarget; target: UpstreamTarget } | undefined;
  constructor(
    readonly id: string,
    private readonly slot: UpstreamSlot | undefined,
    /** route-level timeout (APISIX `route.timeout`) overrides the upstream's */
    private readonly timeout: UpstreamTarget['timeout'] | undefined,
    readonly chain: PluginChain | undefined,
    readonly websocket: boolean,
    readonly serviceId: string | undefined,
  ) {}

  get upstream(): UpstreamTarget | undefined {
    const target = this.slot?.target;
    if (!target || !this.timeout) return target;
    if (this.derived?.from !== target) this.derived = { from: target, target: { ...target, timeout: this.timeout } };
    return this.derived.target;
  }
}

/**
 * A stream route as the L4 listeners use it: the router's rules, and the upstream (a slot: an
 * upstream object's, its service's, or its own inline one) with the session idle times.
 */
export class StreamRoute implements StreamRouteRules {
  readonly remote_addr?: string;
  readonly server_addr?: string;
  readonly server_port?: number;
  readonly sni?: string;
  constructor(
    readonly id: string,
    config: StreamRouteConfig,
    private readonly slot: UpstreamSlot | undefined,
  ) {
    if (config.remote_addr !== undefined) this.remote_addr = config.remote_addr;
    if (config.server_addr !== undefined) this.server_addr = config.server_addr;
    if (config.server_port !== undefined) this.server_port = config.server_port;
    if (config.sni !== undefined) this.sni = config.sni;
  }

  get upstream(): UpstreamTarget | undefined {
    return this.slot?.target;
  }

  /** ms without a byte either way before a TCP session closes (nginx proxy_timeout, from the upstream in force) */
  get idleTimeout(): number {
    return streamIdleTimeout(this.slot?.config?.timeout);
  }

  /** ms of silence before a UDP session ends */
  get udpIdleTimeout(): number {
    return udpIdleTimeout(this.slot?.config?.timeout);
  }
}

/**
 * The data plane's view of a snapshot, updated incrementally: only routes whose version (or whose
 * service) changed touch the router, and an upstream whose nodes did not change keeps its balancer.
 * An upstream change swaps the target inside its slot, so the routes using it are not recompiled.
 */
export class Runtime implements RouteTable {
  private readonly router: Router<CompiledRoute>;
  private readonly slots = new Map<string, UpstreamSlot>();
  /** routes with an inline upstream of their own: slot "routes/<id>" (the others have no slot to drop) */
  private readonly routesWithSlot = new Set<string>();
  /** service id -> ids of routes that use it (their hosts, upstream and plugins come from it) */
  private readonly routesByService = new Map<string, Set<string>>();
  private readonly serviceOfRoute = new Map<string, string>();
  /** routes with their own `timeout`: they use targets (and so pools) of their own */
  private readonly routesWithTimeout = new Map<string, Route>();
  /** plugin_config id -> ids of routes that use it */
  private readonly routesByPluginConfig = new Map<string, Set<string>>();
  private readonly pluginConfigOfRoute = new Map<string, string>();
  /** the nodes DNS found, by upstream key (the instance's discovery sends them) */
  private readonly discovered = new Map<string, DiscoveredNodes>();
  globalChain: PluginChain | undefined;
  consumers: Consumers = NO_CONSUMERS;
  /** the stream routes in force, for the TCP/UDP listeners (rebuilt when one of them changes) */
  streamRouter = new StreamRouter<StreamRoute>([]);
  /** the stream routes in force, by id */
  readonly streamRoutes = new Map<string, StreamRoute>();
  /** the certificates TLS handshakes choose from, by SNI (ssls objects in force) */
  sniTable: SniTable;
  private readonly fallbackSni: string | undefined;

  constructor(
    readonly mode: RouterMode,
    /** the health of checked upstreams in this process (verdicts arrive from the health supervisor) */
    readonly health: HealthBook = new HealthBook(),
    /** the SNI a TLS client that sends none is served (APISIX's apisix.ssl.fallback_sni) */
    fallbackSni?: string,
  ) {
    this.router = new Router<CompiledRoute>(mode);
    this.fallbackSni = fallbackSni;
    this.sniTable = new SniTable([], { fallbackSni });
  }

  matchRoute(req: MatchRequest): RouteMatch<CompiledRoute> | undefined {
    return this.router.match(req);
  }

  /**
   * DNS found other nodes for an upstream: its target is recompiled with them (its balancer and
   * health state carried over for the nodes that stay). Returns false when nothing changed here.
   */
  setDiscovered(d: DiscoveredNodes): boolean {
    if (d.nodes === undefined) this.discovered.delete(d.upstream);
    else this.discovered.set(d.upstream, d);
    const slot = this.slots.get(d.upstream);
    if (slot?.config === undefined) return false;
    try {
      this.compileSlot(d.upstream, slot, slot.config);
    } catch (err) {
      // the config compiled before; only the nodes differ, and they are addresses
      log.error({ upstream: d.upstream, err: (err as Error).message }, 'discovered nodes not applied');
      return false;
    }
    return true;
  }

  /** Every upstream target requests can use (for pool retention), route-level timeouts included. */
  upstreamTargets(): UpstreamTarget[] {
    const out: UpstreamTarget[] = [];
    for (const s of this.slots.values()) if (s.target) out.push(s.target);
    for (const r of this.routesWithTimeout.values()) {
      const target = r.upstream;
      if (target) out.push(target);
    }
    return out;
  }

  /**
   * Compiles what changed. Never throws: the validator runs these same compile steps, so a failure
   * here is a bug, and it costs only its own object. An upstream that does not compile keeps its
   * previous target; a route that does not compile is taken out of the router. Each failure is
   * returned so that the store rejects the object (PORTICO_ERR_COMPILE, visible in /status) and the
   * snapshot, and the file written from it, stop holding it.
   */
  apply(snapshot: Snapshot, diff: SnapshotDiff): CompileFailure[] {
    const failures: CompileFailure[] = [];
    const guarded = (kind: Kind, id: string, step: () => void) => {
      try {
        step();
      } catch (err) {
        const modRevision = snapshot[kind].get(id)?.modRevision ?? snapshot.revision;
        const reason = `${kind}/${id}: ${(err as Error)?.message ?? String(err)}`;
        failures.push({ kind, id, modRevision, reason });
        log.error({ kind, id, err: reason }, 'object not compiled; it is rejected, the rest applies');
      }
    };
    for (const id of diff.upstreams) guarded('upstreams', id, () => this.updateSlot('upstreams', id, snapshot.upstreams.get(id)?.value));
    if (diff.ssls.size > 0) {
      // entries of unchanged objects (and their secure contexts) are kept; a changed one is new
      const put: SslEntry[] = [];
      const deleted: string[] = [];
      for (const id of diff.ssls) {
        const stored = snapshot.ssls.get(id);
        if (stored === undefined) deleted.push(id);
        else put.push(new SslEntry(id, stored.value, { decryptKey: storedKeyPem }));
      }
      this.sniTable = this.sniTable.withChanges(put, deleted, { fallbackSni: this.fallbackSni });
    }
    if (diff.consumers.size > 0) {
      this.consumers = new Consumers([...snapshot.consumers.values()].map((c) => ({ username: c.value.username, plugins: c.value.plugins ?? {}, labels: c.value.labels, desc: c.value.desc, groupId: c.value.group_id })));
    }
    if (diff.global_rules.size > 0) {
      const rules = [...snapshot.global_rules.values()].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
      for (const id of diff.global_rules) guarded('global_rules', id, () => {
        const rule = snapshot.global_rules.get(id)?.value;
        if (rule) PluginChain.compile([[rule.plugins, { kind: 'global_rules', id }]]);
      });
      try {
        this.globalChain = PluginChain.compile(rules.map((r) => [r.value.plugins, { kind: 'global_rules', id: r.id }] as const));
      } catch (err) {
        // each rule compiled above on its own; a failure here leaves the previous chain in force
        log.error({ err: (err as Error).message }, 'global rules not compiled; the previous ones stay in force');
      }
    }
    const routes = new Set(diff.routes);
    for (const id of diff.plugin_configs) for (const r of this.routesByPluginConfig.get(id) ?? []) routes.add(r);
    for (const id of diff.services) {
      guarded('services', id, () => this.updateSlot('services', id, snapshot.services.get(id)?.value.upstream));
      for (const r of this.routesByService.get(id) ?? []) routes.add(r);
    }
    if (diff.stream_routes.size > 0 || (diff.services.size > 0 && this.streamRoutes.size > 0)) {
      const changed = new Set(diff.stream_routes);
      // a service's upstream_id decides which slot its stream routes use
      if (diff.services.size > 0) for (const [id, s] of snapshot.stream_routes) if (s.value.service_id !== undefined && diff.services.has(String(s.value.service_id))) changed.add(id);
      for (const id of changed) guarded('stream_routes', id, () => this.updateStreamRoute(snapshot, id));
      // (a service's inline upstream is its slot: stream routes using it follow without a rebuild)
      const ordered = [...this.streamRoutes.values()].sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
      this.streamRouter = new StreamRouter(ordered);
    }
    for (const id of routes) {
      guarded('routes', id, () => {
        try {
          this.updateRoute(snapshot, id);
        } catch (err) {
          this.router.remove(id);
          this.routesWithTimeout.delete(id);
          throw err;
        }
      });
    }
    return failures;
  }

  private updateSlot(kind: Kind, id: string, config: UpstreamConfig | undefined): void {
    const key = `${kind}/${id}`;
    let slot = this.slots.get(key);
    if (!config) {
      if (slot) slot.target = undefined;
      this.slots.delete(key);
      this.health.drop(key);
      return;
    }
    slot ??= this.slot(key);
    this.compileSlot(key, slot, config);
  }

  /** Compiles `config` into the slot, with the nodes DNS found for it and its health state. */
  private compileSlot(key: string, slot: UpstreamSlot, config: UpstreamConfig): void {
    // compiled before the assignment: a throw leaves the previous target serving
    slot.target = compileUpstream(key, config, slot.target, this.health, this.discovered.get(key));
    slot.config = config;
  }

  private slot(key: string): UpstreamSlot {
    let slot = this.slots.get(key);
    if (!slot) this.slots.set(key, (slot = { target: undefined, config: undefined }));
    return slot;
  }

  private updateStreamRoute(snapshot: Snapshot, id: string): void {
    const stored = snapshot.stream_routes.get(id);
    const inline = stored?.value.upstream;
    this.updateSlot('stream_routes', id, inline && streamUpstreamForCompile(inline));
    if (stored === undefined) {
      this.streamRoutes.delete(id);
      return;
    }
    const r = stored.value;
    let slot: UpstreamSlot | undefined;
    if (inline) slot = this.slots.get(`stream_routes/${id}`);
    else if (r.upstream_id !== undefined) slot = this.slot(`upstreams/${r.upstream_id}`);
    else if (r.service_id !== undefined) {
      const service = snapshot.services.get(String(r.service_id))?.value;
      slot = this.slot(service?.upstream_id !== undefined ? `upstreams/${service.upstream_id}` : `services/${r.service_id}`);
    }
    this.streamRoutes.set(id, new StreamRoute(id, r, slot));
  }

  private updateRoute(snapshot: Snapshot, id: string): void {
    const stored = snapshot.routes.get(id);
    const oldService = this.serviceOfRoute.get(id);
    if (oldService !== undefined) {
      this.routesByService.get(oldService)?.delete(id);
      this.serviceOfRoute.delete(id);
    }
    const oldPluginConfig = this.pluginConfigOfRoute.get(id);
    if (oldPluginConfig !== undefined) {
      this.routesByPluginConfig.get(oldPluginConfig)?.delete(id);
      this.pluginConfigOfRoute.delete(id);
    }
    const inline = stored?.value.upstream;
    if (inline !== undefined) {
      this.routesWithSlot.add(id); // first: a compile that throws has made the slot already
      this.updateSlot('routes', id, inline);
    } else if (this.routesWithSlot.delete(id)) this.updateSlot('routes', id, undefined);
    this.routesWithTimeout.delete(id);
    if (!stored) {
      this.router.remove(id);
      return;
    }
    const r = stored.value;
    const serviceId = r.service_id === undefined ? undefined : String(r.service_id);
    if (serviceId !== undefined) {
      this.serviceOfRoute.set(id, serviceId);
      let set = this.routesByService.get(serviceId);
      if (!set) this.routesByService.set(serviceId, (set = new Set()));
      set.add(id);
    }
    const pluginConfigId = r.plugin_config_id === undefined ? undefined : String(r.plugin_config_id);
    if (pluginConfigId !== undefined) {
      this.pluginConfigOfRoute.set(id, pluginConfigId);
      let set = this.routesByPluginConfig.get(pluginConfigId);
      if (!set) this.routesByPluginConfig.set(pluginConfigId, (set = new Set()));
      set.add(id);
    }
    if (r.status === 0) {
      this.router.remove(id);
      return;
    }
    const service = serviceId === undefined ? undefined : snapshot.services.get(serviceId)?.value;
    const pluginConfig = pluginConfigId === undefined ? undefined : snapshot.plugin_configs.get(pluginConfigId)?.value;
    // compiled by the validator from the same value (one process), unless the service's hosts take part
    const ahead = takeValidatedMatcher(r, this.mode);
    const matcher = ahead !== undefined && (r.hosts !== undefined || r.host !== undefined || service?.hosts === undefined) ? ahead : undefined;
    this.router.upsert(routeSpec(id, r, service), this.compileRoute(id, r, serviceId, service, pluginConfigId, pluginConfig), matcher);
  }

  private compileRoute(
    id: string,
    r: RouteConfig,
    serviceId: string | undefined,
    service: ServiceConfig | undefined,
    pluginConfigId: string | undefined,
    pluginConfig: PluginConfigConfig | undefined,
  ): CompiledRoute {
    // APISIX precedence: the route's own upstream, then its upstream_id, then the service's
    let slot: UpstreamSlot | undefined;
    if (r.upstream) slot = this.slot(`routes/${id}`);
    else if (r.upstream_id !== undefined) slot = this.slot(`upstreams/${r.upstream_id}`);
    else if (service?.upstream) slot = this.slot(`services/${serviceId}`);
    else if (service?.upstream_id !== undefined) slot = this.slot(`upstreams/${service.upstream_id}`);
    const timeout = r.timeout && compileTimeout(r.timeout);
    // APISIX: plugin_config, then the service's, then the route's own (the route wins per plugin)
    const chain =
      pluginConfig?.plugins === undefined && service?.plugins === undefined && r.plugins === undefined
        ? undefined // (most routes of a large table: nothing to build)
        : PluginChain.compile([
            [pluginConfig?.plugins, { kind: 'plugin_configs', id: pluginConfigId ?? '' }],
            [service?.plugins, { kind: 'services', id: serviceId ?? '' }],
            [r.plugins, { kind: 'routes', id }],
          ]);
    // APISIX: the route's enable_websocket, else its service's; off when neither sets it
    const websocket = r.enable_websocket ?? service?.enable_websocket ?? false;
    const route = new Route(id, slot, timeout, chain, websocket, serviceId);
    if (timeout) this.routesWithTimeout.set(id, route);
    return route;
  }
}
