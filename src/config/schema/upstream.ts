import { Type, type Static } from '@sinclair/typebox';
import { Host, Id, Labels, Meta, StringEnum } from './common.ts';

export const NodeObject = Type.Object(
  {
    // APISIX's host_def; what the pattern lets through but no node can be (a bare IPv6 address, a
    // port in the host, a wildcard) is rejected by normalizeNodes with a reason of its own
    host: Host,
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    weight: Type.Integer({ minimum: 0 }),
    priority: Type.Optional(Type.Integer()),
    metadata: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: false },
);

/**
 * APISIX's nodes_schema: `{"host:port": weight}` or `[{host, port, weight, ...}]`. Either may be
 * empty (an upstream whose nodes come later; requests get 503 meanwhile). Map keys are any string
 * here, as in APISIX; normalizeNodes (src/upstream/nodes.ts) checks each address and names it in
 * its reason (`/nodes/::1:1980: IPv6 address must be enclosed with '[' and ']' ...`), which a key
 * pattern could only report as an unknown field.
 */
export const Nodes = Type.Union([
  Type.Unsafe<Record<string, number>>({ type: 'object', additionalProperties: { type: 'integer', minimum: 0 } }),
  Type.Array(NodeObject),
]);

const Seconds = Type.Number({ exclusiveMinimum: 0 });

export const Timeout = Type.Object(
  { connect: Type.Optional(Seconds), send: Type.Optional(Seconds), read: Type.Optional(Seconds) },
  { additionalProperties: false },
);

/** HTTP statuses a check counts (APISIX: 200-599, at least one, no repeats). */
const Statuses = (fallback: number[]) =>
  Type.Array(Type.Integer({ minimum: 200, maximum: 599 }), { minItems: 1, uniqueItems: true, default: fallback });
/** A failure or success threshold: active checks need at least 1; a passive threshold of 0 turns that counter off. */
const Threshold = (minimum: 0 | 1, fallback: number) => Type.Integer({ minimum, maximum: 254, default: fallback });
const CheckInterval = Type.Integer({ minimum: 1, maximum: 86_400, default: 1 });

/** APISIX `checks.active`, with its defaults (schema_def.lua). */
export const ActiveChecks = Type.Object(
  {
    type: Type.Optional(StringEnum(['http', 'https', 'tcp'], { default: 'http' })),
    timeout: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 3600, default: 1 })),
    concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 10 })),
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 253, pattern: '^[0-9a-zA-Z-._\\[\\]:]+$' })),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    http_method: Type.Optional(StringEnum(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'], { default: 'GET' })),
    http_path: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: '^/[\\x21-\\x7e]*$', default: '/' })),
    http_req_body: Type.Optional(Type.String({ maxLength: 65536, default: '' })),
    https_verify_certificate: Type.Optional(Type.Boolean({ default: true })),
    req_headers: Type.Optional(Type.Array(Type.String({ minLength: 3, maxLength: 8192, pattern: '^[!#$%&\'*+.^_`|~0-9A-Za-z-]+:[\\t\\x20-\\x7e\\x80-\\xff]*$' }), { minItems: 1 })),
    healthy: Type.Optional(
      Type.Object(
        { interval: Type.Optional(CheckInterval), http_statuses: Type.Optional(Statuses([200, 302])), successes: Type.Optional(Threshold(1, 2)) },
        { additionalProperties: false },
      ),
    ),
    unhealthy: Type.Optional(
      Type.Object(
        {
          interval: Type.Optional(CheckInterval),
          http_statuses: Type.Optional(Statuses([429, 404, 500, 501, 502, 503, 504, 505])),
          http_failures: Type.Optional(Threshold(1, 5)),
          tcp_failures: Type.Optional(Threshold(1, 2)),
          timeouts: Type.Optional(Threshold(1, 3)),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** APISIX `checks.passive`, with its defaults; `readmit_after` is Portico's (see docs/upstreams.md). */
export const PassiveChecks = Type.Object(
  {
    type: Type.Optional(StringEnum(['http', 'https', 'tcp'], { default: 'http' })),
    healthy: Type.Optional(
      Type.Object(
        {
          http_statuses: Type.Optional(Statuses([200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308])),
          successes: Type.Optional(Threshold(0, 5)),
        },
        { additionalProperties: false },
      ),
    ),
    unhealthy: Type.Optional(
      Type.Object(
        {
          http_statuses: Type.Optional(Statuses([429, 500, 503])),
          tcp_failures: Type.Optional(Threshold(0, 2)),
          timeouts: Type.Optional(Threshold(0, 7)),
          http_failures: Type.Optional(Threshold(0, 5)),
        },
        { additionalProperties: false },
      ),
    ),
    /**
     * Portico: without active checks nothing would ever bring a node that passive checks took out
     * back (APISIX requires `active` for that reason); after this many seconds it gets traffic again
     * (nginx's fail_timeout). Ignored when `active` is set: probes decide then.
     */
    readmit_after: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 86_400, default: 10 })),
  },
  { additionalProperties: false },
);

