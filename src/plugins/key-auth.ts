import { Type } from '@sinclair/typebox';
import { definePlugin, type PluginAnswer, type PluginContext } from './types.ts';

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
    const consumer = key === undefined ? undefined : ctx.consumers.byCredential('key-auth', 'key', key);
    if (consumer !== undefined) {
      if (conf.hide) {
        if (fromHeader !== undefined) ctx.upstream.removeHeader(conf.header);
        else ctx.upstream.uri = withoutQueryArg(ctx.upstream.uri, conf.query);
      }
      ctx.consumer = consumer;
      return undefined;
    }
    const message = key === undefined ? 'Missing API key in request' : 'Invalid API key in request';
    // falling back to the anonymous consumer must not forward a wrong key (APISIX strips both places)
    if (conf.anonymous !== undefined && conf.hide) hideBoth(conf, ctx);
    return anonymousOrUnauthorized(ctx, conf.anonymous, conf.challenge, message);
  },
});

/**
 * What an auth plugin (key-auth, jwt-auth) does with a request without a valid credential: with
 * `anonymous_consumer`, the request goes on as that consumer; when that consumer does not exist,
 * 401 "Invalid user authorization" (a config problem, not the client's credential); without it,
 * 401 with the plugin's message. Every 401 carries the plugin's WWW-Authenticate challenge.
 */
export function anonymousOrUnauthorized(ctx: PluginContext, anonymous: string | undefined, challenge: string, message: string): PluginAnswer | undefined {
  if (anonymous !== undefined) {
    const consumer = ctx.consumers.byName(anonymous);
    if (consumer !== undefined) {
      ctx.consumer = consumer;
      return undefined;
    }
    message = 'Invalid user authorization';
  }
  return { status: 401, headers: { 'WWW-Authenticate': challenge }, body: { message } };
}

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
