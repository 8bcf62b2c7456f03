import { createPublicKey } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { compactVerify, decodeJwt, decodeProtectedHeader, importSPKI, type JWTPayload } from 'jose';
import { StringEnum } from '../config/schema/common.ts';
import { AnonymousConsumer, anonymousOrUnauthorized, realmSchema, withoutQueryArg } from './key-auth.ts';
import { definePlugin, type Consumer, type PluginAnswer, type PluginContext } from './types.ts';

/*
 * jwt-auth (APISIX): the client carries a JWT (header, else query argument, else cookie); the
 * token's `key` claim (route `key_claim_name`) names the consumer whose credentials
 * (`plugins.jwt-auth` of the consumer) verify it: `secret` for HS*, `public_key` for RS/ES/PS/EdDSA.
 * The order of checks and the answers are APISIX's: parse → key claim → consumer → alg is the
 * consumer's → signature → exp/nbf. Every failure after the consumer is found is the same
 * "failed to verify jwt" (the client learns nothing about which check failed).
 *
 * Signatures are checked with jose against keys imported once per consumer credential object (a
 * WeakMap keyed by it: a consumer change brings a new object, so the old key goes with it); a
 * request never parses a PEM or imports a secret.
 */

const HS_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const;
const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'ES256', 'ES384', 'ES512', 'PS256', 'PS384', 'PS512', 'EdDSA'] as const;
const ALGORITHMS = [...HS_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS] as const;
type Algorithm = (typeof ALGORITHMS)[number];

/** A token longer than this is refused before it is decoded (a header line is limited anyway; a query or cookie may not be). */
const MAX_TOKEN_LENGTH = 8192;

const schema = Type.Object({
  header: Type.String({ default: 'authorization' }),
  query: Type.String({ default: 'jwt' }),
  cookie: Type.String({ default: 'jwt' }),
  hide_credentials: Type.Boolean({ default: false }),
  key_claim_name: Type.String({ minLength: 1, default: 'key' }),
  store_in_ctx: Type.Boolean({ default: false }),
  realm: realmSchema('jwt'),
  anonymous_consumer: Type.Optional(AnonymousConsumer),
  claims_to_verify: Type.Optional(Type.Array(StringEnum(['exp', 'nbf'] as const), { uniqueItems: true })),
});

/*
 * The consumer's credentials. APISIX's dependencies/oneOf plus check_schema, as one if/then/else:
 * an asymmetric algorithm needs `public_key`, an HS one (the default) needs `secret`; a
 * `base64_secret` secret must be base64. Unknown fields are accepted, as in APISIX (`private_key`
 * of older configs).
 */
const consumerSchema = Type.Object(
  {
    key: Type.String({ minLength: 1 }),
    secret: Type.Optional(Type.String({ minLength: 1 })),
    public_key: Type.Optional(Type.String({ minLength: 1 })),
    algorithm: StringEnum(ALGORITHMS, { default: 'HS256' }),
    exp: Type.Integer({ minimum: 1, default: 86400 }),
    base64_secret: Type.Boolean({ default: false }),
    lifetime_grace_period: Type.Integer({ minimum: 0, default: 0 }),
  },
  {
    allOf: [
      {
        if: { required: ['algorithm'], properties: { algorithm: { enum: [...ASYMMETRIC_ALGORITHMS] } } },
        then: { required: ['public_key'] },
        else: { required: ['secret'] },
      },
      {
        if: { required: ['base64_secret'], properties: { base64_secret: { const: true } } },
        then: { properties: { secret: { pattern: '^[A-Za-z0-9+/]*={0,2}$' } } },
      },
    ],
  },
);

/** The credential as stored: the directory hands out the consumer's object as written, defaults not filled in. */
interface Credential {
  key?: string;
  secret?: string;
  public_key?: string;
  algorithm?: Algorithm;
  base64_secret?: boolean;
  lifetime_grace_period?: number;
}

const DEFAULT_CLAIMS = ['exp', 'nbf'] as const;

const HMAC_HASH: Record<string, string> = { HS256: 'SHA-256', HS384: 'SHA-384', HS512: 'SHA-512' };

/** imported verification keys, one per credential object; a rejected import stays rejected (the config is what it is) */
const importedKeys = new WeakMap<object, Promise<CryptoKey>>();

function verificationKey(cred: Credential, alg: Algorithm): Promise<CryptoKey> {
  let key = importedKeys.get(cred);
  if (key === undefined) {
    key = importKey(cred, alg);
    key.catch(() => {}); // awaited by every request; never an unhandled rejection meanwhile
    importedKeys.set(cred, key);
  }
  return key;
}

async function importKey(cred: Credential, alg: Algorithm): Promise<CryptoKey> {
  if (alg.startsWith('HS')) {
    const secret = cred.base64_secret ? Buffer.from(cred.secret ?? '', 'base64') : Buffer.from(cred.secret ?? '', 'utf8');
    return crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: HMAC_HASH[alg]! }, false, ['verify']);
  }
  // node's parser takes what OpenSSL (APISIX) takes: SPKI, PKCS#1 RSA public keys, certificates
  const spki = createPublicKey(cred.public_key ?? '').export({ type: 'spki', format: 'pem' }) as string;
  return importSPKI(spki, alg);
}

