/**
 * The nginx variables APISIX plugins read (`ctx.var.<name>` in Lua), for plugins that take them
 * from config: `$var` templates (redirect's `uri`, fault-injection's `abort.body` and
 * `abort.headers`), lua-resty-expr `vars` (fault-injection) and the limit-* plugins' keys
 * (limit-key.ts). One place, so every plugin reads a variable the same way.
 *
 * Supported names: uri, request_uri, host, scheme, request_method, remote_addr, args,
 * query_string, is_args, route_id, service_id, consumer_name, arg_<name>, http_<name>,
 * cookie_<name>. Any other name reads as absent (APISIX's behaviour for a variable nginx does not
 * have: `$uri/$bad_var/bar` gives `/hello//bar`).
 */
import type { PluginContext, RequestView } from './types.ts';
import type { VarLookup, VarSource } from '../router/vars.ts';

/**
 * nginx `$request_uri`. Portico keeps the decoded, normalized path (`$uri`), not the raw request
 * target, so this is the path re-escaped the way nginx escapes a uri plus the raw query: equal
 * to the raw target for every path that needed no decoding, and never lets `%2e` or `%2F`
 * spellings slip past a rule written against the plain form.
 */
export function requestUri(request: RequestView): string {
  const path = escapeUri(request.path);
  return request.query === '' ? path : `${path}?${request.query}`;
}

// nginx ngx_escape_uri(NGX_ESCAPE_URI): " ", "#", "%", "?", controls, DEL and every non-ASCII byte
const MUST_ESCAPE = new Uint8Array(256);
for (let b = 0; b < 256; b++) MUST_ESCAPE[b] = b <= 0x20 || b >= 0x7f || b === 0x23 || b === 0x25 || b === 0x3f ? 1 : 0;
const utf8 = new TextEncoder();

/** `core.utils.uri_safe_encode` (nginx ngx_escape_uri, NGX_ESCAPE_URI mode), on UTF-8 bytes. */
export function escapeUri(text: string): string {
  let plain = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 0xff || MUST_ESCAPE[c] === 1) {
      plain = false;
      break;
    }
  }
  if (plain) return text;
  let out = '';
  for (const b of utf8.encode(text)) {
    out += MUST_ESCAPE[b] === 1 ? `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}` : String.fromCharCode(b);
  }
  return out;
}

/** Reads a variable from a request; resolved from its name once, when the config is compiled. */
export type VarReader = (ctx: PluginContext) => string | undefined;

/** The names knownVarReader reads, for error messages. */
export const SUPPORTED_VARS =
  'uri, request_uri, host, scheme, request_method, remote_addr, args, query_string, is_args, route_id, service_id, ' +
  'consumer_name, arg_<name>, http_<name>, cookie_<name>';

const absent: VarReader = () => undefined;

/** The reader for an nginx variable name; unknown names read as absent (undefined). */
export function varReader(name: string): VarReader {
  return knownVarReader(name) ?? absent;
}

/** The reader for an nginx variable name, undefined for a name Portico does not provide. */
export function knownVarReader(name: string): VarReader | undefined {
  switch (name) {
    case 'uri':
      return (ctx) => ctx.request.path;
    case 'request_uri':
      return (ctx) => requestUri(ctx.request);
    case 'host':
      return (ctx) => ctx.request.host;
    case 'scheme':
      return (ctx) => ctx.request.scheme;
    case 'request_method':
      return (ctx) => ctx.request.method;
    case 'remote_addr':
      return (ctx) => ctx.request.clientAddress;
    case 'args':
    case 'query_string':
      return (ctx) => ctx.request.query;
    case 'is_args':
      return (ctx) => (ctx.request.query === '' ? '' : '?');
    case 'route_id':
      return (ctx) => ctx.routeId;
    case 'service_id':
      return (ctx) => ctx.serviceId;
    case 'consumer_name':
      return (ctx) => ctx.consumer?.username;
    default:
      break;
  }
  if (name.startsWith('arg_') && name.length > 4) {
    const arg = name.slice(4);
    return (ctx) => ctx.request.arg(arg);
  }
  if (name.startsWith('cookie_') && name.length > 7) {
    const cookie = name.slice(7);
    return (ctx) => ctx.request.cookie(cookie);
  }
  if (name.startsWith('http_') && name.length > 5) {
    // nginx lower-cases and maps '_' to '-': $http_x_api_key is the X-Api-Key header
    const header = name.slice(5).toLowerCase().replaceAll('_', '-');
    return (ctx) => ctx.request.header(header);
  }
  return undefined;
}

/** A compiled `$var` template: the text with its variables filled in from a request. */
export type Template = (ctx: PluginContext) => string;

// `\$name` (kept as written), `${name}` or `${name ?? default}`, `$name`; a `$` followed by
// anything else is a literal `$` (redirect's parse_uri and core.utils.resolve_var agree on these).
const TEMPLATE_TOKEN = /\\\$[0-9A-Za-z_]+|\$\{\s*([^}]+?)\s*\}|\$([0-9A-Za-z_]+)/g;

/**
 * Compiles a template once; a template without `$` costs nothing per request. Deviation: names are
 * `[0-9A-Za-z_]+` everywhere (resolve_var also takes `.` into a name, so `$host.x` would be the
 * variable `host.x` there and `$host` + `.x` here).
 */
export function compileTemplate(text: string): Template {
  if (!text.includes('$')) return () => text;
  const parts: (string | { read: VarReader; fallback: string | undefined })[] = [];
  let last = 0;
  for (const m of text.matchAll(TEMPLATE_TOKEN)) {
    if (m.index > last) parts.push(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[0].charCodeAt(0) === 0x5c /* \ */) {
      parts.push(m[0]);
      continue;
    }
    let name = m[2] ?? m[1]!;
    let fallback: string | undefined;
    const defaultAt = m[2] === undefined ? name.indexOf('??') : -1;
    if (defaultAt !== -1) {
      fallback = name.slice(defaultAt + 2).trim();
      name = name.slice(0, defaultAt).trim();
    }
    parts.push({ read: varReader(name), fallback });
  }
  if (last < text.length) parts.push(text.slice(last));
  return (ctx) => {
    let out = '';
    for (const part of parts) out += typeof part === 'string' ? part : (part.read(ctx) ?? part.fallback ?? '');
    return out;
  };
}

/** A lua-resty-expr variable lookup (src/router/vars.ts) over a plugin's request. */
export function exprLookup(ctx: PluginContext): VarLookup {
  const request = ctx.request;
  return {
    get(source: VarSource): string | undefined {
      switch (source.kind) {
        case 'uri':
          return request.path;
        case 'host':
          return request.host;
        case 'request_method':
          return request.method;
        case 'remote_addr':
          return request.clientAddress;
        case 'query_string':
          return request.query;
        case 'arg':
          return request.arg(source.name);
        case 'http':
          return request.header(source.header);
        case 'cookie':
          return request.cookie(source.name);
      }
    },
  };
}
