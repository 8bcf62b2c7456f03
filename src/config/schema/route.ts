import { Type, type Static } from '@sinclair/typebox';
import { Host, Id, Meta, Plugins, StringEnum } from './common.ts';
import { Timeout, UpstreamSchema } from './upstream.ts';

export const METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'CONNECT', 'TRACE', 'PURGE'] as const;

const Uri = Type.String({ minLength: 1, maxLength: 4096, pattern: '^/' });
const RemoteAddr = Type.String({ minLength: 1, maxLength: 64 });

export const RouteSchema = Type.Object(
  {
    ...Meta,
    uri: Type.Optional(Uri),
    uris: Type.Optional(Type.Array(Uri, { minItems: 1, uniqueItems: true })),
    host: Type.Optional(Host),
    hosts: Type.Optional(Type.Array(Host, { minItems: 1, uniqueItems: true })),
    methods: Type.Optional(Type.Array(StringEnum(METHODS), { uniqueItems: true })),
    priority: Type.Optional(Type.Integer({ default: 0 })),
    remote_addr: Type.Optional(RemoteAddr),
    remote_addrs: Type.Optional(Type.Array(RemoteAddr, { minItems: 1, uniqueItems: true })),
    vars: Type.Optional(Type.Array(Type.Unknown())),
    upstream: Type.Optional(UpstreamSchema),
    upstream_id: Type.Optional(Id),
    service_id: Type.Optional(Id),
    plugin_config_id: Type.Optional(Id),
    plugins: Type.Optional(Plugins),
    status: Type.Optional(Type.Union([Type.Literal(0), Type.Literal(1)])),
    timeout: Type.Optional(Timeout),
    enable_websocket: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export type RouteConfig = Static<typeof RouteSchema>;
