import type { Static, TSchema } from '@sinclair/typebox';

/*
 * The plugin API: what a built-in plugin (one file under src/plugins/) and a user's own plugin
 * (a file in one of `plugin_dirs`) export. Shapes follow APISIX: a name, a priority (higher runs
 * first), a JSON schema for the config under `plugins.<name>` of a route, service, plugin_config,
 * global_rule or consumer, and handlers per phase. Handlers see a transport-independent context,
 * never a node:http object or a socket.
 *
 *   rewrite → access → before_proxy → (upstream) → header_filter → body_filter → log
 *
 * rewrite, access and before_proxy may answer the request themselves (return a PluginAnswer): the
 * rest of the chain and the upstream are skipped, header_filter and log still run.
 */

/** The phases, in the order they run. */
export const PHASES = ['rewrite', 'access', 'before_proxy', 'header_filter', 'body_filter', 'log'] as const;
export type Phase = (typeof PHASES)[number];

/**
 * The gateway's own answer to a request, instead of the upstream's. `body`: a string or Buffer as
 * is, an object as JSON (`application/json`, as APISIX's `core.response.exit(status, table)`).
 */
export interface PluginAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer | Record<string, unknown>;
}

/** What rewrite/access/before_proxy return: nothing (go on) or an answer, maybe later. */
export type PhaseResult = void | undefined | PluginAnswer | Promise<void | undefined | PluginAnswer>;

/** A consumer (APISIX): a user of the API, identified by an auth plugin's credentials. */
export interface Consumer {
  readonly username: string;
  /** the consumer's plugins: credentials of auth plugins, and plugins merged into the route's chain */
  readonly plugins: Readonly<Record<string, unknown>>;
  readonly labels?: Readonly<Record<string, string>>;
  readonly desc?: string;
  /** the consumer group (APISIX consumer_groups; consumer-restriction type consumer_group_id) */
  readonly groupId?: string;
}

/** Finds consumers by an auth plugin's credential (an index built on first use, rebuilt on change). */
export interface ConsumerDirectory {
  /** the consumer whose `plugins[plugin][field]` equals `value` (key-auth: 'key-auth', 'key', <key>) */
  byCredential(plugin: string, field: string, value: string): Consumer | undefined;
  byName(username: string): Consumer | undefined;
}

/** The client's request, read-only. */
export interface RequestView {
  readonly method: string;
  /** the path as routed (no query) */
  readonly path: string;
  /** the raw query string, without '?' ('' when none) */
  readonly query: string;
  /** name, value, name, value, ... as received */
  readonly rawHeaders: readonly string[];
  /** a header's value (case-insensitive name); repeated headers joined with ', ' */
  header(name: string): string | undefined;
  /** the routed host (no port), lower-case */
  readonly host: string;
  /** the client's address (IPv4-mapped IPv6 unmapped) */
  readonly clientAddress: string;
  readonly scheme: 'http' | 'https';
  /** '1.1' or '1.0' */
  readonly httpVersion: string;
  /** a query argument's first value, decoded ('+' is a space), undefined when absent */
  arg(name: string): string | undefined;
  /** a cookie's value, undefined when absent */
  cookie(name: string): string | undefined;
}

/** The request that will be sent upstream; rewrite/access/before_proxy may change it. */
export interface UpstreamRequest {
  /** path and query sent upstream (the route's forward path unless a plugin set it) */
  uri: string;
  method: string;
  /** the Host header sent upstream (undefined: as pass_host says) */
  host: string | undefined;
  /** replaces every header of that name (case-insensitive) */
  setHeader(name: string, value: string): void;
  addHeader(name: string, value: string): void;
  removeHeader(name: string): void;
  /** the value that will be sent, after the changes so far */
  header(name: string): string | undefined;
}

/** The response to the client (the upstream's, or a plugin's answer); header_filter may change it. */
export interface ResponseView {
  status: number;
  header(name: string): string | undefined;
  setHeader(name: string, value: string): void;
  addHeader(name: string, value: string): void;
  removeHeader(name: string): void;
  /** the answer came from the gateway (a plugin or an error), not from the upstream */
  readonly local: boolean;
}

/** Everything a handler sees of one request. */
export interface PluginContext {
  readonly request: RequestView;
  readonly routeId: string;
  readonly serviceId: string | undefined;
  /** set by an auth plugin; its plugins are merged into the chain after the rewrite phase */
  consumer: Consumer | undefined;
  readonly consumers: ConsumerDirectory;
  /** per-request values shared between plugins (APISIX ctx) */
  readonly vars: Map<string, unknown>;
  readonly upstream: UpstreamRequest;
  /** set once a response is being sent (header_filter, body_filter, log) */
  readonly response: ResponseView | undefined;
  /** ms since the epoch when the request's head was read */
  readonly startedAt: number;
  /**
   * The client is another address than the peer's (real-ip, from a trusted proxy's header): later
   * plugins, limit keys and the upstream's X-Real-IP / X-Forwarded-For see this one. Must be an IP.
   */
  setClientAddress(address: string): void;
}

/** Where a plugin config lives: its state (counters) is kept per scope and plugin name. */
export interface PluginScope {
  /** 'routes' | 'services' | 'plugin_configs' | 'global_rules' | 'consumers' */
  readonly kind: string;
  readonly id: string;
}

/**
 * A plugin. `Conf` is the validated config (`Static<schema>` with defaults filled in); `Compiled`
 * what `compile` makes of it once per config change (regexes, parsed keys), given to the handlers.
 */
export interface Plugin<S extends TSchema = TSchema, Compiled = Static<S>> {
  readonly name: string;
  /** higher runs first within a phase (APISIX priorities: key-auth 2500, limit-count 1002, ...) */
  readonly priority: number;
  /** the config under `plugins.<name>` of a route, service, plugin_config or global_rule */
  readonly schema: S;
  /** auth plugins: the credentials a consumer holds under `plugins.<name>` */
  readonly consumerSchema?: TSchema;
  /** 'auth': identifies the consumer (runs in rewrite) */
  readonly type?: 'auth';
  /**
   * Builds what the handlers use from a config; may throw (the object is then rejected with the
   * message). Called once per config change, never per request. Without it the handlers get the config.
   */
  compile?(conf: Static<S>, scope: PluginScope): Compiled;
  rewrite?(conf: Compiled, ctx: PluginContext): PhaseResult;
  access?(conf: Compiled, ctx: PluginContext): PhaseResult;
  before_proxy?(conf: Compiled, ctx: PluginContext): PhaseResult;
  header_filter?(conf: Compiled, ctx: PluginContext): void;
  /**
   * A chunk of the response body (`last`: the final one, possibly empty): returns what is sent
   * instead (undefined: the chunk as is). A route with a body_filter plugin sends its responses
   * chunked (the length is no longer known).
   */
  body_filter?(conf: Compiled, ctx: PluginContext, chunk: Buffer, last: boolean): Buffer | undefined;
  /** after the response was sent (or the client left): counters, metrics; never answers */
  log?(conf: Compiled, ctx: PluginContext): void;
}

/** Defines a plugin with its config type inferred from the schema. */
export function definePlugin<S extends TSchema, Compiled = Static<S>>(plugin: Plugin<S, Compiled>): Plugin<S, Compiled> {
  return plugin;
}
