import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { APISIX_DEFAULT_KEYRING, decryptKey, encryptKey, keyringProblem } from '../../src/server/tls/encryption.ts';
import { makeTestPki } from '../helpers/certs.ts';

const PLAIN = '-----BEGIN PRIVATE KEY-----\nportico test vector\n-----END PRIVATE KEY-----\n';
// computed with the openssl CLI (not with node:crypto), the way APISIX's data_encryption does it:
//   K=$(printf qeddd145sfvddff3 | xxd -p)
//   openssl enc -aes-128-cbc -K $K -iv $K -base64 -A -in plain.txt
const VECTOR_128 =
  'VMF7ACvwvQk6t8kvorP2IILe/DX1EZCw/HoMK2o713BtxgzRc71RrXybwuHYQdDAm8M7MfOmyB9PiteDTThiU9GsDoGf50Q9M6hIni/Z7r8=';
// AES-256 (a 32-byte keyring entry): the IV is the key's first 16 bytes (resty.aes copies the iv
// string, OpenSSL reads 16 bytes of it)
//   openssl enc -aes-256-cbc -K $(printf qeddd145sfvddff3qeddd145sfvddff3 | xxd -p -c 64) -iv $K -base64 -A
const VECTOR_256 =
  'j/UjW4keEUE6Fp2yD5gpEjOuZbGSahwgCctz1sHEbKLg4keUAlmwqVpi0EOS3xd1XiYqCdRIBTndaRMCU55kT2681l6q8J37zJ/hWRv3EEk=';

describe('ssl key encryption (APISIX data_encryption)', () => {
  it('matches an openssl-computed AES-128-CBC vector, key = IV = keyring entry', () => {
    assert.equal(encryptKey(PLAIN, ['qeddd145sfvddff3']), VECTOR_128);
    assert.equal(decryptKey(VECTOR_128, ['qeddd145sfvddff3']), PLAIN);
  });

  it('matches an openssl-computed AES-256-CBC vector for a 32-byte entry', () => {
    assert.equal(encryptKey(PLAIN, ['qeddd145sfvddff3qeddd145sfvddff3']), VECTOR_256);
    assert.equal(decryptKey(VECTOR_256, ['qeddd145sfvddff3qeddd145sfvddff3']), PLAIN);
  });

  it('agrees with openssl enc on a real private key, both ways', () => {
    const pki = makeTestPki();
    const key = pki.server('enc.test', ['enc.test']).key;
    const file = path.join(pki.dir, 'plain-key.pem');
    writeFileSync(file, key);
    const hex = Buffer.from('edd1c9f0985e76a2').toString('hex');
    const byOpenssl = execFileSync('openssl', ['enc', '-aes-128-cbc', '-K', hex, '-iv', hex, '-base64', '-A', '-in', file], { encoding: 'utf8' }).trim();
    assert.equal(encryptKey(key, ['edd1c9f0985e76a2']), byOpenssl);
    // and openssl decrypts what we wrote
    writeFileSync(file + '.enc', encryptKey(key, ['edd1c9f0985e76a2']));
    const back = execFileSync('openssl', ['enc', '-d', '-aes-128-cbc', '-K', hex, '-iv', hex, '-base64', '-A', '-in', file + '.enc'], { encoding: 'utf8' });
    assert.equal(back, key);
  });

  it('round-trips with APISIX default keyring; encrypts with the first entry', () => {
    const stored = encryptKey(PLAIN, APISIX_DEFAULT_KEYRING);
    assert.equal(stored, VECTOR_128);
    assert.equal(decryptKey(stored, APISIX_DEFAULT_KEYRING), PLAIN);
  });

  it('tries each keyring entry in order (key rotation: new key first, old kept)', () => {
    const old = encryptKey(PLAIN, ['edd1c9f0985e76a2']);
    assert.equal(decryptKey(old, ['qeddd145sfvddff3qeddd145sfvddff3', 'edd1c9f0985e76a2']), PLAIN);
    assert.equal(decryptKey(VECTOR_128, ['edd1c9f0985e76a2', 'qeddd145sfvddff3']), PLAIN);
  });

  it('plain PEM passes through decrypt; non-PEM passes through encrypt; no keyring stores in clear', () => {
    assert.equal(decryptKey(PLAIN, ['qeddd145sfvddff3']), PLAIN);
    assert.equal(encryptKey('not a pem', ['qeddd145sfvddff3']), 'not a pem');
    assert.equal(encryptKey(PLAIN, []), PLAIN);
    assert.equal(decryptKey(VECTOR_128, []), VECTOR_128, 'no keyring: value as stored, as APISIX');
  });

  it('fails with APISIX words and no key material', () => {
    assert.throws(() => decryptKey(VECTOR_128, ['edd1c9f0985e76a2']), (e: Error & { code?: string }) => {
      assert.equal(e.message, 'decrypt ssl key failed');
      assert.equal(e.code, 'PORTICO_ERR_SEMANTIC');
      return true;
    });
    assert.throws(() => decryptKey('not base64 !', ['qeddd145sfvddff3']), /: base64 decode ssl key failed$/);
    assert.throws(() => decryptKey('AAAA', ['qeddd145sfvddff3']), /decrypt ssl key failed/);
  });

  it('ignores keyring entries of other lengths; keyringProblem names them', () => {
    assert.equal(decryptKey(VECTOR_128, ['short', 'qeddd145sfvddff3']), PLAIN);
    assert.equal(encryptKey(PLAIN, ['short', 'qeddd145sfvddff3']), VECTOR_128);
    assert.equal(keyringProblem(['qeddd145sfvddff3', 'qeddd145sfvddff3qeddd145sfvddff3']), undefined);
    assert.equal(keyringProblem(['qeddd145sfvddff3', 'short']), '/apisix/data_encryption/keyring/1: must be 16 bytes (AES-128) or 32 bytes (AES-256), is 5');
  });
});
