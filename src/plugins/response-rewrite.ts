import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { Type, type Static } from '@sinclair/typebox';
import { log } from '../observability/log.ts';
import { compileVars, evaluateVars, type CompiledVars, type VarLookup, type VarSource } from '../router/vars.ts';
import { compileTemplate, exprLookup, type Template } from './nginx-var.ts';
import { checkHeader, safeHeaderValue } from './proxy-rewrite.ts';
import { compileSubstitution, type Substitution, type SubstitutionOptions } from './re-sub.ts';
import { definePlugin, type PluginContext } from './types.ts';

/**
 * response-rewrite (APISIX apisix/plugins/response-rewrite.lua): changes the response sent to the
 * client, the upstream's or a plugin's own answer (a key-auth 401 too: header_filter and
 * body_filter run after an early exit, as in APISIX).
 *  - `status_code`, `headers` ({add: ["Name: value"], set: {Name: value}, remove: [Name]},
 *    applied add, set, remove as APISIX's code does; or a flat map = set). Values may use the
 *    request's nginx variables (nginx-var.ts); response variables such as `$status` or
 *    `$balancer_ip` are not available in values (they read as empty). set to "" removes.
 *  - `body` (`body_base64`: decoded once, when the config is compiled): replaces the body, and
 *    drops Content-Length, Content-Encoding, ETag and Last-Modified (APISIX's
 *    clear_header_as_body_modified). Chunks before the last are swallowed, the new body goes out
 *    with the last one.
 *  - `filters`: regex substitutions on the body ([{regex, replace, scope: once | global, options}],
 *    ngx.re.sub / gsub semantics on the linear-time config regex engine, src/plugins/re-sub.ts).
 *    The body is held (up to `max_resp_body_size` bytes; a longer one is cut there, as APISIX) and
 *    sent filtered with the last chunk; a gzip or br body is decoded first and sent plain (as
 *    APISIX); another Content-Encoding leaves the response untouched. Text is matched as UTF-8
 *    when the body is valid UTF-8, else byte by byte (latin1). Options: i, m, s; j, o, u accepted
 *    (JIT, compile-once and UTF-8 mean nothing here); others (x, a, D, J, U) rejected.
 *  - `vars`: a lua-resty-expr expression (src/router/vars.ts); the plugin applies only to
 *    responses that match. Besides the request variables vars.ts knows (uri, host, arg_*, http_*,
 *    ...), it reads `status`, `upstream_status` (the status of an upstream's response; absent for
 *    the gateway's own answers) and `sent_http_<name>` / `upstream_http_<name>` (the response's
 *    header, before this plugin changes it).
 * Priority 899.
 */

const HeaderName = Type.String({ pattern: '^[^:]+$' });
const Scalar = Type.Union([Type.String(), Type.Number()]);
const FlatHeaders = Type.Record(HeaderName, Scalar, { minProperties: 1 });
const HeaderActions = Type.Object({
  add: Type.Optional(Type.Array(Type.String({ pattern: '^[^:]+:[^:]*[^/]$' }), { minItems: 1 })),
  set: Type.Optional(Type.Record(HeaderName, Scalar, { minProperties: 1 })),
  remove: Type.Optional(Type.Array(HeaderName, { minItems: 1 })),
});

const Filter = Type.Object(
  {
    regex: Type.String({ minLength: 1 }),
    scope: Type.Unsafe<'once' | 'global'>({ type: 'string', enum: ['once', 'global'], default: 'once' }),
    replace: Type.String(),
    options: Type.String({ default: 'jo' }),
  },
);

const schema = Type.Object(
  {
    max_resp_body_size: Type.Integer({ minimum: 1, default: 67108864 }),
    // APISIX: anyOf(flat map, actions); ajv reports a failed anyOf by whichever branch failed
    // last, so the shape is chosen first (by APISIX's own test: add, set or remove present)
    headers: Type.Optional(
      Type.Unsafe<Static<typeof FlatHeaders> | Static<typeof HeaderActions>>({
        if: { type: 'object', anyOf: [{ required: ['add'] }, { required: ['set'] }, { required: ['remove'] }] },
        then: HeaderActions,
        else: FlatHeaders,
      }),
    ),
    body: Type.Optional(Type.String()),
    body_base64: Type.Boolean({ default: false }),
    status_code: Type.Optional(Type.Integer({ minimum: 200, maximum: 598 })),
    vars: Type.Optional(Type.Array(Type.Unknown())),
    filters: Type.Optional(Type.Array(Filter, { minItems: 1 })),
  },
  // APISIX's dependencies (body excludes filters) are checked in compile: ajv's reason for a
  // failed `not` is "must NOT be valid", which names nothing
);

type HeaderOp = readonly ['add' | 'set', string, Template] | readonly ['remove', string];

interface ResponseRewrite {
  readonly status: number | undefined;
  readonly body: Buffer | undefined;
  readonly headers: readonly HeaderOp[];
  readonly vars: CompiledVars | undefined;
  /** the requests whose response matched `vars` in header_filter (body_filter replaces theirs) */
  readonly matched: WeakSet<PluginContext>;
  readonly filters: readonly BodyFilter[] | undefined;
  readonly maxBody: number;
  /** the bodies being held for filtering, per request */
  readonly held: WeakMap<PluginContext, HeldBody>;
}