export const Checks = Type.Object(
  { active: Type.Optional(ActiveChecks), passive: Type.Optional(PassiveChecks) },
  { additionalProperties: false, minProperties: 1 },
);

export type ActiveChecksConfig = Static<typeof ActiveChecks>;
export type PassiveChecksConfig = Static<typeof PassiveChecks>;
export type ChecksConfig = Static<typeof Checks>;

export const UpstreamSchema = Type.Object(
  {
    ...Meta,
    type: Type.Optional(Type.String({ default: 'roundrobin' })),
    /** required unless `discovery_type` finds the nodes */
    nodes: Type.Optional(Nodes),
    /** APISIX service discovery: `dns` resolves `service_name` (SRV, or A/AAAA with its :port) */
    discovery_type: Type.Optional(StringEnum(['dns'])),
    /** with discovery_type dns: "name" (SRV records) or "name:port" (A/AAAA records) */
    service_name: Type.Optional(Type.String({ minLength: 1, maxLength: 259, pattern: '^[0-9A-Za-z_.-]+(:[0-9]{1,5})?$' })),
    /** http/https for routes; tcp/udp for upstreams of stream routes (APISIX), proxied as raw bytes */
    scheme: Type.Optional(StringEnum(['http', 'https', 'tcp', 'udp'])),
    /**
     * APISIX's upstream tls: a client certificate for upstreams that require one, and `verify` of the
     * upstream's certificate (off by default, as nginx's proxy_ssl_verify); `ca` (Portico) is what
     * verification trusts, else Node's bundled roots
     */
    tls: Type.Optional(
      Type.Object(
        {
          client_cert: Type.Optional(Type.String({ minLength: 128, maxLength: 65536 })),
          client_key: Type.Optional(Type.String({ minLength: 64, maxLength: 65536 })),
          client_cert_id: Type.Optional(Id),
          verify: Type.Optional(Type.Boolean({ default: false })),
          ca: Type.Optional(Type.String({ minLength: 128, maxLength: 262144 })),
        },
        { additionalProperties: false },
      ),
    ),
    pass_host: Type.Optional(StringEnum(['pass', 'node', 'rewrite'])),
    // becomes the Host header: the header-value check first (its reason names the bad character),
    // then the host syntax (semantic check, as APISIX's host_def)
    upstream_host: Type.Optional(Type.String({ minLength: 1, maxLength: 259, format: 'header-value' })),
    timeout: Type.Optional(Timeout),
    retries: Type.Optional(Type.Integer({ minimum: 0 })),
    retry_timeout: Type.Optional(Type.Number({ minimum: 0 })),
    keepalive_pool: Type.Optional(
      Type.Object(
        {
          size: Type.Optional(Type.Integer({ minimum: 1 })),
          idle_timeout: Type.Optional(Type.Number({ minimum: 0 })),
          requests: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    checks: Type.Optional(Checks),
    /** chash: what the key is read from (APISIX) */
    hash_on: Type.Optional(StringEnum(['vars', 'header', 'cookie', 'consumer', 'vars_combinations'])),
    key: Type.Optional(Type.String()),
    labels: Type.Optional(Labels),
  },
  { additionalProperties: false },
);

export type UpstreamConfig = Static<typeof UpstreamSchema>;
