/**
 * APISIX's `data_encryption` of ssl private keys, byte for byte, so `key`/`keys` values that
 * APISIX's Admin API wrote into etcd load in Portico and the reverse.
 *
 * What APISIX does (apisix/core/data_encryption.lua, apisix/ssl.lua, lua-resty-string aes.lua):
 * - keyring: `apisix.data_encryption.keyring`, a list of strings. A 16-byte entry is an AES-128-CBC
 *   key, a 32-byte entry an AES-256-CBC key; any other length is dropped (logged; the CLI refuses
 *   it at start). APISIX's default keyring is ["qeddd145sfvddff3", "edd1c9f0985e76a2"], so keys an
 *   out-of-the-box APISIX stored are encrypted with "qeddd145sfvddff3".
 * - the IV is the key itself: resty.aes copies the `iv` string into the IV buffer and OpenSSL reads
 *   the cipher's IV length (16 bytes), so AES-256 uses the first 16 bytes of its 32-byte key.
 * - PKCS#7 padding (resty.aes default), then standard base64 with padding.
 * - encrypt uses the first keyring entry, and only values starting with `---` (PEM): anything
 *   else is stored as it is. No keyring: stored in clear.
 * - decrypt: a value starting with `---` is plain PEM and passes through; otherwise base64-decode
 *   and try each keyring entry in order; the first that decrypts wins. No keyring: passes through.
 *
 * One deliberate difference: a wrong key yields valid PKCS#7 padding about once in 256 tries,
 * which APISIX takes as success (and then fails to parse the key). Since only PEM is ever
 * encrypted, Portico also requires the plaintext to start with `---` before taking it.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { ErrorCode, PorticoError } from '../../errors.ts';

export const APISIX_DEFAULT_KEYRING: readonly string[] = Object.freeze(['qeddd145sfvddff3', 'edd1c9f0985e76a2']);

interface KeyringCipher {
  algorithm: 'aes-128-cbc' | 'aes-256-cbc';
  key: Buffer;
  iv: Buffer;
}

// Keyrings are few and long-lived: compile each once (a WeakMap would miss fresh array literals).
const compiled = new Map<string, KeyringCipher[]>();

function ciphersOf(keyring: readonly string[]): KeyringCipher[] {
  const cacheKey = keyring.join('\u0000');
  let ciphers = compiled.get(cacheKey);
  if (ciphers === undefined) {
    ciphers = [];
    for (const entry of keyring) {
      const key = Buffer.from(entry, 'utf8');
      if (key.length !== 16 && key.length !== 32) continue; // APISIX drops these too (see keyringProblem)
      ciphers.push({ algorithm: key.length === 16 ? 'aes-128-cbc' : 'aes-256-cbc', key, iv: key.subarray(0, 16) });
    }
    if (compiled.size > 64) compiled.clear();
    compiled.set(cacheKey, ciphers);
  }
  return ciphers;
}

/**
 * Why a keyring cannot be used as configured, or undefined. For the gateway config check at start:
 * APISIX's CLI refuses entries that are not 16 or 32 bytes.
 */
export function keyringProblem(keyring: readonly string[]): string | undefined {
  for (let i = 0; i < keyring.length; i++) {
    const length = Buffer.byteLength(keyring[i]!, 'utf8');
    if (length !== 16 && length !== 32) {
      return `/apisix/data_encryption/keyring/${i}: must be 16 bytes (AES-128) or 32 bytes (AES-256), is ${length}`;
    }
  }
  return undefined;
}

const isPem = (value: string) => value.startsWith('---');

/** The value to store for a private key: PEM encrypted with the first keyring entry (APISIX's aes_encrypt_pkey). */
export function encryptKey(pem: string, keyring: readonly string[]): string {
  const cipher = ciphersOf(keyring)[0];
  if (cipher === undefined || !isPem(pem)) return pem;
  const c = createCipheriv(cipher.algorithm, cipher.key, cipher.iv);
  return Buffer.concat([c.update(pem, 'utf8'), c.final()]).toString('base64');
}

// ngx.decode_base64 refuses anything but the standard alphabet with correct padding
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The PEM of a stored private key (APISIX's aes_decrypt_pkey). Throws a PorticoError
 * (PORTICO_ERR_SEMANTIC) that never contains the value: "base64 decode ssl key failed" or
 * "decrypt ssl key failed" (APISIX's words).
 */
export function decryptKey(stored: string, keyring: readonly string[]): string {
  if (isPem(stored)) return stored;
  const ciphers = ciphersOf(keyring);
  if (ciphers.length === 0) return stored;
  if (!BASE64.test(stored)) throw new PorticoError(ErrorCode.SEMANTIC, 'base64 decode ssl key failed');
  const data = Buffer.from(stored, 'base64');
  // CBC input is whole blocks; anything else cannot come from encryptKey
  if (data.length === 0 || data.length % 16 !== 0) throw new PorticoError(ErrorCode.SEMANTIC, 'decrypt ssl key failed');
  for (const cipher of ciphers) {
    let plain: string;
    try {
      const d = createDecipheriv(cipher.algorithm, cipher.key, cipher.iv);
      plain = Buffer.concat([d.update(data), d.final()]).toString('utf8');
    } catch {
      continue; // bad padding: not this key
    }
    if (isPem(plain)) return plain;
  }
  throw new PorticoError(ErrorCode.SEMANTIC, 'decrypt ssl key failed');
}
