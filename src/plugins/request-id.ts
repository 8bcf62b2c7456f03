import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { StringEnum } from '../config/schema/common.ts';
import { headerNameProblem } from '../security/header-value.ts';
import { definePlugin } from './types.ts';
import { REQUEST_ID_VAR } from '../observability/observers.ts';

/**
 * request-id (APISIX): every request gets an id in the `header_name` request header, sent
 * upstream and (`include_in_response`) back to the client. A non-empty id the client sent is
 * kept. Ids: `uuid` (v4, default), `uuidv7`, `nanoid` (21 URL-safe characters), `ksuid` (27
 * base62 characters, time-ordered) or `range_id` (`length` characters of `char_set`). Runs in
 * rewrite at priority 12015, before every other plugin, so even an answer from fault-injection
 * carries the id.
 */

// APISIX's default char_set, its typo included ("HIGK": no J, G twice), so ids look the same.
const DEFAULT_CHAR_SET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789';

const schema = Type.Object({
  header_name: Type.String({ default: 'X-Request-Id' }),
  include_in_response: Type.Boolean({ default: true }),
  algorithm: StringEnum(['uuid', 'nanoid', 'range_id', 'ksuid', 'uuidv7'] as const, { default: 'uuid' }),
  range_id: Type.Object(
    {
      length: Type.Integer({ minimum: 6, default: 16 }),
      char_set: Type.String({ minLength: 6, default: DEFAULT_CHAR_SET }),
    },
    { default: { length: 16, char_set: DEFAULT_CHAR_SET } },
  ),
});

interface RequestId {
  readonly header: string;
  readonly includeInResponse: boolean;
  readonly generate: () => string;
  /** where rewrite leaves the id for header_filter (per header name, as APISIX's ctx key) */
  readonly varName: string;
}

const NANOID_ALPHABET = '-_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

function nanoid(): string {
  // 64 characters: 6 bits of each random byte pick one without modulo bias
  const bytes = randomBytes(21);
  let id = '';
  for (const b of bytes) id += NANOID_ALPHABET[b & 63];
  return id;
}

function rangeId(length: number, charSet: string): () => string {
  return () => {
    let id = '';
    for (let i = 0; i < length; i++) id += charSet[randomInt(charSet.length)];
    return id;
  };
}

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const KSUID_EPOCH = 1_400_000_000;

/** segmentio/ksuid: 4 bytes of seconds since 2014-05-13 and 16 random bytes, base62, 27 chars. */
function ksuid(): string {
  const bytes = Buffer.allocUnsafe(20);
  bytes.writeUInt32BE((Math.floor(Date.now() / 1000) - KSUID_EPOCH) >>> 0, 0);
  randomBytes(16).copy(bytes, 4);
  let n = BigInt(`0x${bytes.toString('hex')}`);
  let out = '';
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out;
    n /= 62n;
  }
  return out.padStart(27, '0');
}

/** RFC 9562 UUIDv7: 48 bits of Unix milliseconds, then random bits. */
function uuidv7(): string {
  const bytes = randomBytes(16);
  const ms = BigInt(Date.now());
  for (let i = 0; i < 6; i++) bytes[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  bytes[6] = (bytes[6]! & 0x0f) | 0x70;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export const requestId = definePlugin({
  name: 'request-id',
  priority: 12015,
  schema,
  compile(conf): RequestId {
    const problem = headerNameProblem(conf.header_name);
    if (problem) throw new Error(`header_name: ${problem}`);
    let generate: () => string;
    switch (conf.algorithm) {
      case 'nanoid':
        generate = nanoid;
        break;
      case 'range_id':
        generate = rangeId(conf.range_id.length, conf.range_id.char_set);
        break;
      case 'ksuid':
        generate = ksuid;
        break;
      case 'uuidv7':
        generate = uuidv7;
        break;
      default:
        generate = randomUUID;
    }
    return {
      header: conf.header_name,
      includeInResponse: conf.include_in_response,
      generate,
      varName: `request-id-${conf.header_name.toLowerCase()}`,
    };
  },
  rewrite(conf, ctx) {
    let id = ctx.request.header(conf.header);
    if (id === undefined || id === '') {
      id = conf.generate();
      ctx.upstream.setHeader(conf.header, id);
    }
    if (conf.includeInResponse) ctx.vars.set(conf.varName, id);
    // the access log's request_id
    ctx.vars.set(REQUEST_ID_VAR, id);
    return undefined;
  },
  header_filter(conf, ctx) {
    if (!conf.includeInResponse) return;
    const response = ctx.response;
    if (response === undefined) return;
    const id = ctx.vars.get(conf.varName);
    // the upstream's own id wins, as in APISIX
    const current = response.header(conf.header);
    if ((current === undefined || current === '') && typeof id === 'string') response.setHeader(conf.header, id);
  },
});