interface Found {
  consumer: Consumer;
  payload: JWTPayload;
}

interface Compiled {
  header: string;
  query: string;
  cookie: string;
  hide: boolean;
  keyClaim: string;
  storeInCtx: boolean;
  anonymous: string | undefined;
  /** claims that must be present (undefined: exp and nbf checked when present) */
  required: readonly ('exp' | 'nbf')[] | undefined;
  /** the WWW-Authenticate value of every 401, built once */
  challenge: string;
}

/** The consumer the request's token proves, or why not (APISIX's messages). */
async function findConsumer(conf: Compiled, ctx: PluginContext): Promise<Found | string> {
  const token = fetchToken(conf, ctx);
  if (token === undefined) return 'Missing JWT token in request';
  if (token.length > MAX_TOKEN_LENGTH) return 'JWT token invalid';

  let alg: unknown;
  let payload: JWTPayload;
  try {
    alg = decodeProtectedHeader(token).alg;
    payload = decodeJwt(token);
  } catch {
    return 'JWT token invalid';
  }

  const userKey = payload[conf.keyClaim];
  if (userKey === undefined || userKey === null || userKey === false) return 'missing user key in JWT token';
  // credentials are strings: a number claim matches no consumer, as in APISIX's lookup table
  const consumer = typeof userKey === 'string' ? ctx.consumers.byCredential('jwt-auth', 'key', userKey) : undefined;
  if (consumer === undefined) return 'Invalid user key in JWT token';

  const cred = consumer.plugins['jwt-auth'] as Credential;
  const expected = cred.algorithm ?? 'HS256';
  // the consumer's algorithm, never the token's choice (no alg confusion: an HS token against an RSA public key)
  if (alg !== expected) return 'failed to verify jwt';
  try {
    await compactVerify(token, await verificationKey(cred, expected), { algorithms: [expected] });
  } catch {
    return 'failed to verify jwt';
  }
  if (!claimsValid(payload, conf.required, cred.lifetime_grace_period ?? 0)) return 'failed to verify jwt';
  return { consumer, payload };
}

/**
 * exp and nbf, with the consumer's grace period as clock tolerance. Without `claims_to_verify`
 * (or with an empty list) each is checked when present; a listed claim must be present.
 * nbf == now is valid (RFC 7519 §4.1.5: not accepted *before* nbf); APISIX refuses that one second.
 */
function claimsValid(payload: JWTPayload, required: readonly ('exp' | 'nbf')[] | undefined, leeway: number): boolean {
  const now = Math.floor(Date.now() / 1000);
  for (const name of required ?? DEFAULT_CLAIMS) {
    const v = payload[name];
    if (v === undefined) {
      if (required !== undefined) return false;
      continue;
    }
    if (typeof v !== 'number') return false;
    if (name === 'exp' ? v <= now - leeway : v > now + leeway) return false;
  }
  return true;
}

/** The token from the header (a `Bearer ` prefix dropped), else the query argument, else the cookie; hidden from the upstream when asked. */
function fetchToken(conf: Compiled, ctx: PluginContext): string | undefined {
  const header = ctx.request.header(conf.header);
  if (header !== undefined) {
    if (conf.hide) ctx.upstream.removeHeader(conf.header);
    const prefix = header.slice(0, 7);
    return prefix === 'Bearer ' || prefix === 'bearer ' ? header.slice(7) : header;
  }
  const arg = ctx.request.arg(conf.query);
  if (arg !== undefined) {
    if (conf.hide) ctx.upstream.uri = withoutQueryArg(ctx.upstream.uri, conf.query);
    return arg;
  }
  const cookie = ctx.request.cookie(conf.cookie);
  if (cookie !== undefined && conf.hide) {
    const rest = withoutCookie(ctx.upstream.header('cookie') ?? '', conf.cookie);
    if (rest === '') ctx.upstream.removeHeader('cookie');
    else ctx.upstream.setHeader('cookie', rest);
  }
  return cookie;
}

/** A Cookie header without the cookies named `name`. */
function withoutCookie(header: string, name: string): string {
  return header
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c !== '' && c.split('=', 1)[0]!.trim() !== name)
    .join('; ');
}

export const jwtAuth = definePlugin({
  name: 'jwt-auth',
  priority: 2510,
  type: 'auth',
  schema,
  consumerSchema,
  compile: (conf): Compiled => ({
    header: conf.header,
    query: conf.query,
    cookie: conf.cookie,
    hide: conf.hide_credentials,
    keyClaim: conf.key_claim_name,
    storeInCtx: conf.store_in_ctx,
    anonymous: conf.anonymous_consumer,
    // APISIX: an empty list is no list (it must not turn the checks off)
    required: conf.claims_to_verify?.length ? conf.claims_to_verify : undefined,
    challenge: `Bearer realm="${conf.realm}"`,
  }),
  async rewrite(conf, ctx): Promise<PluginAnswer | undefined> {
    const found = await findConsumer(conf, ctx);
    if (typeof found !== 'string') {
      ctx.consumer = found.consumer;
      if (conf.storeInCtx) ctx.vars.set('jwt_auth_payload', found.payload);
      return undefined;
    }
    return anonymousOrUnauthorized(ctx, conf.anonymous, conf.challenge, found);
  },
});
