import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import type { UpstreamConfig } from '../config/schema/upstream.ts';
import { storedKeyPem } from '../config/data-encryption.ts';
import { ErrorCode, PorticoError } from '../errors.ts';

/** An upstream's `tls` (APISIX: client certificate, verify), compiled for the connectors. */
export interface UpstreamTls {
  /** PEM chain presented to the upstream (mutual TLS) */
  cert?: string;
  /** its private key, decrypted (data_encryption) */
  key?: string;
  /** verify the upstream's certificate and name (nginx proxy_ssl_verify; APISIX default off) */
  verify: boolean;
  /** CAs trusted when verifying (Portico); default: Node's bundled roots */
  ca?: string;
  /** identifies these settings in pool keys: connections made with other settings are not shared */
  id: string;
}

const fail = (at: string, rule: string) => new PorticoError(ErrorCode.SEMANTIC, `${at}: ${rule}`);

/**
 * Compiles `upstream.tls`; throws a SEMANTIC error naming the field (`/tls/client_key: ...`) when a
 * PEM does not parse or the key is not the certificate's. Never puts key material in a message.
 */
export function compileUpstreamTls(tls: UpstreamConfig['tls'], at = '/tls'): UpstreamTls | undefined {
  if (tls === undefined) return undefined;
  if (tls.client_cert_id !== undefined) {
    throw fail(`${at}/client_cert_id`, 'client certificates by ssl object id are not supported yet; put the PEM in client_cert and client_key');
  }
  if ((tls.client_cert === undefined) !== (tls.client_key === undefined)) {
    throw fail(`${at}/${tls.client_cert === undefined ? 'client_cert' : 'client_key'}`, 'client_cert and client_key go together');
  }
  let key: string | undefined;
  if (tls.client_cert !== undefined && tls.client_key !== undefined) {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(tls.client_cert);
    } catch {
      throw fail(`${at}/client_cert`, 'not a PEM certificate');
    }
    try {
      key = storedKeyPem(tls.client_key);
      if (!cert.checkPrivateKey(createPrivateKey(key))) throw fail(`${at}/client_key`, 'does not belong to client_cert');
    } catch (err) {
      if (err instanceof PorticoError) throw err;
      throw fail(`${at}/client_key`, 'not a PEM private key (or not decryptable with the data_encryption keyring)');
    }
  }
  if (tls.ca !== undefined) {
    try {
      new X509Certificate(tls.ca);
    } catch {
      throw fail(`${at}/ca`, 'not a PEM certificate');
    }
  }
  const verify = tls.verify ?? false;
  const id = createHash('sha256').update(`${tls.client_cert ?? ''}\0${tls.ca ?? ''}\0${verify}`).digest('base64url').slice(0, 12);
  return { ...(tls.client_cert !== undefined && { cert: tls.client_cert, key }), verify, ...(tls.ca !== undefined && { ca: tls.ca }), id };
}

/** tls.connect options for an upstream with `tls` (or none): verification off unless asked (nginx's default). */
export function upstreamTlsOptions(tls: UpstreamTls | undefined): { rejectUnauthorized: boolean; cert?: string; key?: string; ca?: string } {
  if (tls === undefined) return { rejectUnauthorized: false };
  return {
    rejectUnauthorized: tls.verify,
    ...(tls.cert !== undefined && { cert: tls.cert, key: tls.key }),
    ...(tls.ca !== undefined && { ca: tls.ca }),
  };
}
