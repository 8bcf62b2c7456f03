import { gzipSync } from 'node:zlib';
import { Type } from '@sinclair/typebox';
import { compileTypes, compressBody, decideCompression, HttpVersionSchema, TypesSchema, type CompressionRule } from './compression.ts';
import { definePlugin } from './types.ts';

/**
 * gzip (APISIX apisix/plugins/gzip.lua, which switches on nginx's gzip filter per route):
 * compresses responses whose Content-Type is in `types` ("*": every type) and whose
 * Content-Length is at least `min_length`, for clients whose Accept-Encoding lists gzip (not
 * `*`, as nginx), with zlib at `comp_level`. Like nginx, only 200, 403 and 404 responses, never
 * one already encoded or to a HEAD request; a strong ETag becomes weak. `vary` adds
 * `Vary: Accept-Encoding` to every compressible response (nginx's gzip_vary).
 * The rule and the buffering are compression.ts's (shared with brotli): bodies of unknown
 * length or above 1 MiB go uncompressed.
 * Accepted without effect: `buffers` (nginx's memory for the compressor). `http_version` (1.1 by
 * default, as nginx's gzip_http_version): requests of a lower version are answered plain.
 * Priority 995.
 */
const schema = Type.Object({
  types: TypesSchema,
  min_length: Type.Integer({ minimum: 1, default: 20 }),
  comp_level: Type.Integer({ minimum: 1, maximum: 9, default: 1 }),
  http_version: HttpVersionSchema,
  buffers: Type.Object(
    {
      number: Type.Integer({ minimum: 1, default: 32 }),
      size: Type.Integer({ minimum: 1, default: 4096 }),
    },
    { default: { number: 32, size: 4096 } },
  ),
  vary: Type.Optional(Type.Boolean()),
});

interface Gzip {
  readonly rule: CompressionRule;
  readonly level: number;
}

// nginx's gzip header filter compresses these statuses only
const GZIP_STATUSES = (status: number): boolean => status === 200 || status === 403 || status === 404;

export const gzip = definePlugin({
  name: 'gzip',
  priority: 995,
  schema,
  compile(conf): Gzip {
    return {
      rule: {
        types: compileTypes(conf.types),
        minLength: conf.min_length,
        vary: conf.vary === true,
        coding: 'gzip',
        wildcard: false,
        status: GZIP_STATUSES,
        key: 'gzip_matched',
        minHttpVersion: conf.http_version,
      },
      level: conf.comp_level,
    };
  },
  header_filter(conf, ctx) {
    decideCompression(conf.rule, ctx, 'gzip');
  },
  body_filter(conf, ctx, chunk, last) {
    return compressBody(conf.rule.key, ctx, chunk, last, (body) => gzipSync(body, { level: conf.level }));
  },
});
