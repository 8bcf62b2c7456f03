import { brotliCompressSync, constants } from 'node:zlib';
import { Type } from '@sinclair/typebox';
import { compileTypes, compressBody, decideCompression, HttpVersionSchema, TypesSchema, type CompressionRule } from './compression.ts';
import { definePlugin } from './types.ts';

/**
 * brotli (APISIX apisix/plugins/brotli.lua): compresses responses with brotli (`Content-Encoding:
 * br`) for clients whose Accept-Encoding lists `br` or `*` without q=0, when the Content-Type
 * is in `types` ("*": every type) and Content-Length is at least `min_length`; never a response
 * already encoded (so with gzip on the same route, brotli — priority 996 — wins for clients that
 * accept both, and gzip steps aside), a HEAD, or a 1xx/204/206/304. `comp_level` (quality),
 * `mode`, `lgwin` and `lgblock` are the encoder's parameters; a strong ETag becomes weak, a
 * malformed one is dropped. `vary` adds `Vary: Accept-Encoding` to every compressible response
 * (like gzip_vary, as APISIX documents it; APISIX's code adds it only when it compresses).
 * The rule and the buffering are compression.ts's: bodies of unknown length or above 1 MiB go
 * uncompressed. `http_version`: requests of a lower HTTP version are answered plain. Priority 996.
 */
const schema = Type.Object({
  types: TypesSchema,
  min_length: Type.Integer({ minimum: 1, default: 20 }),
  // 0: generic, 1: UTF-8 text, 2: WOFF 2.0 fonts
  mode: Type.Integer({ minimum: 0, maximum: 2, default: 0 }),
  comp_level: Type.Integer({ minimum: 0, maximum: 11, default: 6 }),
  lgwin: Type.Unsafe<number>({ type: 'integer', enum: [0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24], default: 19 }),
  lgblock: Type.Unsafe<number>({ type: 'integer', enum: [0, 16, 17, 18, 19, 20, 21, 22, 23, 24], default: 0 }),
  http_version: HttpVersionSchema,
  vary: Type.Optional(Type.Boolean()),
});

interface Brotli {
  readonly rule: CompressionRule;
  readonly params: Record<number, number>;
}

// a partial (206) body compressed would no longer be the range its Content-Range names
const BROTLI_STATUSES = (status: number): boolean => status >= 200 && status !== 204 && status !== 206 && status !== 304;

export const brotli = definePlugin({
  name: 'brotli',
  priority: 996,
  schema,
  compile(conf): Brotli {
    return {
      rule: {
        types: compileTypes(conf.types),
        minLength: conf.min_length,
        vary: conf.vary === true,
        coding: 'br',
        wildcard: true,
        status: BROTLI_STATUSES,
        key: 'brotli_matched',
        minHttpVersion: conf.http_version,
      },
      params: {
        [constants.BROTLI_PARAM_MODE]: conf.mode,
        [constants.BROTLI_PARAM_QUALITY]: conf.comp_level,
        // 0 is passed on as APISIX does: the encoder raises a window below 10 to 10
        [constants.BROTLI_PARAM_LGWIN]: conf.lgwin,
        [constants.BROTLI_PARAM_LGBLOCK]: conf.lgblock,
      },
    };
  },
  header_filter(conf, ctx) {
    decideCompression(conf.rule, ctx, 'br');
  },
  body_filter(conf, ctx, chunk, last) {
    return compressBody(conf.rule.key, ctx, chunk, last, (body) => brotliCompressSync(body, { params: conf.params }));
  },
});
