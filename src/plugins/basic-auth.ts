import { createHash, timingSafeEqual } from 'node:crypto';
import { Type } from '@sinclair/typebox';
import { AnonymousConsumer, anonymousOrUnauthorized, realmSchema } from './key-auth.ts';
import { definePlugin, type Consumer } from './types.ts';

/*
 * basic-auth (APISIX apisix/plugins/basic-auth.lua): `Authorization: Basic base64(user:password)`
 * against the consumers' `basic-auth: {username, password}`. Messages and the WWW-Authenticate
 * header are APISIX's (t/plugin/basic-auth.t):
 *   no header                        → 401 Missing authorization in request
 *   not Basic, bad base64, no ':'    → 401 Invalid authorization in request
 *   unknown user or wrong password   → 401 Invalid user authorization
 * As APISIX, whitespace is removed from the decoded user name and password ("bar:bar\n" is bar/bar).
 * Unlike APISIX (which splits on every ':' and keeps the second field), the password is everything
 * after the first ':' (RFC 7617), so a password may contain ':'.
 */

const schema = Type.Object({
  hide_credentials: Type.Boolean({ default: false }),
  realm: realmSchema('basic'),
  anonymous_consumer: Type.Optional(AnonymousConsumer),
});

const consumerSchema = Type.Object({ username: Type.String(), password: Type.String() }, { required: ['username', 'password'] });

interface Compiled {
  hide: boolean;
  anonymous: string | undefined;
  challenge: string;
}

/**
 * A header longer than this is refused without decoding it. Real credentials are far shorter; the
 * limit keeps a client from making the gateway decode (and hash) arbitrarily large values.
 */
const MAX_AUTHORIZATION = 4096;

const SCHEME = /^\s*basic\s+(\S+)\s*$/i;
// standard alphabet; padding optional, as nginx's ngx_decode_base64 (which APISIX uses)
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// PCRE's \s (ASCII only): JS's \s would also match byte 0xA0, part of UTF-8 characters such as 'à'
const WHITESPACE = /[ \t\n\v\f\r]+/g;

/** what `Authorization` held: user name and password, or why it is unusable */
type Credentials = { user: string; password: Buffer } | undefined;

function parseAuthorization(value: string): Credentials {
  if (value.length > MAX_AUTHORIZATION) return undefined;
  const m = SCHEME.exec(value);
  if (m === null) return undefined;
  const encoded = m[1]!;
  if (!BASE64.test(encoded) || encoded.replace(/=+$/, '').length % 4 === 1) return undefined;
  const decoded = Buffer.from(encoded, 'base64');
  const colon = decoded.indexOf(0x3a);
  if (colon < 0) return undefined;
  const user = decoded.subarray(0, colon).toString('utf8').replace(WHITESPACE, '');
  const password = Buffer.from(decoded.subarray(colon + 1).toString('latin1').replace(WHITESPACE, ''), 'latin1');
  // APISIX: "user:" splits into one field only → a malformed header, not a wrong password
  if (password.length === 0) return undefined;
  return { user, password };
}

// digests of the consumers' passwords, per consumer object (a changed consumer is a new object)
const passwordDigests = new WeakMap<Consumer, Buffer>();

function sha256(b: Buffer | string): Buffer {
  return createHash('sha256').update(b).digest();
}

/**
 * Compares in constant time whatever the lengths: both sides are hashed first, so
 * timingSafeEqual gets equal-length buffers and the time tells nothing about the password's length.
 */
function passwordMatches(consumer: Consumer, given: Buffer): boolean {
  let expected = passwordDigests.get(consumer);
  if (expected === undefined) {
    const conf = consumer.plugins['basic-auth'] as { password?: unknown } | undefined;
    expected = sha256(typeof conf?.password === 'string' ? conf.password : '');
    passwordDigests.set(consumer, expected);
  }
  return timingSafeEqual(expected, sha256(given));
}

export const basicAuth = definePlugin({
  name: 'basic-auth',
  priority: 2520,
  type: 'auth',
  schema,
  consumerSchema,
  compile: (conf): Compiled => ({
    hide: conf.hide_credentials,
    anonymous: conf.anonymous_consumer,
    challenge: `Basic realm="${conf.realm}"`,
  }),
  rewrite(conf, ctx) {
    const header = ctx.request.header('authorization');
    let consumer: Consumer | undefined;
    let message: string;
    if (header === undefined) message = 'Missing authorization in request';
    else {
      const creds = parseAuthorization(header);
      if (creds === undefined) message = 'Invalid authorization in request';
      else {
        const found = ctx.consumers.byCredential('basic-auth', 'username', creds.user);
        // a miss still hashes: an unknown user takes the time of a wrong password
        const ok = found !== undefined ? passwordMatches(found, creds.password) : (sha256(creds.password), false);
        if (ok) consumer = found;
        message = 'Invalid user authorization';
      }
    }
    if (consumer === undefined) {
      // no valid credential: the anonymous consumer, if configured, else 401 (as key-auth and jwt-auth)
      const answer = anonymousOrUnauthorized(ctx, conf.anonymous, conf.challenge, message);
      if (answer !== undefined) return answer;
    } else ctx.consumer = consumer;
    if (conf.hide) ctx.upstream.removeHeader('authorization');
    return;
  },
});
