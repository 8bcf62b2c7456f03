/**
 * The keyring ssl private keys stored in the config source are decrypted with (portico.yaml
 * `data_encryption.keyring`, APISIX's `apisix.data_encryption`; its default keyring when unset, so
 * keys an out-of-the-box APISIX wrote into etcd load as they are). Set once at start, before the
 * first object is validated; the validator and the TLS listeners read it here.
 */
import { APISIX_DEFAULT_KEYRING, decryptKey } from '../server/tls/encryption.ts';

let keyring: readonly string[] = APISIX_DEFAULT_KEYRING;

export function configureDataEncryption(ring: readonly string[] | undefined): void {
  keyring = ring ?? APISIX_DEFAULT_KEYRING;
}

/** A stored `key`/`keys` value as PEM: plain PEM passes through, else it is decrypted (throws when no key fits). */
export function storedKeyPem(stored: string): string {
  return decryptKey(stored, keyring);
}

export function currentKeyring(): readonly string[] {
  return keyring;
}
