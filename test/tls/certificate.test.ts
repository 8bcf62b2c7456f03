import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { SslSchema, type SslConfig } from '../../src/config/schema/ssl.ts';
import { checkSsl, nameCovers } from '../../src/server/tls/certificate.ts';
import { decryptKey, encryptKey } from '../../src/server/tls/encryption.ts';
import { makeTestPki } from '../helpers/certs.ts';

// the options src/config/validate.ts compiles schemas with
const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false, verbose: true });
const validate = ajv.compile(SslSchema);
const errors = (v: unknown) => (validate(v) ? [] : validate.errors!.map((e) => `${e.instancePath || '/'} ${e.message}`));

const pki = makeTestPki();
const rsa = pki.server('a.test', ['a.test', '*.w.test'], 'rsa');
const ec = pki.server('a.test', ['a.test', '*.w.test'], 'ec');
const other = pki.server('b.test', ['b.test'], 'rsa');
const expired = pki.server('old.test', ['old.test'], 'rsa', { expired: true });

/** no message may carry key material (or any PEM at all) */
function assertClean(texts: (string | undefined)[]) {
  for (const t of texts) {
    if (t === undefined) continue;
    assert.doesNotMatch(t, /PRIVATE KEY|-----BEGIN|MII/, t);
  }
}

describe('SslSchema (APISIX schema_def.lua ssl)', () => {
  const base = { cert: rsa.cert, key: rsa.key };

  it('accepts sni or snis, wildcards and `*`, the meta fields, client, ssl_protocols', () => {
    for (const v of [
      { ...base, sni: 'a.test' },
      { ...base, snis: ['a.test', '*.w.test', '*'] },
      { ...base, id: 'cert-1', desc: 'd', labels: { env: 'prod' }, create_time: 1, update_time: 2, snis: ['a.test'], status: 0 },
      { ...base, sni: 'a.test', client: { ca: pki.ca.cert, depth: 2, skip_mtls_uri_regex: ['^/health$'] } },
      { ...base, sni: 'a.test', ssl_protocols: ['TLSv1.2', 'TLSv1.3'], type: 'server' },
      { ...base, sni: 'a.test', certs: [ec.cert], keys: [ec.key] },
      { ...base, type: 'client' }, // a client certificate for upstream mTLS needs no SNI
    ]) {
      assert.deepEqual(errors(v), [], JSON.stringify(Object.keys(v)));
    }
  });

  it('refuses what APISIX refuses', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...base }, /must have required property 'sni'|must match "then" schema/], // server without sni/snis
      [{ ...base, sni: 'a.test', snis: ['a.test'] }, /oneOf|"then"/], // both: oneOf
      [{ cert: rsa.cert, sni: 'a.test' }, /required property 'key'/],
      [{ key: rsa.key, type: 'client' }, /required property 'cert'/],
      [{ ...base, snis: [] }, /\/snis must NOT have fewer than 1 items/],
      [{ ...base, sni: 'a b.test' }, /\/sni must match pattern/],
      [{ ...base, sni: 'a.test', status: 2 }, /\/status must be equal to one of the allowed values/],
      [{ ...base, sni: 'a.test', type: 'proxy' }, /\/type must be equal to one of the allowed values/],
      [{ ...base, sni: 'a.test', ssl_protocols: ['TLSv1.0'] }, /\/ssl_protocols\/0 must be equal to one of the allowed values/],
      [{ ...base, sni: 'a.test', ssl_protocols: ['TLSv1.2', 'TLSv1.2'] }, /duplicate items/],
      [{ ...base, sni: 'a.test', client: { depth: 1 } }, /\/client must have required property 'ca'/],
      [{ ...base, sni: 'a.test', client: { ca: pki.ca.cert, depth: -1 } }, /\/client\/depth must be >= 0/],
      [{ ...base, sni: 'a.test', unknown: 1 }, /must NOT have additional properties/],
      [{ cert: 'short', key: rsa.key, sni: 'a.test' }, /\/cert must NOT have fewer than 128 characters/],
      [{ cert: rsa.cert, key: 'x'.repeat(63), sni: 'a.test' }, /\/key must NOT have fewer than 64 characters/],
      [{ cert: 'x'.repeat(64 * 1024 + 1), key: rsa.key, sni: 'a.test' }, /\/cert must NOT have more than 65536 characters/],
    ];
    for (const [value, expected] of cases) {
      const e = errors(value);
      assert.ok(e.some((m) => expected.test(m)), `${JSON.stringify(value).slice(0, 80)}: ${e.join('; ')}`);
    }
  });
});

