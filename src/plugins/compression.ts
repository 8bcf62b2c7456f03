import { Type } from '@sinclair/typebox';
import type { PluginContext, ResponseView } from './types.ts';

/*
 * What gzip and brotli share: which responses they compress, and the buffering that turns the
 * synchronous body_filter into one compression of the whole body.
 *
 * The rule (nginx's gzip header filter, which APISIX's gzip plugin drives, and APISIX's brotli
 * header_filter): a response is compressible when it has a body (not HEAD, not 1xx/204/304 and,
 * per plugin, a status it compresses), no Content-Encoding yet, a Content-Type whose media type
 * is in `types` (or `types: "*"`), and a Content-Length >= `min_length`. Portico adds one
 * condition: the length must be known and at most MAX_BUFFERED, because the body is held in
 * memory until its last chunk (body_filter is synchronous, and node:zlib has no synchronous
 * streaming API); nginx would also compress a chunked response of unknown length.
 *
 * A compressible response gets `Vary: Accept-Encoding` (with `vary`) whatever the client
 * accepts — nginx's gzip_vary, which APISIX's brotli `vary` says it is like: a cache in front
 * must not serve the compressed variant to a client that did not ask for it. It is compressed
 * when the client's Accept-Encoding allows the coding. The decision is made in header_filter,
 * before the head is sent, and recorded in ctx.vars for body_filter.
 */

/** Bodies above this many bytes are sent uncompressed (the body is buffered to compress it). */
export const MAX_BUFFERED = 1024 * 1024;

/**
 * `types`: a list of media types, or "*" for every type. APISIX: anyOf(array, enum "*"); ajv
 * reports a failed anyOf by its last branch ("must be array" for "text/html"), so the branch is
 * chosen by the value's type first.
 */
export const TypesSchema = Type.Unsafe<string[] | '*'>({
  if: { type: 'string' },
  then: { enum: ['*'] },
  else: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  default: ['text/html'],
});

/** `http_version`: the request's minimum HTTP version (APISIX: enum 1.1, 1.0). */
export const HttpVersionSchema = Type.Unsafe<number>({ enum: [1.1, 1.0], default: 1.1 });

export interface CompressionRule {
  /** lower-case media types; undefined: every type */
  readonly types: ReadonlySet<string> | undefined;
  readonly minLength: number;
  readonly vary: boolean;
  /** the Accept-Encoding coding this plugin answers to */
  readonly coding: 'gzip' | 'br';
  /** whether `*` in Accept-Encoding counts (APISIX's brotli: yes; nginx's gzip: no) */
  readonly wildcard: boolean;
  /** the response statuses this plugin compresses */
  readonly status: (status: number) => boolean;
  /** the ctx.vars key that marks a response being compressed (APISIX's ctx.gzip_matched) */
  readonly key: string;
  /** `http_version`: requests of a lower HTTP version are answered plain (nginx gzip_http_version) */
  readonly minHttpVersion: number;
}

export function compileTypes(types: readonly string[] | '*'): ReadonlySet<string> | undefined {
  return types === '*' ? undefined : new Set(types.map((t) => t.trim().toLowerCase()));
}

/**
 * Whether an Accept-Encoding value allows `coding` (RFC 9110 §12.5.3): the coding (or `*` when
 * `wildcard`) listed without `q=0`. Codings and parameters are case-insensitive.
 */
export function acceptsCoding(header: string | undefined, coding: string, wildcard: boolean): boolean {
  if (header === undefined) return false;
  for (const item of header.split(',')) {
    const parts = item.split(';');
    const name = parts[0]!.trim().toLowerCase();
    if (name !== coding && !(wildcard && name === '*')) continue;
    let q = 1;
    for (let i = 1; i < parts.length; i++) {
      const param = parts[i]!.trim().toLowerCase();
      if (param.startsWith('q=')) q = Number(param.slice(2).trim());
    }
    // an unreadable q is not a refusal (APISIX's matcher only refuses a literal q=0)
    if (!(q === 0)) return true;
  }
  return false;
}

/** The body length when Content-Length is one plain decimal number, else undefined. */
function contentLength(response: ResponseView): number | undefined {
  const value = response.header('content-length');
  if (value === undefined || !/^[0-9]{1,16}$/.test(value.trim())) return undefined;
  return Number(value.trim());
}

/** nginx's rule: a response to compress has a non-empty Content-Encoding only when already encoded. */
function isEncoded(response: ResponseView): boolean {
  const value = response.header('content-encoding');
  return value !== undefined && value.trim() !== '';
}

function typeMatches(response: ResponseView, types: ReadonlySet<string> | undefined): boolean {
  const value = response.header('content-type');
  // like nginx, no Content-Type: not compressed
  if (value === undefined) return false;
  if (types === undefined) return true;
  const semi = value.indexOf(';');
  return types.has((semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase());
}

function addVary(response: ResponseView): void {
  const vary = response.header('vary');
  if (vary !== undefined && vary.split(',').some((v) => { const t = v.trim().toLowerCase(); return t === 'accept-encoding' || t === '*'; })) return;
  response.addHeader('Vary', 'Accept-Encoding');
}

/**
 * A compressed body is another representation: a strong ETag becomes weak (nginx's
 * ngx_http_weak_etag, APISIX's brotli weak_etag_header), a malformed one is dropped.
 */
function weakenEtag(response: ResponseView): void {
  const etag = response.header('etag');
  if (etag === undefined) return;
  const m = /^(W\/)?"([^"]*)"$/.exec(etag);
  if (m === null) response.removeHeader('ETag');
  else if (m[1] === undefined) response.setHeader('ETag', `W/"${m[2]}"`);
}

/** The buffered body of a response being compressed. */
interface Pending {
  chunks: Buffer[];
}

/** header_filter: decides, sets the response's headers and marks the response for body_filter. */
export function decideCompression(rule: CompressionRule, ctx: PluginContext, encoding: string): void {
  const response = ctx.response!;
  if (ctx.request.method === 'HEAD' || !rule.status(response.status)) return;
  if (Number(ctx.request.httpVersion) < rule.minHttpVersion) return;
  if (isEncoded(response) || !typeMatches(response, rule.types)) return;
  const length = contentLength(response);
  if (length === undefined || length < rule.minLength || length > MAX_BUFFERED) return;
  if (rule.vary) addVary(response);
  if (!acceptsCoding(ctx.request.header('accept-encoding'), rule.coding, rule.wildcard)) return;
  response.setHeader('Content-Encoding', encoding);
  // the transport frames a filtered body itself (chunked, or close-delimited for HTTP/1.0)
  response.removeHeader('Content-Length');
  weakenEtag(response);
  ctx.vars.set(rule.key, { chunks: [] } satisfies Pending);
}

const NOTHING = Buffer.alloc(0);

/** body_filter: holds the chunks of a marked response, compresses them with the last one. */
export function compressBody(key: string, ctx: PluginContext, chunk: Buffer, last: boolean, compress: (body: Buffer) => Buffer): Buffer | undefined {
  const pending = ctx.vars.get(key) as Pending | undefined;
  if (pending === undefined) return undefined;
  // a copy: the transport may reuse the memory of a chunk it has handed over
  if (chunk.length > 0) pending.chunks.push(Buffer.from(chunk));
  if (!last) return NOTHING;
  ctx.vars.delete(key);
  return compress(pending.chunks.length === 1 ? pending.chunks[0]! : Buffer.concat(pending.chunks));
}
