import { Type, type Static } from '@sinclair/typebox';
import { StringEnum } from '../config/schema/common.ts';
import { headerNameProblem, headerValueProblem } from '../security/header-value.ts';
import { escapeUri, varReader, type VarReader } from './nginx-var.ts';
import { compileSubstitution, type Substitution } from './re-sub.ts';
import { definePlugin, type PluginAnswer, type PluginContext } from './types.ts';

/**
 * proxy-rewrite (APISIX apisix/plugins/proxy-rewrite.lua): changes the request sent upstream.
 *  - `uri`: the new path, with nginx variables (`$uri`, `${arg_name ?? x}`, see nginx-var.ts). A
 *    literal `?` in it starts a query; a `?` that comes from a variable stays in the path (APISIX's
 *    escape_separator).
 *  - `regex_uri`: [regex, replacement, regex, replacement, ...] applied to `$uri`; the first
 *    regex that matches replaces its first match (ngx.re.sub: `$0`, `$1`, `${1}`, `$$`), later
 *    pairs are not tried; no match leaves the uri as it is. `uri` wins when both are set.
 *  - The client's query string is kept: appended with `?`, or with `&` when the new uri has its
 *    own query (APISIX's `is_args` rule).
 *  - `method`, `host` (the Host header sent upstream).
 *  - `headers`: {add, set, remove} (applied in that order, as APISIX's code does; its docs say
 *    add, remove, set) or the older flat map (= set). Values may be arrays (add: one header per
 *    value; set: the header replaced by all of them), and may use nginx variables and the
 *    regex_uri captures (`$1`, `${2}`). set to "" removes the header (nginx's set_header).
 * Not supported: `scheme` (the upstream's own scheme decides; APISIX 3.x dropped it from this
 * plugin too, and like APISIX the field is accepted and ignored), `use_real_request_uri_unsafe`
 * (accepted when false; true is rejected: Portico does not keep the raw request target).
 *
 * Safety, beyond APISIX: the rewritten path is normalised (RFC 3986 remove_dot_segments) before
 * it is escaped, so `/a/../b` goes up as `/b`; a rewrite that climbs above the root (`/..`, or a
 * replacement such as `../etc` that does not start with `/`) is answered 400 and never reaches the
 * upstream. Header values made from request data (a `$uri` holding a decoded `%0A`) have their
 * control and non-ASCII characters percent-encoded instead of failing the request.
 * Runs in rewrite, priority 1008.
 */

const METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'DELETE', 'OPTIONS', 'MKCOL', 'COPY', 'MOVE', 'PROPFIND', 'LOCK', 'UNLOCK', 'PATCH', 'TRACE'] as const;

const HeaderName = Type.String({ pattern: '^[^:]+$' });
const Scalar = Type.Union([Type.String(), Type.Number()]);
const OneOrMany = Type.Union([Scalar, Type.Array(Scalar, { minItems: 1 })]);

const HeaderActions = Type.Object(
  {
    add: Type.Optional(Type.Record(HeaderName, OneOrMany, { minProperties: 1 })),
    set: Type.Optional(Type.Record(HeaderName, OneOrMany, { minProperties: 1 })),
    remove: Type.Optional(Type.Array(HeaderName, { minItems: 1 })),
  },
  { minProperties: 1, additionalProperties: false },
);
const FlatHeaders = Type.Record(HeaderName, Scalar, { minProperties: 1 });

const schema = Type.Object(
  {
    uri: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: '^\\/.*' })),
    method: Type.Optional(StringEnum(METHODS)),
    regex_uri: Type.Optional(Type.Array(Type.String(), { minItems: 2 })),
    host: Type.Optional(Type.String({ pattern: '^[0-9a-zA-Z-.]+(:\\d{1,5})?$' })),
    // APISIX: oneOf; the two shapes exclude each other (a flat map's values are never objects)
    headers: Type.Optional(Type.Union([HeaderActions, FlatHeaders])),
    use_real_request_uri_unsafe: Type.Boolean({ default: false }),
  },
  { minProperties: 1 },
);

