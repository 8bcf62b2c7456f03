import { Type } from '@sinclair/typebox';
import { definePlugin, type PluginContext } from './types.ts';

/*
 * key-auth (APISIX apisix/plugins/key-auth.lua): the client sends a consumer's key in a header
 * (default `apikey`) or, when that header is absent, in a query argument (default `apikey`).
 * Messages, status codes and the WWW-Authenticate header are APISIX's. APISIX's docs say
 * "Missing API key found in request"; its code and tests (t/plugin/key-auth.t) say
 * "Missing API key in request", which is what clients of APISIX actually receive.
 */

/** APISIX schema_def.get_realm_schema: printable ASCII without `"` and `\` (it is sent quoted). */
export function realmSchema(defaultRealm: string) {
  return Type.String({ default: defaultRealm, minLength: 1, maxLength: 128, pattern: '^[\\x20-\\x21\\x23-\\x5B\\x5D-\\x7E]+$' });
}

/** APISIX schema_def.anonymous_consumer_schema */
export const AnonymousConsumer = Type.String({ minLength: 1 });

const schema = Type.Object({
  header: Type.String({ default: 'apikey' }),
  query: Type.String({ default: 'apikey' }),
  realm: realmSchema('key'),
  hide_credentials: Type.Boolean({ default: false }),
  anonymous_consumer: Type.Optional(AnonymousConsumer),
});

const consumerSchema = Type.Object({ key: Type.String() }, { required: ['key'] });

interface Compiled {
  header: string;
  query: string;
  hide: boolean;
  anonymous: string | undefined;
  /** the WWW-Authenticate value of every 401, built once */
  challenge: string;
}

export const keyAuth = definePlugin({
  name: 'key-auth',
  priority: 2500,
  type: 'auth',
  schema,
  consumerSchema,
  compile: (conf): Compiled => ({
    header: conf.header,
    query: conf.query,
    hide: conf.hide_credentials,
    anonymous: conf.anonymous_consumer,
    challenge: `apikey realm="${conf.realm}"`,
  }),
  rewrite(conf, ctx) {
    const fromHeader = ctx.request.header(conf.header);
    const key = fromHeader ?? ctx.request.arg(conf.query);
    let consumer = key === undefined ? undefined : ctx.consumers.byCredential('key-auth', 'key', key);
    if (consumer !== undefined) {
      if (conf.hide) {
        if (fromHeader !== undefined) ctx.upstream.removeHeader(conf.header);
        else ctx.upstream.uri = withoutQueryArg(ctx.upstream.uri, conf.query);
      }
      ctx.consumer = consumer;
      return;
    }
    const message = key === undefined ? 'Missing API key in request' : 'Invalid API key in request';
    if (conf.anonymous === undefined) return { status: 401, headers: { 'WWW-Authenticate': conf.challenge }, body: { message } };
    // falling back to the anonymous consumer must not forward a wrong key (APISIX strips both places)
    if (conf.hide) hideBoth(conf, ctx);
    consumer = ctx.consumers.byName(conf.anonymous);
    if (consumer === undefined) return { status: 401, headers: { 'WWW-Authenticate': conf.challenge }, body: { message: 'Invalid user authorization' } };
    ctx.consumer = consumer;
    return;
  },
});

function hideBoth(conf: Compiled, ctx: PluginContext): void {
  ctx.upstream.removeHeader(conf.header);
  ctx.upstream.uri = withoutQueryArg(ctx.upstream.uri, conf.query);
}

/**
 * `uri` without every `name=...` argument of its query; the other arguments are kept byte for
 * byte (APISIX re-encodes the whole query; an upstream that signs its URLs prefers them untouched).
 */
export function withoutQueryArg(uri: string, name: string): string {
  const q = uri.indexOf('?');
  if (q < 0) return uri;
  const kept = uri
    .slice(q + 1)
    .split('&')
    .filter((part) => {
      const eq = part.indexOf('=');
      return decodeComponent(eq < 0 ? part : part.slice(0, eq)) !== name;
    });
  return kept.length === 0 || (kept.length === 1 && kept[0] === '') ? uri.slice(0, q) : `${uri.slice(0, q)}?${kept.join('&')}`;
}

function decodeComponent(s: string): string {
  const plain = s.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(plain);
  } catch {
    // a malformed escape is compared as written
    return plain;
  }
}
