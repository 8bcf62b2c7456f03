import { Type, type Static } from '@sinclair/typebox';
import { Host, Id, Meta, Plugins } from './common.ts';
import { UpstreamSchema } from './upstream.ts';

export const ServiceSchema = Type.Object(
  {
    ...Meta,
    upstream: Type.Optional(UpstreamSchema),
    upstream_id: Type.Optional(Id),
    hosts: Type.Optional(Type.Array(Host, { minItems: 1, uniqueItems: true })),
    plugins: Type.Optional(Plugins),
    enable_websocket: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export type ServiceConfig = Static<typeof ServiceSchema>;