interface BodyFilter {
  readonly substitution: Substitution;
  readonly global: boolean;
}

interface HeldBody {
  readonly chunks: Buffer[];
  size: number;
  readonly encoding: 'gzip' | 'br' | undefined;
}

// ---------------------------------------------------------------------------------------------
// vars over the response
//
// vars.ts resolves request variables only. Response variables are renamed, before compiling, to
// `http_` names whose header (`:status`, `:sent:<name>`) no request can carry (a header name is a
// token, without `:`), and the lookup answers those from the response.

const RESPONSE_HEADER = ':sent:';

function responseVarName(name: string): string {
  if (name === 'status') return 'http_:status';
  if (name === 'upstream_status') return 'http_:upstream_status';
  for (const prefix of ['sent_http_', 'upstream_http_']) {
    if (name.startsWith(prefix) && name.length > prefix.length) return `http_${RESPONSE_HEADER}${name.slice(prefix.length)}`;
  }
  return name;
}

const LOGIC = new Set(['AND', 'OR', '!AND', '!OR']);

/** The expression with response variable names renamed (the shapes compileVars accepts). */
function renameResponseVars(rule: unknown): unknown {
  if (!Array.isArray(rule) || rule.length === 0) return rule;
  if (Array.isArray(rule[0])) return rule.map(renameResponseVars);
  if (typeof rule[0] === 'string' && LOGIC.has(rule[0].toUpperCase())) return [rule[0], ...rule.slice(1).map(renameResponseVars)];
  return typeof rule[0] === 'string' ? [responseVarName(rule[0]), ...rule.slice(1)] : rule;
}

function compileResponseVars(vars: unknown[]): CompiledVars {
  try {
    return compileVars(renameResponseVars(vars));
  } catch (err) {
    let message = (err as Error).message;
    if (message.includes('unsupported variable')) message += ', status, upstream_status, sent_http_<name>, upstream_http_<name>';
    throw new Error(`/vars: failed to validate the 'vars' expression: ${message}`);
  }
}

function responseLookup(ctx: PluginContext): VarLookup {
  const request = exprLookup(ctx);
  const response = ctx.response!;
  return {
    get(source: VarSource): string | undefined {
      if (source.kind !== 'http' || source.header.charCodeAt(0) !== 0x3a /* : */) return request.get(source);
      if (source.header === ':status') return String(response.status);
      if (source.header === ':upstream-status') return response.local ? undefined : String(response.status);
      return response.header(source.header.slice(RESPONSE_HEADER.length));
    },
  };
}

// ---------------------------------------------------------------------------------------------

const STANDARD_BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(text: string): Buffer {
  // ngx.decode_base64: standard alphabet, padding optional; anything else is invalid
  if (text.length === 0 || !STANDARD_BASE64.test(text) || text.length % 4 === 1) throw new Error('/body: invalid base64 content');
  return Buffer.from(text, 'base64');
}

/** ngx.re options as the substitution engine takes them; throws on one it cannot honour. */
function regexOptions(options: string, where: string): SubstitutionOptions {
  const out: { caseless?: boolean; multiline?: boolean; dotall?: boolean } = {};
  for (const o of options) {
    if (o === 'i') out.caseless = true;
    else if (o === 'm') out.multiline = true;
    else if (o === 's') out.dotall = true;
    else if (o !== 'j' && o !== 'o' && o !== 'u') {
      throw new Error(`${where}: regex option '${o}' is not supported (supported: i, m, s; j, o, u are accepted and change nothing)`);
    }
  }
  return out;
}

