import { Type, type Static } from '@sinclair/typebox';
import { Id, Meta, Plugins, StringEnum } from './common.ts';
import { UpstreamSchema, type UpstreamConfig } from './upstream.ts';
import { IpMatcher } from '../../router/ip.ts';

/**
 * APISIX `stream_routes` (schema_def.lua `_M.stream_route`): an L4 (TCP/UDP) route. A connection
 * matches on the client address (`remote_addr`), the address and port it arrived at
 * (`server_addr`, `server_port`) and, for TLS connections, the SNI; see src/router/stream.ts.
 *
 * Decisions (each differs from an APISIX config only by rejecting something Portico cannot honour):
 *  - `remote_addr` and `server_addr` are one IP or CIDR each (APISIX: `anyOf ip_def`); the syntax is
 *    checked by streamRouteProblem with the same IpMatcher the router uses, so "valid" and "matches
 *    as written" are one decision, and the reason names the field.
 *  - `plugins`: accepted as a field (APISIX objects carry `plugins: {}`), but stream plugins
 *    (ip-restriction, limit-conn, mqtt-proxy, ... in APISIX's stream subsystem) are not implemented:
 *    a non-empty map is rejected rather than silently proxying without the restriction it asks for.
 *  - `protocol` (xRPC: redis, dubbo, ...): APISIX hands such connections to a protocol-aware proxy
 *    and never matches routes with `protocol.superior_id` directly. Proxying them as raw bytes would
 *    drop the protocol's routing and logging, so a route with `protocol` is rejected.
 *  - `upstream.scheme`: APISIX's stream upstreams say `tcp`, `udp` or `tls` (or keep the default
 *    `http`, which the stream subsystem ignores). Accepted here; `tls` (TLS to the upstream) is
 *    rejected until Portico's L4 proxy can originate TLS.
 *  - `upstream` and `upstream_id` together, or none of `upstream`/`upstream_id`/`service_id`, are
 *    rejected (APISIX accepts both: upstream_id wins; and accepts none: every connection is then
 *    closed at once). Portico's HTTP routes reject the same.
 */

/** One IP address or CIDR; its syntax is checked by streamRouteProblem (IpMatcher.check). */
const IpOrCidr = Type.String({ minLength: 1, maxLength: 64 });

/**
 * APISIX's host_def_pat, which (unlike common.ts's Host) also takes a lone `*`: the catch-all SNI
 * (t/stream-node/sni.t TEST 14).
 */
const Sni = Type.String({ minLength: 1, maxLength: 253, pattern: '^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$' });

/** APISIX's upstream scheme values that apply to L4 (plus the http default the stream subsystem ignores). */
export const STREAM_SCHEMES = ['http', 'https', 'tcp', 'udp', 'tls'] as const;

/**
 * An upstream as a stream route may carry it inline: UpstreamSchema with `scheme` widened to the L4
 * values. An `upstreams/<id>` object referenced by `upstream_id` is validated by UpstreamSchema;
 * for `scheme: tcp` there, UpstreamSchema's enum must be widened the same way (see the notes).
 */
export const StreamUpstreamSchema = Type.Object(
  { ...UpstreamSchema.properties, scheme: Type.Optional(StringEnum(STREAM_SCHEMES)) },
  { additionalProperties: false },
);

export type StreamUpstreamConfig = Static<typeof StreamUpstreamSchema>;

/** APISIX's xrpc_protocol_schema: only the shape (a `name` is required); any value is refused later. */
const Protocol = Type.Object(
  {
    name: Type.String(),
    superior_id: Type.Optional(Id),
    conf: Type.Optional(Type.Object({}, { additionalProperties: true })),
    logger: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
  },
  { additionalProperties: true },
);

export const StreamRouteSchema = Type.Object(
  {
    ...Meta,
    remote_addr: Type.Optional(IpOrCidr),
    server_addr: Type.Optional(IpOrCidr),
    server_port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    sni: Type.Optional(Sni),
    upstream: Type.Optional(StreamUpstreamSchema),
    upstream_id: Type.Optional(Id),
    service_id: Type.Optional(Id),
    plugins: Type.Optional(Plugins),
    protocol: Type.Optional(Protocol),
  },
  { additionalProperties: false },
);

export type StreamRouteConfig = Static<typeof StreamRouteSchema>;

/**
 * Why a schema-valid stream route cannot be served, as `/<field>: <rule>` (the store prefixes
 * `stream_routes/<id>: `), or undefined. Checks only the route itself; the inline upstream's own
 * rules (nodes, balancer type, checks) are the upstream checks the validator already runs, on
 * `streamUpstreamForCompile(route.upstream)` at `/upstream`.
 */
export function streamRouteProblem(r: StreamRouteConfig): string | undefined {
  if (r.upstream !== undefined && r.upstream_id !== undefined) return `/: only one of 'upstream' and 'upstream_id' may be set`;
  if (r.upstream === undefined && r.upstream_id === undefined && r.service_id === undefined) {
    return `/: must have one of 'upstream', 'upstream_id' or 'service_id'`;
  }
  for (const field of ['remote_addr', 'server_addr'] as const) {
    const value = r[field];
    if (value === undefined) continue;
    const reason = IpMatcher.check(value);
    if (reason !== undefined) return `/${field}: ${reason}`;
  }
  const plugins = r.plugins === undefined ? [] : Object.keys(r.plugins);
  if (plugins.length > 0) {
    return `/plugins: stream route plugins are not supported by Portico (got ${plugins.map((p) => `'${p}'`).join(', ')}); remove them or leave 'plugins' empty`;
  }
  if (r.protocol !== undefined) {
    return `/protocol: xRPC protocols ('${r.protocol.name}') are not supported by Portico; the route would proxy raw bytes only, so remove 'protocol'`;
  }
  if (r.upstream?.scheme === 'tls') return `/upstream/scheme: 'tls' (TLS to the upstream) is not supported for stream routes yet; use 'tcp'`;
  if (r.upstream?.scheme === 'https') return `/upstream/scheme: 'https' does not apply to a stream route; use 'tcp' or 'udp'`;
  return undefined;
}

/**
 * The inline upstream as compileUpstream (src/runtime/upstream.ts) takes it: the L4 scheme says
 * nothing compileUpstream uses (it reads `scheme` only for a node's default port and TLS), so it is
 * dropped; nodes without a port then default to 80 as in an HTTP upstream.
 */
export function streamUpstreamForCompile(u: StreamUpstreamConfig): UpstreamConfig {
  const { scheme, ...rest } = u;
  return scheme === 'http' || scheme === 'https' ? { ...rest, scheme } : rest;
}