function compileRegexRule(pattern: string, replacement: string, i: number): Substitution {
  try {
    return compileSubstitution(pattern, replacement);
  } catch (err) {
    throw new Error(`/regex_uri/${i}: invalid regex_uri(${pattern}, ${replacement}): ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// $var templates: header values (variables and regex_uri captures), the uri (variables)

type Piece = string | { readonly read: VarReader; readonly fallback: string | undefined } | { readonly capture: number };
/** A compiled template: rendered with the request and the regex_uri captures (none: empty). */
export type Template = (ctx: PluginContext, captures: readonly string[] | undefined) => string;

// `\$x` kept as written; `${N}` / `$N` a capture (header values only); `${name ?? default}`, `$name`
const TOKEN = /\\\$[0-9A-Za-z_]*|\$\{\s*(\d+)\s*\}|\$(\d+)|\$\{\s*([^}]+?)\s*\}|\$([0-9A-Za-z_]+)/g;

function compilePieces(text: string, withCaptures: boolean): Piece[] {
  const pieces: Piece[] = [];
  let last = 0;
  for (const m of text.matchAll(TOKEN)) {
    if (m.index > last) pieces.push(text.slice(last, m.index));
    last = m.index + m[0].length;
    const capture = m[1] ?? m[2];
    if (m[0].charCodeAt(0) === 0x5c /* \ */) pieces.push(m[0]);
    else if (capture !== undefined) {
      // APISIX resolves `$1` in the uri as the nginx variable "1", which does not exist: empty
      pieces.push(withCaptures ? { capture: Number(capture) } : '');
    } else {
      let name = m[4] ?? m[3]!;
      let fallback: string | undefined;
      const at = m[4] === undefined ? name.indexOf('??') : -1;
      if (at !== -1) {
        fallback = name.slice(at + 2).trim();
        name = name.slice(0, at).trim();
      }
      pieces.push({ read: varReader(name), fallback });
    }
  }
  if (last < text.length) pieces.push(text.slice(last));
  return pieces;
}

function render(pieces: readonly Piece[], ctx: PluginContext, captures: readonly string[] | undefined, escapeValue?: (v: string) => string): string {
  let out = '';
  for (const p of pieces) {
    if (typeof p === 'string') out += p;
    else if ('capture' in p) out += captures?.[p.capture] ?? '';
    else {
      const v = p.read(ctx) ?? p.fallback ?? '';
      out += escapeValue ? escapeValue(v) : v;
    }
  }
  return out;
}

/**
 * A header value template. Substitution is one pass (APISIX substitutes captures, then variables
 * in the result, so a capture holding `$arg_x` would be read as a variable: not here).
 */
export function compileHeaderTemplate(text: string): Template {
  if (!text.includes('$')) return () => text;
  const pieces = compilePieces(text, true);
  return (ctx, captures) => safeHeaderValue(render(pieces, ctx, captures));
}

// eslint-disable-next-line no-control-regex
const UNSAFE_IN_HEADER = /[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\x7f]+/g;

/**
 * A value made from request data as a header can carry it: control characters (but HTAB) and
 * non-ASCII text percent-encoded as UTF-8, surrounding blanks dropped (a parser strips them).
 */
export function safeHeaderValue(value: string): string {
  if (headerValueProblem(value) === undefined) return value;
  const encoded = value.replace(UNSAFE_IN_HEADER, (s) => {
    let out = '';
    for (const b of Buffer.from(s, 'utf8')) out += `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
    return out;
  });
  return encoded.replace(/^[ \t]+|[ \t]+$/g, '');
}

/** The header name and literal value checks of APISIX's check_set_headers, for every shape. */
export function checkHeader(where: string, name: string, value?: string): void {
  if (name === '') throw new Error(`${where}: invalid field length in header`);
  const nameProblem = headerNameProblem(name);
  if (nameProblem !== undefined) throw new Error(`${where}: invalid field character in header ${JSON.stringify(name)}: ${nameProblem}`);
  if (value === undefined) return;
  const valueProblem = headerValueProblem(value);
  if (valueProblem !== undefined) throw new Error(`${where}: invalid value character in header ${name}: ${valueProblem}`);
}

