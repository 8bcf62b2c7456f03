import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from 'jose';
import { writeRoutes } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';
import { gatewayWithUpstream, pluginRoute } from './send.ts';

/*
 * jwt-auth through the real gateway: tokens signed here with jose, consumers and routes in the
 * file source, an echo upstream that shows what the gateway forwarded.
 */

const now = () => Math.floor(Date.now() / 1000);
const enc = (s: string) => new TextEncoder().encode(s);
const b64url = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function sign(payload: JWTPayload, alg: string, key: CryptoKey | Uint8Array, header: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', ...header }).sign(key);
}

interface Answer {
  status: number;
  headers: Headers;
  body: { message?: string; url?: string; headers?: Record<string, string> };
}

describe('jwt-auth', () => {
  let routes: Record<string, unknown>;
  let rsa: { publicKey: CryptoKey; privateKey: CryptoKey };
  let ec: { publicKey: CryptoKey; privateKey: CryptoKey };
  const b64Secret = randomBytes(32);

  async function call(path: string, headers: Record<string, string> = {}): Promise<Answer> {
    const res = await fetch(rig.gw.url + path, { headers });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : {} };
  }

  async function expect401(path: string, headers: Record<string, string>, message: string): Promise<void> {
    const a = await call(path, headers);
    assert.equal(a.status, 401, `${path} ${JSON.stringify(headers).slice(0, 200)}: ${JSON.stringify(a.body)}`);
    assert.deepEqual(a.body, { message });
  }

  async function expectConsumer(path: string, headers: Record<string, string>, username: string): Promise<Answer> {
    const a = await call(path, headers);
    assert.equal(a.status, 200, `${path}: ${JSON.stringify(a.body)}`);
    assert.equal(a.body.headers!['x-consumer-username'], username);
    return a;
  }

  const rig = gatewayWithUpstream(async (up) => {
    rsa = await generateKeyPair('RS256', { extractable: true });
    ec = await generateKeyPair('ES256', { extractable: true });
    const rsaSpki = await exportSPKI(rsa.publicKey);
    // the same key as PKCS#1 ("BEGIN RSA PUBLIC KEY"): OpenSSL, hence APISIX, takes it too
    const rsaPkcs1 = createPublicKey(rsaSpki).export({ type: 'pkcs1', format: 'pem' }) as string;
    const route = pluginRoute('jwt-auth', up.address);
    routes = {
      routes: [
        route('r1', {}),
        route('hide', { hide_credentials: true }),
        route('custom', { header: 'x-jwt', query: 'token', cookie: 'token', key_claim_name: 'sub' }),
        route('claims', { claims_to_verify: ['exp'] }),
        route('anon', { anonymous_consumer: 'anonymous' }),
        route('realm', { realm: 'shop' }),
        route('badroute', { header: 1 }),
      ],
      consumers: [
        { username: 'jack', plugins: { 'jwt-auth': { key: 'jack-key', secret: 'jack-secret' } } },
        { username: 'hs512', plugins: { 'jwt-auth': { key: 'hs512-key', secret: 'hs512-secret', algorithm: 'HS512' } } },
        { username: 'b64', plugins: { 'jwt-auth': { key: 'b64-key', secret: b64Secret.toString('base64'), base64_secret: true } } },
        { username: 'rsa', plugins: { 'jwt-auth': { key: 'rsa-key', public_key: rsaSpki, algorithm: 'RS256' } } },
        { username: 'rsa1', plugins: { 'jwt-auth': { key: 'rsa1-key', public_key: rsaPkcs1, algorithm: 'RS256' } } },
        { username: 'ec', plugins: { 'jwt-auth': { key: 'ec-key', public_key: await exportSPKI(ec.publicKey), algorithm: 'ES256' } } },
        { username: 'grace', plugins: { 'jwt-auth': { key: 'grace-key', secret: 'grace-secret', lifetime_grace_period: 120 } } },
        // passes the schema (APISIX checks presence only); the key fails at its first use
        { username: 'badpem', plugins: { 'jwt-auth': { key: 'badpem-key', public_key: 'not a pem', algorithm: 'RS256' } } },
        { username: 'anonymous' },
        // schema violations: each rejected on its own, the rest load
        { username: 'nopub', plugins: { 'jwt-auth': { key: 'nopub-key', algorithm: 'RS256' } } },
        { username: 'nosecret', plugins: { 'jwt-auth': { key: 'nosecret-key' } } },
        { username: 'notb64', plugins: { 'jwt-auth': { key: 'notb64-key', secret: 'not base64!', base64_secret: true } } },
        { username: 'badalg', plugins: { 'jwt-auth': { key: 'badalg-key', secret: 's', algorithm: 'none' } } },
      ],
    };
    return { routes };
  });

  test('valid tokens of each algorithm identify their consumer (header, with or without Bearer)', async () => {
    const exp = now() + 600;
    await expectConsumer('/r1', { authorization: await sign({ key: 'jack-key', exp }, 'HS256', enc('jack-secret')) }, 'jack');
    await expectConsumer('/r1', { authorization: `Bearer ${await sign({ key: 'jack-key' }, 'HS256', enc('jack-secret'))}` }, 'jack');
    await expectConsumer('/r1', { authorization: `bearer ${await sign({ key: 'hs512-key', exp }, 'HS512', enc('hs512-secret'))}` }, 'hs512');
    await expectConsumer('/r1', { authorization: await sign({ key: 'b64-key', exp }, 'HS256', b64Secret) }, 'b64');
    await expectConsumer('/r1', { authorization: await sign({ key: 'rsa-key', exp }, 'RS256', rsa.privateKey) }, 'rsa');
    await expectConsumer('/r1', { authorization: await sign({ key: 'rsa1-key', exp }, 'RS256', rsa.privateKey) }, 'rsa1');
    await expectConsumer('/r1', { authorization: await sign({ key: 'ec-key', exp }, 'ES256', ec.privateKey) }, 'ec');
  });

  test('token in the query or the cookie; custom header/query/cookie names and key claim', async () => {
    const jack = await sign({ key: 'jack-key', exp: now() + 600 }, 'HS256', enc('jack-secret'));
    await expectConsumer(`/r1?a=1&jwt=${jack}`, {}, 'jack');
    await expectConsumer('/r1', { cookie: `other=1; jwt=${jack}` }, 'jack');
    // the default names mean nothing on the custom route
    await expect401('/custom', { authorization: jack }, 'Missing JWT token in request');
    const bySub = await sign({ sub: 'jack-key', exp: now() + 600 }, 'HS256', enc('jack-secret'));
    await expectConsumer('/custom', { 'x-jwt': bySub }, 'jack');
    await expectConsumer(`/custom?token=${bySub}`, {}, 'jack');
    await expectConsumer('/custom', { cookie: `token=${bySub}` }, 'jack');
    await expect401('/custom', { 'x-jwt': jack }, 'missing user key in JWT token');
  });

  test('401 with APISIX messages: missing, malformed, no key, unknown key, bad signature, alg mismatch', async () => {
    const exp = now() + 600;
    await expect401('/r1', {}, 'Missing JWT token in request');
    const missing = await call('/r1');
    assert.equal(missing.headers.get('www-authenticate'), 'Bearer realm="jwt"');
    assert.equal((await call('/realm')).headers.get('www-authenticate'), 'Bearer realm="shop"');
    for (const bad of ['abc', 'a.b.c', 'Bearer x.y', `${b64url({ alg: 'HS256' })}.bm90IGpzb24.sig`]) {
      await expect401('/r1', { authorization: bad }, 'JWT token invalid');
    }
    await expect401('/r1', { authorization: await sign({ exp }, 'HS256', enc('jack-secret')) }, 'missing user key in JWT token');
    await expect401('/r1', { authorization: await sign({ key: 'nobody', exp }, 'HS256', enc('jack-secret')) }, 'Invalid user key in JWT token');
    await expect401('/r1', { authorization: await sign({ key: 42, exp }, 'HS256', enc('jack-secret')) }, 'Invalid user key in JWT token');
    // a rejected consumer holds no credential
    await expect401('/r1', { authorization: await sign({ key: 'nosecret-key', exp }, 'HS256', enc('x')) }, 'Invalid user key in JWT token');

    const failed = 'failed to verify jwt';
    await expect401('/r1', { authorization: await sign({ key: 'jack-key', exp }, 'HS256', enc('wrong-secret')) }, failed);
    // payload changed after signing
    const good = await sign({ key: 'jack-key', exp }, 'HS256', enc('jack-secret'));
    const [h, , s] = good.split('.');
    await expect401('/r1', { authorization: `${h}.${b64url({ key: 'jack-key', exp, admin: true })}.${s}` }, failed);
    // the consumer's algorithm, not the token's: HS512 for an HS256 consumer, HS256 for an HS512 one
    await expect401('/r1', { authorization: await sign({ key: 'jack-key', exp }, 'HS512', enc('jack-secret')) }, failed);
    await expect401('/r1', { authorization: await sign({ key: 'hs512-key', exp }, 'HS256', enc('hs512-secret')) }, failed);
    // alg confusion: an HS256 token keyed with the RSA consumer's public key PEM
    const pem = await exportSPKI(rsa.publicKey);
    await expect401('/r1', { authorization: await sign({ key: 'rsa-key', exp }, 'HS256', enc(pem)) }, failed);
    // alg none
    await expect401('/r1', { authorization: `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ key: 'jack-key', exp })}.` }, failed);
    // an RSA consumer's token signed by another key; an ES256 signature of the wrong length
    const other = await generateKeyPair('RS256');
    await expect401('/r1', { authorization: await sign({ key: 'rsa-key', exp }, 'RS256', other.privateKey) }, failed);
    const ecToken = await sign({ key: 'ec-key', exp }, 'ES256', ec.privateKey);
    await expect401('/r1', { authorization: ecToken.slice(0, -10) }, failed);
    // a consumer whose public key does not parse: 401, twice (the failed import is cached, not retried into a 500)
    for (let i = 0; i < 2; i++) {
      await expect401('/r1', { authorization: await sign({ key: 'badpem-key', exp }, 'RS256', rsa.privateKey) }, failed);
    }
  });

  test('exp and nbf, with the consumer lifetime_grace_period as clock tolerance; claims_to_verify', async () => {
    const failed = 'failed to verify jwt';
    const jack = (p: JWTPayload) => sign({ key: 'jack-key', ...p }, 'HS256', enc('jack-secret'));
    const grace = (p: JWTPayload) => sign({ key: 'grace-key', ...p }, 'HS256', enc('grace-secret'));
    await expect401('/r1', { authorization: await jack({ exp: now() - 1 }) }, failed);
    await expect401('/r1', { authorization: await jack({ nbf: now() + 60, exp: now() + 600 }) }, failed);
    await expect401('/r1', { authorization: await jack({ exp: 'tomorrow' as unknown as number }) }, failed);
    await expectConsumer('/r1', { authorization: await jack({ nbf: now() - 5, exp: now() + 600 }) }, 'jack');
    await expectConsumer('/r1', { authorization: await grace({ exp: now() - 60 }) }, 'grace');
    await expectConsumer('/r1', { authorization: await grace({ nbf: now() + 60 }) }, 'grace');
    await expect401('/r1', { authorization: await grace({ exp: now() - 300 }) }, failed);
    await expect401('/r1', { authorization: await grace({ nbf: now() + 300 }) }, failed);
    // without claims_to_verify a token without exp passes; listed, exp is required
    await expectConsumer('/r1', { authorization: await jack({}) }, 'jack');
    await expect401('/claims', { authorization: await jack({}) }, failed);
    await expectConsumer('/claims', { authorization: await jack({ exp: now() + 60 }) }, 'jack');
  });

  test('oversize tokens are a 401, never a 500', async () => {
    const big = await sign({ key: 'jack-key', pad: 'x'.repeat(9000) }, 'HS256', enc('jack-secret'));
    await expect401(`/r1?jwt=${big}`, {}, 'JWT token invalid');
    await expect401('/r1', { cookie: `jwt=${big}` }, 'JWT token invalid');
    await expect401(`/r1?jwt=${'a'.repeat(9000)}`, {}, 'JWT token invalid');
  });

  test('hide_credentials removes the token from the header, the query or the cookie sent upstream', async () => {
    const jack = await sign({ key: 'jack-key', exp: now() + 600 }, 'HS256', enc('jack-secret'));
    let a = await expectConsumer('/hide', { authorization: jack }, 'jack');
    assert.equal(a.body.headers!.authorization, undefined);
    a = await expectConsumer(`/hide?a=1&jwt=${jack}&b=2`, {}, 'jack');
    assert.equal(a.body.url, '/hide?a=1&b=2');
    a = await expectConsumer('/hide', { cookie: `x=1; jwt=${jack}; y=2` }, 'jack');
    assert.equal(a.body.headers!.cookie, 'x=1; y=2');
    // without it the upstream sees the token
    a = await expectConsumer('/r1', { authorization: jack }, 'jack');
    assert.equal(a.body.headers!.authorization, jack);
  });

  test('anonymous_consumer: a request without a valid token goes on as that consumer', async () => {
    await expectConsumer('/anon', {}, 'anonymous');
    await expectConsumer('/anon', { authorization: 'garbage' }, 'anonymous');
    await expectConsumer('/anon', { authorization: await sign({ key: 'jack-key' }, 'HS256', enc('jack-secret')) }, 'jack');
  });

  test('schema violations are rejected with the field', async () => {
    const st = await rig.gw.status();
    const reason = (id: string) => st.rejected.find((r) => r.id === id)?.reason ?? '(not rejected)';
    assert.match(reason('nopub'), /\/plugins\/jwt-auth.*public_key/);
    assert.match(reason('nosecret'), /\/plugins\/jwt-auth.*secret/);
    assert.match(reason('notb64'), /\/plugins\/jwt-auth\/secret/);
    assert.match(reason('badalg'), /\/plugins\/jwt-auth\/algorithm/);
    assert.match(reason('badroute'), /\/plugins\/jwt-auth\/header: must be string/);
    for (const ok of ['jack', 'rsa', 'ec', 'badpem', 'anonymous', 'r1']) assert.equal(reason(ok), '(not rejected)', ok);
  });

  test('a changed secret applies live: the old key is dropped with the old consumer', async () => {
    const old = await sign({ key: 'jack-key' }, 'HS256', enc('jack-secret'));
    await expectConsumer('/r1', { authorization: old }, 'jack');
    const consumers = (routes.consumers as { username: string; plugins?: Record<string, unknown> }[]).map((c) =>
      c.username === 'jack' ? { username: 'jack', plugins: { 'jwt-auth': { key: 'jack-key', secret: 'rotated' } } } : c,
    );
    writeRoutes(rig.gw.routesPath, { ...routes, consumers });
    const fresh = await sign({ key: 'jack-key' }, 'HS256', enc('rotated'));
    await waitUntil(async () => (await call('/r1', { authorization: fresh })).status === 200, 5000, 'the rotated secret');
    await expect401('/r1', { authorization: old }, 'failed to verify jwt');
  });
});
