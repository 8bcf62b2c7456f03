import { Type, type Static } from '@sinclair/typebox';
import { Labels, Meta, StringEnum } from './common.ts';

/** "host:port" keys: IPv4, IPv6 in brackets, or a DNS name; port optional (80/443 by scheme). */
const NodeAddress = Type.String({ minLength: 1, pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\[\\]\\s]+)(:[0-9]{1,5})?$' });

export const NodeObject = Type.Object(
  {
    host: Type.String({ minLength: 1, pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^\\s\\[\\]]+)$' }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    weight: Type.Integer({ minimum: 0 }),
    priority: Type.Optional(Type.Integer()),
    metadata: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: false },
);

export const Nodes = Type.Union([
  Type.Record(NodeAddress, Type.Integer({ minimum: 0 }), { minProperties: 1 }),
  Type.Array(NodeObject, { minItems: 1 }),
]);

const Seconds = Type.Number({ exclusiveMinimum: 0 });

export const Timeout = Type.Object(
  { connect: Type.Optional(Seconds), send: Type.Optional(Seconds), read: Type.Optional(Seconds) },
  { additionalProperties: false },
);


export const UpstreamSchema = Type.Object(
  {
    ...Meta,
    type: Type.Optional(Type.String({ default: 'roundrobin' })),
    nodes: Nodes,
    scheme: Type.Optional(StringEnum(['http', 'https'])),
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
    // Accepted so APISIX upstreams load unchanged; active/passive health checks are not enforced yet.
    checks: Type.Optional(Type.Object({}, { additionalProperties: true })),
    /** chash: what the key is read from (APISIX) */
    hash_on: Type.Optional(StringEnum(['vars', 'header', 'cookie', 'consumer', 'vars_combinations'])),
    key: Type.Optional(Type.String()),
    labels: Type.Optional(Labels),
  },
  { additionalProperties: false },
);

export type UpstreamConfig = Static<typeof UpstreamSchema>;
