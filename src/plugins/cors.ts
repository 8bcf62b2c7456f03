import { Type } from '@sinclair/typebox';
import { compileConfigRegex, type ConfigRegex } from '../security/regex.ts';
import { definePlugin, type PluginContext, type ResponseView } from './types.ts';

/**
 * cors (APISIX): Cross-Origin Resource Sharing headers. A preflight (any OPTIONS request) is
 * answered 200 by the gateway without calling the upstream; every response of the route, the
 * gateway's own included, gets the CORS headers in header_filter when the request's Origin is
 * allowed:
 *  - `allow_origins`: `*` (any), `**` (echo the request's Origin, even with credentials), one
 *    origin, or a comma-separated list (the request's Origin is echoed when listed);
 *  - `allow_origins_by_regex`: when set, only origins matching one of these are allowed
 *    (searched anywhere, on the project's linear-time regex engine) and `allow_origins` is ignored.
 * With `allow_credential`, a `*` in any option is a config error (the CORS spec forbids it).
 * `Vary: Origin` is added whenever `allow_origins` is not `*`, allowed or not, as APISIX does.
 * Not supported: `allow_origins_by_metadata` (Portico has no plugin metadata yet): rejected.
 */

// APISIX's origins_pattern
const ORIGINS = '^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$';
const RegexList = Type.Array(Type.String({ minLength: 1, maxLength: 4096 }), { minItems: 1, uniqueItems: true });

const schema = Type.Object({
  allow_origins: Type.String({ pattern: ORIGINS, default: '*' }),
  allow_methods: Type.String({ default: '*' }),
  allow_headers: Type.String({ default: '*' }),
  expose_headers: Type.Optional(Type.String()),
  max_age: Type.Integer({ default: 5 }),
  allow_credential: Type.Boolean({ default: false }),
  allow_origins_by_regex: Type.Optional(RegexList),
  allow_origins_by_metadata: Type.Optional(RegexList),
  timing_allow_origins: Type.Optional(Type.String({ pattern: ORIGINS })),
  timing_allow_origins_by_regex: Type.Optional(RegexList),
});

const ALL_METHODS = 'GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE';

/** Which origins are allowed: a fixed answer, the request's own (`**`), a list, or regexes. */
type OriginRule =
  | { kind: 'fixed'; value: string }
  | { kind: 'echo' }
  | { kind: 'list'; origins: ReadonlySet<string> }
  | { kind: 'regex'; rules: readonly ConfigRegex[] };

interface Cors {
  readonly origins: OriginRule;
  readonly timing: OriginRule | undefined;
  readonly varyOrigin: boolean;
  readonly methods: string;
  readonly headers: string;
  readonly expose: string | undefined;
  readonly maxAge: string;
  readonly credentials: boolean;
}

function originRule(value: string): OriginRule {
  if (value === '**') return { kind: 'echo' };
  if (value.includes(',')) return { kind: 'list', origins: new Set(value.split(',').filter((o) => o !== '')) };
  return { kind: 'fixed', value };
}

function regexRule(field: string, patterns: readonly string[]): OriginRule {
  return {
    kind: 'regex',
    rules: patterns.map((p, i) => {
      try {
        return compileConfigRegex(p);
      } catch (err) {
        throw new Error(`${field}[${i}]: ${(err as Error).message}`);
      }
    }),
  };
}

/** The Access-Control-Allow-Origin value for this request's Origin, or undefined: not allowed. */
function allowedOrigin(rule: OriginRule, origin: string | undefined): string | undefined {
  let allowed: string | undefined;
  switch (rule.kind) {
    case 'fixed':
      allowed = rule.value;
      break;
    case 'echo':
      allowed = origin ?? '*';
      break;
    case 'list':
      allowed = origin !== undefined && rule.origins.has(origin) ? origin : undefined;
      break;
    case 'regex':
      allowed = origin !== undefined && rule.rules.some((r) => r.test(origin)) ? origin : undefined;
      break;
  }
  // APISIX's match_origins: a single configured origin other than the request's is no match
  return allowed === '*' || (allowed !== undefined && allowed === origin) ? allowed : undefined;
}

function setCorsHeaders(conf: Cors, ctx: PluginContext, response: ResponseView, origin: string): void {
  response.setHeader('Access-Control-Allow-Origin', origin);
  response.setHeader('Access-Control-Allow-Methods', conf.methods);
  response.setHeader('Access-Control-Max-Age', conf.maxAge);
  if (conf.expose !== undefined) response.setHeader('Access-Control-Expose-Headers', conf.expose);
  if (conf.headers === '**') {
    const requested = ctx.request.header('access-control-request-headers');
    if (requested !== undefined) response.setHeader('Access-Control-Allow-Headers', requested);
    else response.removeHeader('Access-Control-Allow-Headers');
  } else {
    response.setHeader('Access-Control-Allow-Headers', conf.headers);
  }
  if (conf.credentials) response.setHeader('Access-Control-Allow-Credentials', 'true');
}

export const cors = definePlugin({
  name: 'cors',
  priority: 4000,
  schema,
  compile(conf): Cors {
    if (conf.allow_origins_by_metadata !== undefined) {
      throw new Error('allow_origins_by_metadata is not supported (Portico has no plugin metadata); use allow_origins or allow_origins_by_regex');
    }
    if (
      conf.allow_credential &&
      (conf.allow_origins === '*' || conf.allow_methods === '*' || conf.allow_headers === '*' ||
        conf.expose_headers === '*' || conf.timing_allow_origins === '*')
    ) {
      throw new Error("you can not set '*' for other option when 'allow_credential' is true");
    }
    const origins = conf.allow_origins_by_regex !== undefined
      ? regexRule('allow_origins_by_regex', conf.allow_origins_by_regex)
      : originRule(conf.allow_origins);
    let timing: OriginRule | undefined;
    if (conf.timing_allow_origins_by_regex !== undefined) timing = regexRule('timing_allow_origins_by_regex', conf.timing_allow_origins_by_regex);
    else if (conf.timing_allow_origins !== undefined) timing = originRule(conf.timing_allow_origins);
    return {
      origins,
      timing,
      varyOrigin: conf.allow_origins !== '*',
      methods: conf.allow_methods === '**' ? ALL_METHODS : conf.allow_methods,
      headers: conf.allow_headers,
      expose: conf.expose_headers === undefined || conf.expose_headers === '' ? undefined : conf.expose_headers,
      maxAge: String(conf.max_age),
      credentials: conf.allow_credential,
    };
  },
  rewrite(_conf, ctx) {
    // the preflight is the gateway's to answer; header_filter adds the headers to it
    if (ctx.request.method === 'OPTIONS') return { status: 200, body: '' };
    return undefined;
  },
  header_filter(conf, ctx) {
    const response = ctx.response;
    if (response === undefined) return;
    // the request view is read-only, so this is the client's Origin (APISIX saves it in rewrite
    // because other plugins may rewrite request headers)
    const origin = ctx.request.header('origin');
    const allowed = allowedOrigin(conf.origins, origin);
    if (conf.varyOrigin) response.addHeader('Vary', 'Origin');
    if (allowed !== undefined) setCorsHeaders(conf, ctx, response, allowed);
    if (conf.timing !== undefined) {
      const timing = allowedOrigin(conf.timing, origin);
      if (timing !== undefined) response.setHeader('Timing-Allow-Origin', timing);
    }
  },
});
