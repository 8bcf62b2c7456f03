import { Type, type Static } from '@sinclair/typebox';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { ErrorCode, PorticoError } from '../errors.ts';
import { StringEnum } from './schema/common.ts';
import { keyringProblem } from '../server/tls/encryption.ts';
import { adminConfigProblem } from '../admin/auth.ts';
import { IpMatcher } from '../router/ip.ts';
import { LISTEN, parseListen } from './listen.ts';
import { Validators, type ValidatorGroup } from './precompiled.ts';

const ListenAddress = Type.String({ pattern: LISTEN.source });
/** a listener: its address alone, or with what it speaks (`http2`: h2c with prior knowledge on a plain listener, ALPN h2 on TLS) */
const Listener = Type.Union([
  ListenAddress,
  Type.Object({ addr: ListenAddress, http2: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
]);
/** an L4 listener for stream routes: TCP by default, `udp`, or TLS-terminating TCP (`tls`, the certificate chosen by SNI) */
const StreamListener = Type.Object(
  { addr: ListenAddress, udp: Type.Optional(Type.Boolean()), tls: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const EtcdConfigSchema = Type.Object(
  {
    endpoints: Type.Array(Type.String({ pattern: '^https?://' }), { minItems: 1, default: ['http://127.0.0.1:2379'] }),
    prefix: Type.String({ pattern: '^/', default: '/portico' }),
    user: Type.Optional(Type.String({ minLength: 1 })),
    password: Type.Optional(Type.String()),
    tls: Type.Optional(
      Type.Object(
        { ca: Type.Optional(Type.String()), cert: Type.Optional(Type.String()), key: Type.Optional(Type.String()) },
        { additionalProperties: false },
      ),
    ),
    timeout: Type.Number({ exclusiveMinimum: 0, default: 5 }),
  },
  { additionalProperties: false },
);

/** seconds; above ~24.8 days node's timers would silently fire after 1 ms */
const Seconds = (fallback: number) => Type.Number({ exclusiveMinimum: 0, maximum: 2_000_000, default: fallback });

/**
 * How long the gateway waits for its clients, in seconds. nginx's defaults and meanings
 * (client_header_timeout, keepalive_timeout, client_body_timeout, send_timeout), so that a client
 * which stops sending or reading is answered 408 or cut off, and its socket freed, after a bounded time.
 */
const ClientTimeoutsSchema = Type.Object(
  {
    /** the whole request head (request line and headers) must arrive within this, from its first byte (or from the connection) */
    header: Seconds(60),
    /** an idle keep-alive connection is closed after this */
    keepalive: Seconds(75),
    /** the longest pause between two reads of the request body (not a deadline for the whole body) */
    request_body: Seconds(60),
    /** the longest time the client may accept no response bytes (not a deadline for the whole response) */
    send: Seconds(60),
  },
  { additionalProperties: false, default: {} },
);

/** portico.yaml: how this gateway instance runs. Objects (routes, ...) live in the config source. */
export const GatewayConfigSchema = Type.Object(
  {
    instance_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:-]+$' })),
    /**
     * etcd source: seconds between two publications of the served revision in this instance's fleet
     * record (state changes are written at once). 1,000 instances at 15 s: ~67 etcd writes/s.
     */
    fleet_interval: Type.Number({ minimum: 1, maximum: 3600, default: 15 }),
    /** the plugins objects may use (default: every built-in and every plugin of plugin_dirs) */
    plugins: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { uniqueItems: true })),
    /** folders of the user's own plugins (.js/.mjs/.ts files), loaded at start; relative to this file */
    plugin_dirs: Type.Array(Type.String({ minLength: 1 }), { default: [] }),
    proxy: Type.Object(
      {
        listen: Type.Array(Listener, { minItems: 1, default: ['0.0.0.0:9080'] }),
        /** HTTPS listeners: the certificate of each handshake comes from the `ssls` objects in force, by SNI */
        tls_listen: Type.Array(Listener, { default: [] }),
        /** the SNI whose certificate a client that sends none gets (APISIX's apisix.ssl.fallback_sni); none: such handshakes fail */
        fallback_sni: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
        /** TCP/UDP listeners for stream routes */
        stream_listen: Type.Array(StreamListener, { default: [] }),
        router: StringEnum(['radixtree_host_uri', 'radixtree_uri', 'radixtree_uri_with_parameter'], { default: 'radixtree_host_uri' }),
        drain_timeout: Type.Number({ minimum: 0, default: 30 }),
        workers: Type.Union([Type.Integer({ minimum: 1, maximum: 256 }), Type.Literal('auto')], { default: 1 }),
        timeouts: ClientTimeoutsSchema,
        max_header_count: Type.Integer({ minimum: 1, maximum: 10_000, default: 100 }),
        allow_trace: Type.Boolean({ default: false }),
        /**
         * requests in flight (connections in use) to one upstream node, per worker process; 0 = no
         * cap. At the cap a request waits up to the upstream's timeout.connect for a free slot, then
         * another node is tried, else 503 (src/upstream/pools.ts)
         */
        upstream_max_connections_per_node: Type.Integer({ minimum: 0, maximum: 1_000_000, default: 1024 }),
        /**
         * how HTTP/1.1 is spoken: `socket` = the gateway's own codec on net/tls sockets (src/proxy/http1/,
         * src/upstream/http1-pool.ts); `node` = node:http for clients and undici for upstreams
         */
        transport: StringEnum(['socket', 'node'], { default: 'socket' }),
        /**
         * bytes of a request body read to match routes whose vars use `post_arg.*` (APISIX's
         * max_post_args_readable_size; the body is held in memory): a larger body is not matched by
         * those routes and still reaches any other, streamed
         */
        max_post_args_readable_size: Type.Integer({ minimum: 0, maximum: 64 * 1024 * 1024, default: 1024 * 1024 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /**
     * How upstream host names and `discovery_type: dns` service names are resolved (once per
     * instance, in the config pipeline's process): the DNS servers to ask (default: the system's,
     * /etc/resolv.conf), and the bounds of the re-resolution interval that follows each answer's TTL.
     */
    dns: Type.Object(
      {
        servers: Type.Optional(Type.Array(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\](:[0-9]{1,5})?|[0-9a-fA-F:.]+)$' }), { minItems: 1 })),
        min_ttl: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, default: 1 }),
        max_ttl: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, default: 300 }),
        /** seconds per query attempt */
        timeout: Type.Number({ exclusiveMinimum: 0, maximum: 60, default: 2 }),
        tries: Type.Integer({ minimum: 1, maximum: 10, default: 2 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /**
     * APISIX's data_encryption: ssl private keys stored encrypted (AES-CBC, base64) decrypt with the
     * first keyring entry that fits; default: APISIX's default keyring
     */
    data_encryption: Type.Optional(
      Type.Object({ keyring: Type.Array(Type.String({ minLength: 16, maxLength: 32 }), { minItems: 1, maxItems: 16 }) }, { additionalProperties: false }),
    ),
    /**
     * The Admin API (APISIX v3 paths under /apisix/admin/, Portico's under /portico/admin/), served by
     * the process that runs the config pipeline; no section → no admin listener
     */
    admin: Type.Optional(
      Type.Object(
        {
          listen: ListenAddress,
          keys: Type.Array(
            Type.Object(
              { key: Type.String({ minLength: 1, maxLength: 256 }), role: StringEnum(['admin', 'viewer']), name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })) },
              { additionalProperties: false },
            ),
            { minItems: 1 },
          ),
          /** client addresses or CIDRs allowed to call it (default: loopback only) */
          allow: Type.Array(Type.String({ minLength: 1 }), { default: ['127.0.0.0/8', '::1'] }),
          max_body_bytes: Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, default: 1024 * 1024 }),
          /** body limit of POST /portico/admin/apply (a whole config) */
          max_apply_bytes: Type.Integer({ minimum: 1024, maximum: 1024 * 1024 * 1024, default: 32 * 1024 * 1024 }),
          /** etcd's --max-txn-ops: an apply or rollback is one txn, refused (never split) above it */
          max_txn_ops: Type.Integer({ minimum: 8, maximum: 1_000_000, default: 128 }),
        },
        { additionalProperties: false },
      ),
    ),
    status: Type.Object(
      {
        listen: ListenAddress,
        /** GET /dashboard on the status listener (loopback by default, like the rest of it) */
        dashboard: Type.Boolean({ default: true }),
        /** count every request by route, status class and node (/metrics, /status/traffic, the dashboard) */
        request_metrics: Type.Boolean({ default: true }),
      },
      { additionalProperties: false, default: { listen: '127.0.0.1:9090', dashboard: true, request_metrics: true } },
    ),
    /** what the gateway writes about the requests it serves (its own log is JSON lines on stderr) */
    log: Type.Object(
      {
        access: Type.Object(
          {
            enabled: Type.Boolean({ default: false }),
            /** `stdout`, or a file (appended to; reopened on SIGUSR1, for logrotate) */
            path: Type.String({ minLength: 1, default: 'stdout' }),
            format: StringEnum(['json', 'combined'], { default: 'json' }),
          },
          { additionalProperties: false, default: {} },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    /** W3C trace context and OpenTelemetry export */
    tracing: Type.Object(
      {
        /** send upstream a `traceparent` continuing the client's trace, or starting one */
        propagate: Type.Boolean({ default: true }),
        /** export a span per request over OTLP/HTTP (off unless an endpoint is set) */
        otlp: Type.Optional(
          Type.Object(
            {
              /** e.g. http://collector:4318/v1/traces */
              endpoint: Type.String({ pattern: '^https?://' }),
              headers: Type.Record(Type.String({ minLength: 1 }), Type.String(), { default: {} }),
              service_name: Type.String({ minLength: 1, default: 'portico' }),
              /** share of new traces sampled (a client's sampled flag is followed) */
              sample_ratio: Type.Number({ minimum: 0, maximum: 1, default: 1 }),
              /** seconds per export request */
              timeout: Type.Number({ exclusiveMinimum: 0, maximum: 60, default: 10 }),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    config: Type.Object(
      {
        source: StringEnum(['file', 'etcd'], { default: 'file' }),
        file: Type.Object({ path: Type.String({ minLength: 1 }) }, { additionalProperties: false, default: { path: 'routes.yaml' } }),
        etcd: Type.Optional(EtcdConfigSchema),
        snapshot: Type.String({ minLength: 1, default: 'data/snapshot.json' }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);

export type GatewayConfig = Static<typeof GatewayConfigSchema>;
export type EtcdConfig = Static<typeof EtcdConfigSchema>;

/**
 * portico.yaml's validators (they fill in the defaults): compiled by the build (config/precompiled.ts)
 * or on first use. (The schema is checked against the meta-schema by the tests, not at every start:
 * test/config/schemas.test.ts.)
 */
export const GATEWAY_VALIDATORS: ValidatorGroup = {
  name: 'gateway',
  options: { useDefaults: true, strict: false, allErrors: false, validateSchema: false },
  schemas: { gateway: GatewayConfigSchema, etcd: EtcdConfigSchema },
};
const gatewayValidators = new Validators(GATEWAY_VALIDATORS);

/**
 * Reads portico.yaml. Defaults are filled in; relative paths resolve against the file's folder.
 * Throws PORTICO_ERR_CONFIG_INVALID naming the file, the field and the rule.
 */
export function loadGatewayConfig(path: string): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PorticoError(ErrorCode.CONFIG_INVALID, `cannot read ${path}: ${(err as Error).message}`);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) throw new PorticoError(ErrorCode.CONFIG_INVALID, `${path}: ${doc.errors[0]!.message}`);
  return parseGatewayConfig((doc.toJS() ?? {}) as unknown, dirname(resolve(path)), path);
}

export function parseGatewayConfig(raw: unknown, baseDir: string, name = 'config'): GatewayConfig {
  const value = structuredClone(raw ?? {}) as Record<string, unknown>;
  const validateGateway = gatewayValidators.get('gateway');
  if (!validateGateway(value)) {
    const e = validateGateway.errors![0]!;
    const extra = e.keyword === 'additionalProperties' ? ` '${(e.params as { additionalProperty: string }).additionalProperty}'` : '';
    throw new PorticoError(ErrorCode.CONFIG_INVALID, `${name}: ${e.instancePath || '/'}: ${e.message}${extra}`);
  }
  const cfg = value as GatewayConfig;
  if (cfg.config.source === 'etcd') {
    cfg.config.etcd ??= {} as EtcdConfig;
    gatewayValidators.get('etcd')(cfg.config.etcd); // fills defaults
  }
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  cfg.config.file.path = abs(cfg.config.file.path);
  cfg.config.snapshot = abs(cfg.config.snapshot);
  cfg.plugin_dirs = cfg.plugin_dirs.map(abs);
  if (cfg.log.access.path !== 'stdout') cfg.log.access.path = abs(cfg.log.access.path);
  if (cfg.admin) {
    const adminProblem = adminConfigProblem({ host: parseListen(cfg.admin.listen).host, keys: cfg.admin.keys });
    if (adminProblem) throw new PorticoError(ErrorCode.CONFIG_INVALID, `${name}: ${adminProblem}`);
    for (const [i, entry] of cfg.admin.allow.entries()) {
      const problem = IpMatcher.check(entry);
      if (problem) throw new PorticoError(ErrorCode.CONFIG_INVALID, `${name}: admin: allow[${i}]: ${problem}`);
    }
  }
  const keyring = cfg.data_encryption?.keyring;
  const ringProblem = keyring && keyringProblem(keyring);
  if (ringProblem) throw new PorticoError(ErrorCode.CONFIG_INVALID, `${name}: ${ringProblem.replace('/apisix/data_encryption', '/data_encryption')}`);
  const tls = cfg.config.etcd?.tls;
  if (tls) for (const k of ['ca', 'cert', 'key'] as const) if (tls[k]) tls[k] = abs(tls[k]!);
  return cfg;
}