function compileFilters(filters: NonNullable<Static<typeof schema>['filters']>): BodyFilter[] {
  return filters.map((f, i) => {
    const options = regexOptions(f.options, `/filters/${i}/options`);
    try {
      return { substitution: compileSubstitution(f.regex, f.replace, options), global: f.scope === 'global' };
    } catch (err) {
      throw new Error(`/filters/${i}: regex "${f.regex}" validation failed: ${(err as Error).message}`);
    }
  });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The held body decoded, filtered and encoded as it came (UTF-8 or bytes). */
function filterBody(conf: ResponseRewrite, held: HeldBody): Buffer {
  let body = held.chunks.length === 1 ? held.chunks[0]! : Buffer.concat(held.chunks);
  if (held.encoding !== undefined) {
    // bounded like the held body: a small compressed body must not inflate without limit
    const limit = { maxOutputLength: Math.min(conf.maxBody, 0x7fffffff) };
    try {
      body = held.encoding === 'gzip' ? gunzipSync(body, limit) : brotliDecompressSync(body, limit);
    } catch (err) {
      log.warn({ plugin: 'response-rewrite', encoding: held.encoding, err: (err as Error).message }, 'cannot decode the response body to filter it; sending it empty');
      return Buffer.alloc(0);
    }
  }
  let text: string;
  let encoding: 'utf8' | 'latin1' = 'utf8';
  try {
    text = utf8.decode(body);
  } catch {
    encoding = 'latin1';
    text = body.toString('latin1');
  }
  for (const f of conf.filters!) text = f.global ? f.substitution.gsub(text) : (f.substitution.sub(text)?.result ?? text);
  return Buffer.from(text, encoding);
}

function compileHeaders(headers: NonNullable<Static<typeof schema>['headers']>): HeaderOp[] {
  const ops: HeaderOp[] = [];
  const template = (where: string, name: string, value: unknown): Template => {
    // APISIX's check_set_headers
    if (typeof value !== 'string' && typeof value !== 'number') throw new Error(`${where}: invalid type as header value`);
    const text = String(value);
    checkHeader(where, name, text);
    return compileTemplate(text);
  };
  const h = headers as Record<string, unknown>;
  const isActions = ['add', 'set', 'remove'].some((k) => typeof h[k] === 'object' && h[k] !== null);
  if (!isActions) {
    for (const [name, value] of Object.entries(h)) ops.push(['set', name, template('/headers', name, value)]);
    return ops;
  }
  const { add, set, remove } = headers as Static<typeof HeaderActions>;
  (add ?? []).forEach((line, i) => {
    // APISIX splits with ^([^:\s]+)\s*:\s*([^:]+)$ and drops every header action when one fails
    const m = /^([^:\s]+)\s*:\s*([^:]+)$/.exec(line);
    if (m === null) throw new Error(`/headers/add/${i}: expected "Name: value", got ${JSON.stringify(line)}`);
    ops.push(['add', m[1]!, template(`/headers/add/${i}`, m[1]!, m[2]!.trimEnd())]);
  });
  for (const [name, value] of Object.entries(set ?? {})) ops.push(['set', name, template('/headers/set', name, value)]);
  for (const name of remove ?? []) {
    checkHeader('/headers/remove', name);
    ops.push(['remove', name]);
  }
  return ops;
}

export const responseRewrite = definePlugin({
  name: 'response-rewrite',
  priority: 899,
  schema,
  compile(conf): ResponseRewrite {
    if (conf.filters !== undefined && conf.body !== undefined) throw new Error('/body: body and filters cannot both be configured');
    let body: Buffer | undefined;
    if (conf.body_base64) {
      if (conf.body === undefined) throw new Error('/body: invalid base64 content');
      body = decodeBase64(conf.body);
    } else if (conf.body !== undefined) body = Buffer.from(conf.body);
    return {
      status: conf.status_code,
      body,
      headers: conf.headers === undefined ? [] : compileHeaders(conf.headers),
      vars: conf.vars === undefined ? undefined : compileResponseVars(conf.vars),
      matched: new WeakSet(),
      filters: conf.filters === undefined ? undefined : compileFilters(conf.filters),
      maxBody: conf.max_resp_body_size,
      held: new WeakMap(),
    };
  },
  header_filter(conf, ctx) {
    const response = ctx.response!;
    if (conf.vars !== undefined && !evaluateVars(conf.vars, responseLookup(ctx))) return;
    if (conf.status !== undefined) response.status = conf.status;
    let modified = conf.body !== undefined;
    if (conf.body !== undefined) conf.matched.add(ctx);
    else if (conf.filters !== undefined) {
      const coding = (response.header('content-encoding') ?? '').trim().toLowerCase();
      if (coding === '' || coding === 'identity' || coding === 'gzip' || coding === 'br') {
        conf.held.set(ctx, { chunks: [], size: 0, encoding: coding === 'gzip' || coding === 'br' ? coding : undefined });
        modified = true;
      }
    }
    if (modified) {
      // the body is no longer the one these describe (a decoded body is sent plain)
      for (const name of ['Content-Length', 'Content-Encoding', 'ETag', 'Last-Modified']) response.removeHeader(name);
    }
    for (const op of conf.headers) {
      if (op[0] === 'remove') {
        response.removeHeader(op[1]);
        continue;
      }
      const [action, name, template] = op;
      const value = safeHeaderValue(template(ctx));
      if (action === 'add') response.addHeader(name, value);
      else if (value === '') response.removeHeader(name);
      else response.setHeader(name, value);
    }
  },
  body_filter(conf, ctx, chunk, last) {
    if (conf.body !== undefined) {
      if (!conf.matched.has(ctx)) return undefined;
      return last ? conf.body : Buffer.alloc(0);
    }
    const held = conf.held.get(ctx);
    if (held === undefined) return undefined;
    if (held.size < conf.maxBody && chunk.length > 0) {
      const kept = held.size + chunk.length > conf.maxBody ? chunk.subarray(0, conf.maxBody - held.size) : chunk;
      // a copy: the transport may reuse the memory of a chunk once it is passed on
      held.chunks.push(Buffer.from(kept));
      held.size += kept.length;
    }
    if (!last) return Buffer.alloc(0);
    conf.held.delete(ctx);
    return filterBody(conf, held);
  },
});