describe('checkSsl', () => {
  it('accepts a matching pair and reports names, expiry, key types for each pair', () => {
    const r = checkSsl({ cert: rsa.cert, key: rsa.key, certs: [ec.cert], keys: [ec.key], snis: ['a.test', 'x.w.test'] });
    assert.equal(r.problem, undefined);
    assert.deepEqual(r.warnings, []);
    assert.deepEqual(r.info!.pairs.map((p) => [p.path, p.keyType, p.names]), [
      ['/cert', 'rsa', ['a.test', '*.w.test']],
      ['/certs/0', 'ec', ['a.test', '*.w.test']],
    ]);
    assert.ok(r.info!.daysLeft >= 1 && r.info!.daysLeft <= 2, String(r.info!.daysLeft));
    assert.ok(Math.abs(r.info!.notAfter - (Date.now() + 2 * 86_400_000)) < 120_000);
  });

  it('refuses a key of another certificate, naming the pair', () => {
    const main = checkSsl({ cert: rsa.cert, key: other.key, sni: 'a.test' });
    assert.equal(main.problem, '/cert: certificate and key do not match');
    const second = checkSsl({ cert: rsa.cert, key: rsa.key, certs: [ec.cert, other.cert], keys: [ec.key, rsa.key], sni: 'a.test' });
    assert.equal(second.problem, '/certs/1: certificate and key do not match');
    // an EC key against an RSA certificate: a different key type, same answer
    assert.equal(checkSsl({ cert: rsa.cert, key: ec.key, sni: 'a.test' }).problem, '/cert: certificate and key do not match');
    assertClean([main.problem, second.problem]);
  });

  it('refuses what does not parse, with the field path and no PEM text', () => {
    const garbageKey = '-----BEGIN PRIVATE KEY-----\n' + 'A'.repeat(80) + '\n-----END PRIVATE KEY-----\n';
    const garbageCert = '-----BEGIN CERTIFICATE-----\n' + 'A'.repeat(200) + '\n-----END CERTIFICATE-----\n';
    const cases: [SslConfig, string][] = [
      [{ cert: rsa.cert, key: garbageKey, sni: 'a.test' }, '/key: not a PEM private key'],
      [{ cert: garbageCert, key: rsa.key, sni: 'a.test' }, '/cert: not a PEM certificate'],
      [{ cert: 'x'.repeat(200), key: rsa.key, sni: 'a.test' }, '/cert: not a PEM certificate'],
      [{ cert: rsa.key, key: rsa.key, sni: 'a.test' }, '/cert: not a PEM certificate'], // the key pasted as cert
      [{ cert: rsa.cert, key: rsa.cert, sni: 'a.test' }, '/key: not a PEM private key'], // the cert pasted as key
      [{ cert: rsa.cert, key: rsa.key, certs: [ec.cert], keys: [garbageKey], sni: 'a.test' }, '/keys/0: not a PEM private key'],
      [{ cert: rsa.cert, key: rsa.key, certs: [ec.cert], sni: 'a.test' }, '/keys: mismatched number of certs and keys (1 certs, 0 keys)'],
      [{ cert: rsa.cert, key: rsa.key, sni: 'a.test', client: { ca: garbageCert } }, '/client/ca: not a PEM certificate'],
      [{ cert: rsa.cert + garbageCert, key: rsa.key, sni: 'a.test' }, '/cert: certificate 2 of the chain does not parse'],
    ];
    for (const [ssl, problem] of cases) {
      const r = checkSsl(ssl);
      assert.equal(r.problem, problem);
      assertClean([r.problem, ...r.warnings]);
    }
  });

  it('refuses a skip_mtls_uri_regex that does not compile (the one config-regex compiler decides)', () => {
    const r = checkSsl({ cert: rsa.cert, key: rsa.key, sni: 'a.test', client: { ca: pki.ca.cert, skip_mtls_uri_regex: ['^/ok$', '(a)\\1'] } });
    assert.match(r.problem!, /^\/client\/skip_mtls_uri_regex\/1: invalid regular expression .*backreferences/);
  });

  it('refuses a passphrase-protected key with a reason', () => {
    const encrypted = createPrivateKey(rsa.key).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'secret' }) as string;
    const r = checkSsl({ cert: rsa.cert, key: encrypted, sni: 'a.test' });
    assert.match(r.problem!, /^\/key: the private key is protected by a passphrase/);
  });

  it('decrypts keys stored with the keyring; a wrong keyring is a problem, not a crash', () => {
    const keyring = ['qeddd145sfvddff3'];
    const stored = { cert: rsa.cert, key: encryptKey(rsa.key, keyring), certs: [ec.cert], keys: [encryptKey(ec.key, keyring)], sni: 'a.test' };
    assert.equal(checkSsl(stored, (s) => decryptKey(s, keyring)).problem, undefined);
    const wrong = checkSsl(stored, (s) => decryptKey(s, ['edd1c9f0985e76a2']));
    assert.equal(wrong.problem, '/key: decrypt ssl key failed');
    const none = checkSsl(stored);
    assert.match(none.problem!, /^\/key: not a PEM private key \(encrypted with a data_encryption keyring\? none was given\)$/);
    // a foreign decryptKey error is not quoted (it could hold the value)
    const foreign = checkSsl(stored, (s) => {
      throw new Error(`cannot decrypt ${s}`);
    });
    assert.equal(foreign.problem, '/key: decrypt ssl key failed');
  });

  it('accepts an expired certificate with a warning (APISIX serves it too)', () => {
    const r = checkSsl({ cert: expired.cert, key: expired.key, sni: 'old.test' });
    assert.equal(r.problem, undefined);
    assert.deepEqual(r.warnings, ['/cert: certificate expired on 2020-02-01T00:00:00.000Z; still served, as APISIX does']);
    assert.ok(r.info!.daysLeft < -2000);
  });

  it('warns about SNIs the certificate does not name, wildcard as TLS clients see it', () => {
    const r = checkSsl({ cert: rsa.cert, key: rsa.key, snis: ['a.test', 'x.w.test', 'y.x.w.test', 'w.test', '*.w.test', '*', 'B.TEST.'] });
    assert.equal(r.problem, undefined);
    assert.deepEqual(r.warnings, [
      '/snis/2: "y.x.w.test" is not a name of the certificate /cert (a.test, *.w.test); clients will refuse it',
      '/snis/3: "w.test" is not a name of the certificate /cert (a.test, *.w.test); clients will refuse it',
      '/snis/6: "b.test" is not a name of the certificate /cert (a.test, *.w.test); clients will refuse it',
    ]);
    const single = checkSsl({ cert: rsa.cert, key: rsa.key, sni: 'c.test' });
    assert.match(single.warnings[0]!, /^\/sni: "c.test" is not a name/);
    // a client certificate (type client) has no SNIs to check
    assert.deepEqual(checkSsl({ cert: rsa.cert, key: rsa.key, type: 'client' }).warnings, []);
  });

  it('nameCovers: exact, case, trailing dot, one-label wildcard', () => {
    assert.ok(nameCovers('a.test', 'A.Test.'));
    assert.ok(nameCovers('*.w.test', 'x.w.test'));
    assert.ok(!nameCovers('*.w.test', 'w.test'));
    assert.ok(!nameCovers('*.w.test', 'y.x.w.test'));
    assert.ok(nameCovers('*.w.test', '*.w.test'));
    assert.ok(!nameCovers('x.w.test', '*.w.test'));
  });
});
