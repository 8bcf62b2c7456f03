import { Type } from '@sinclair/typebox';
import { compileTemplate, escapeUri, type Template } from './nginx-var.ts';
import { compileSubstitution, type Substitution } from './re-sub.ts';
import { definePlugin, type PluginAnswer, type PluginContext } from './types.ts';

/**
 * redirect (APISIX): answers with `ret_code` (302) and a `Location` header, an empty body, no
 * upstream call. Exactly one of:
 *  - `uri`: the target, with nginx variables (`$uri`, `${arg_name}`, `$host`, `$request_uri`,
 *    ... see src/plugins/nginx-var.ts; an unknown variable is empty, `\$name` stays as written);
 *  - `regex_uri`: [regex, replacement] applied to `$uri` (first match, `$1` / `${1}` / `$0`
 *    groups, `$$` a dollar, as ngx.re.sub); a request whose uri does not match goes upstream;
 *  - `http_to_https`: a plain-HTTP request (X-Forwarded-Proto first) goes to
 *    `https://$host$request_uri` with 301 (GET, HEAD) or 308 (other methods: they keep their
 *    body), whatever `ret_code` says. No port: Portico has no `plugin_attr.redirect.https_port`
 *    nor an SSL listener to take one from, so 443.
 * `encode_uri` escapes the target's path as nginx does (space, #, %, ?, controls, non-ASCII);
 * `append_query_string` adds the request's query (`?` or `&`). Runs in rewrite (priority 900).
 */
const schema = Type.Object(
  {
    ret_code: Type.Integer({ minimum: 200, default: 302 }),
    uri: Type.Optional(Type.String({ minLength: 2 })),
    regex_uri: Type.Optional(Type.Array(Type.String(), { minItems: 2, maxItems: 2 })),
    http_to_https: Type.Optional(Type.Boolean()),
    encode_uri: Type.Boolean({ default: false }),
    append_query_string: Type.Boolean({ default: false }),
  },
  // APISIX's oneOf(required uri | regex_uri | http_to_https) is checked in compile: ajv reports a
  // failed oneOf by one branch's error, which names a field the user did not mean to set
);

interface Redirect {
  readonly status: number;
  readonly httpToHttps: boolean;
  readonly uri: Template | undefined;
  readonly regex: Substitution | undefined;
  readonly encode: boolean;
  readonly appendQuery: boolean;
}

function compileRegexUri(pattern: string, replacementText: string): Substitution {
  try {
    return compileSubstitution(pattern, replacementText);
  } catch (err) {
    throw new Error(`invalid regex_uri (${pattern}, ${replacementText}): ${(err as Error).message}`);
  }
}

/** Characters a Location header cannot carry as is (controls, non-ASCII) percent-encoded as UTF-8. */
function safeHeaderValue(value: string): string {
  // eslint-disable-next-line no-control-regex
  const unsafe = /[\x00-\x1f\x7f]|[^\x00-\x7f]+/g;
  return value.replace(unsafe, (s) => {
    let out = '';
    for (const b of Buffer.from(s, 'utf8')) out += `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
    return out;
  });
}

const HTTPS_TARGET = compileTemplate('https://$host$request_uri');

export const redirect = definePlugin({
  name: 'redirect',
  priority: 900,
  schema,
  compile(conf): Redirect {
    const set = (['uri', 'regex_uri', 'http_to_https'] as const).filter((k) => conf[k] !== undefined);
    if (set.length !== 1) {
      throw new Error(`exactly one of uri, regex_uri and http_to_https must be configured${set.length ? ` (got ${set.join(', ')})` : ''}`);
    }
    if (conf.http_to_https && conf.append_query_string) {
      throw new Error('only one of `http_to_https` and `append_query_string` can be configured.');
    }
    return {
      status: conf.ret_code,
      httpToHttps: conf.http_to_https === true,
      uri: conf.uri === undefined ? undefined : compileTemplate(conf.uri),
      regex: conf.regex_uri === undefined ? undefined : compileRegexUri(conf.regex_uri[0]!, conf.regex_uri[1]!),
      encode: conf.encode_uri,
      appendQuery: conf.append_query_string,
    };
  },
  rewrite(conf, ctx) {
    let status = conf.status;
    let target: string | undefined;
    if (conf.httpToHttps) {
      const scheme = ctx.request.header('x-forwarded-proto') ?? ctx.request.scheme;
      if (scheme === 'https') return undefined;
      target = HTTPS_TARGET(ctx);
      status = ctx.request.method === 'GET' || ctx.request.method === 'HEAD' ? 301 : 308;
    } else if (conf.uri !== undefined) {
      target = conf.uri(ctx);
    } else if (conf.regex !== undefined) {
      // ngx.re.sub(uri, regex, replacement, "jo"): the first match replaced
      target = conf.regex.sub(ctx.request.path)?.result;
    }
    if (target === undefined) return undefined;
    return answer(conf, ctx, status, target);
  },
});

function answer(conf: Redirect, ctx: PluginContext, status: number, target: string): PluginAnswer {
  let location = target;
  const q = location.indexOf('?');
  if (conf.encode) location = q === -1 ? escapeUri(location) : escapeUri(location.slice(0, q)) + location.slice(q);
  if (conf.appendQuery && ctx.request.query !== '') location += (q === -1 ? '?' : '&') + ctx.request.query;
  return { status, headers: { Location: safeHeaderValue(location) }, body: '' };
}
