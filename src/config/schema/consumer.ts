import { Type, type Static } from '@sinclair/typebox';
import { Labels, Plugins } from './common.ts';

/**
 * An APISIX consumer: the user of an API, named by `username` (its id: the etcd key is
 * `<prefix>/consumers/<username>`). `plugins` holds the credentials of auth plugins
 * (`key-auth: {key}`) and plugins merged into a route's chain once the consumer is identified.
 */
export const ConsumerSchema = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 100, pattern: '^[a-zA-Z0-9_\\-]+$' }),
    desc: Type.Optional(Type.String({ maxLength: 256 })),
    labels: Type.Optional(Labels),
    plugins: Type.Optional(Plugins),
    group_id: Type.Optional(Type.String()),
    create_time: Type.Optional(Type.Integer()),
    update_time: Type.Optional(Type.Integer()),
  },
  { additionalProperties: false },
);

export type ConsumerConfig = Static<typeof ConsumerSchema>;