// ---------------------------------------------------------------------------------------------
// the uri

// eslint-disable-next-line no-control-regex
const UNSAFE_IN_QUERY = /[\x00-\x20#\x7f]|[^\x00-\x7f]+/g;

/** A query part as a request target can carry it (controls, space, `#`, non-ASCII encoded). */
function safeQuery(query: string): string {
  return query.replace(UNSAFE_IN_QUERY, (s) => {
    let out = '';
    for (const b of Buffer.from(s, 'utf8')) out += `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
    return out;
  });
}

/**
 * RFC 3986 §5.2.4 remove_dot_segments on a decoded path, refusing to climb above the root
 * (RFC 3986 would silently stop at the root: an upstream that resolves `..` itself, or a file
 * server behind it, must not be handed a path that tried). A path not starting with `/` is taken
 * from the root. Returns undefined when the path climbs above the root.
 */
export function normalizePath(path: string): string | undefined {
  if (path.charCodeAt(0) !== 0x2f) path = '/' + path;
  if (!path.includes('.')) return path;
  const segments = path.slice(1).split('/');
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    const lastSegment = i === segments.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..') {
        if (out.length === 0) return undefined;
        out.pop();
      }
      // a trailing `.` or `..` leaves a directory: keep the trailing slash
      if (lastSegment) out.push('');
      continue;
    }
    out.push(s);
  }
  return '/' + out.join('/');
}

interface UriTemplate {
  /** the path part, before the template's first literal `?` */
  readonly path: readonly Piece[];
  /** the query part after it; undefined: the template has no query */
  readonly query: readonly Piece[] | undefined;
}

function compileUriTemplate(text: string): UriTemplate {
  const pieces = compilePieces(text, false);
  const path: Piece[] = [];
  let query: Piece[] | undefined;
  for (const p of pieces) {
    if (query !== undefined) query.push(p);
    else if (typeof p === 'string' && p.includes('?')) {
      const q = p.indexOf('?');
      if (q > 0) path.push(p.slice(0, q));
      query = q + 1 < p.length ? [p.slice(q + 1)] : [];
    } else path.push(p);
  }
  return { path, query };
}

// ---------------------------------------------------------------------------------------------

type HeaderOp = readonly ['add' | 'set', string, readonly Template[]] | readonly ['remove', string];

interface ProxyRewrite {
  readonly uri: UriTemplate | undefined;
  readonly regex: readonly Substitution[] | undefined;
  readonly method: string | undefined;
  readonly host: string | undefined;
  readonly headers: readonly HeaderOp[];
}

const BAD_PATH: PluginAnswer = { status: 400, body: { error_msg: 'proxy-rewrite: the rewritten uri leads above the root' } };

function compileHeaders(headers: NonNullable<Static<typeof schema>['headers']>): HeaderOp[] {
  const ops: HeaderOp[] = [];
  const values = (where: string, name: string, v: string | number | (string | number)[]): Template[] =>
    (Array.isArray(v) ? v : [v]).map((item) => {
      const text = String(item);
      checkHeader(where, name, text);
      return compileHeaderTemplate(text);
    });
  const actions = headers as { add?: unknown; set?: unknown; remove?: unknown };
  const isActions = ['add', 'set', 'remove'].some((k) => typeof actions[k as 'add'] === 'object' && actions[k as 'add'] !== null);
  if (!isActions) {
    for (const [name, v] of Object.entries(headers as Record<string, string | number>)) ops.push(['set', name, values('/headers', name, v)]);
    return ops;
  }
  const { add, set, remove } = headers as Static<typeof HeaderActions>;
  for (const [name, v] of Object.entries(add ?? {})) {
    // a second Host would be a smuggling vector; APISIX says to use `host` for it
    if (name.toLowerCase() === 'host') throw new Error('/headers/add: a request has one Host header: use `host` to change it');
    ops.push(['add', name, values('/headers/add', name, v)]);
  }
  for (const [name, v] of Object.entries(set ?? {})) {
    if (name.toLowerCase() === 'host' && Array.isArray(v) && v.length > 1) throw new Error('/headers/set: a request has one Host header');
    ops.push(['set', name, values('/headers/set', name, v)]);
  }
  for (const name of remove ?? []) {
    checkHeader('/headers/remove', name);
    ops.push(['remove', name]);
  }
  return ops;
}

export const proxyRewrite = definePlugin({
  name: 'proxy-rewrite',
  priority: 1008,
  schema,
  compile(conf): ProxyRewrite {
    if (conf.use_real_request_uri_unsafe) {
      throw new Error('/use_real_request_uri_unsafe: not supported: Portico forwards the normalised uri only');
    }
    let regex: Substitution[] | undefined;
    if (conf.regex_uri !== undefined) {
      if (conf.regex_uri.length % 2 !== 0) throw new Error('/regex_uri: The length of regex_uri should be an even number');
      regex = [];
      for (let i = 0; i < conf.regex_uri.length; i += 2) regex.push(compileRegexRule(conf.regex_uri[i]!, conf.regex_uri[i + 1]!, i));
    }
    return {
      uri: conf.uri === undefined ? undefined : compileUriTemplate(conf.uri),
      regex,
      method: conf.method,
      host: conf.host,
      headers: conf.headers === undefined ? [] : compileHeaders(conf.headers),
    };
  },
  rewrite(conf, ctx) {
    let captures: string[] | undefined;
    if (conf.uri !== undefined || conf.regex !== undefined) {
      let path: string | undefined;
      let query: string | undefined;
      if (conf.uri !== undefined) {
        path = render(conf.uri.path, ctx, undefined);
        // a `?` from a variable's value is data, not a separator (APISIX's escape_separator)
        if (conf.uri.query !== undefined) query = render(conf.uri.query, ctx, undefined, (v) => v.replaceAll('?', '%3F'));
      } else {
        const uri = ctx.request.path;
        for (const rule of conf.regex!) {
          const result = rule.sub(uri);
          if (result === null) continue;
          captures = result.captures;
          path = result.result;
          // a `?` the replacement wrote starts a query, unless the uri already had one (a
          // decoded %3F): APISIX then escapes the whole result as a path
          const q = uri.includes('?') ? -1 : path.indexOf('?');
          if (q !== -1) {
            query = path.slice(q + 1);
            path = path.slice(0, q);
          }
          break;
        }
      }
      if (path !== undefined) {
        const normalized = normalizePath(path);
        if (normalized === undefined) return BAD_PATH;
        // the client's query (as earlier plugins left it: key-auth may have hidden a key) follows
        const current = ctx.upstream.uri;
        const q = current.indexOf('?');
        const clientQuery = q === -1 ? '' : current.slice(q + 1);
        let target = escapeUri(normalized);
        if (query !== undefined) target += '?' + safeQuery(query);
        if (clientQuery !== '') target += (query !== undefined ? '&' : '?') + clientQuery;
        ctx.upstream.uri = target;
      }
    }
    if (conf.host !== undefined) ctx.upstream.host = conf.host;
    for (const op of conf.headers) {
      if (op[0] === 'remove') {
        ctx.upstream.removeHeader(op[1]);
        continue;
      }
      const [action, name, templates] = op;
      if (action === 'set') {
        // nginx's set_header: an empty value removes the header; an array sets one header per value
        let first = true;
        for (const t of templates) {
          const v = t(ctx, captures);
          if (v === '') continue;
          if (first) ctx.upstream.setHeader(name, v);
          else ctx.upstream.addHeader(name, v);
          first = false;
        }
        if (first) ctx.upstream.removeHeader(name);
      } else {
        for (const t of templates) ctx.upstream.addHeader(name, t(ctx, captures));
      }
    }
    if (conf.method !== undefined) ctx.upstream.method = conf.method;
    return undefined;
  },
});
