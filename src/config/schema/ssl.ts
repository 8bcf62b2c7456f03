import { Type, type Static } from '@sinclair/typebox';
import { Meta, StringEnum } from './common.ts';

/**
 * APISIX's `host_def_pat` (schema_def.lua): a host name, `*.` wildcards, or `*` alone (the
 * catch-all certificate). Wider than common.ts's Host, which has no lone `*`.
 */
const SniHost = Type.String({ pattern: '^\\*$|^\\*?[0-9a-zA-Z-._\\[\\]:]+$', maxLength: 253 });

/**
 * PEM bounds as in APISIX's certificate_scheme / private_key_schema: a certificate shorter than
 * 128 characters or a key shorter than 64 cannot be PEM; 64 KiB bounds what a handshake parses.
 */
const CertificatePem = Type.String({ minLength: 128, maxLength: 64 * 1024 });
const PrivateKeyPem = Type.String({ minLength: 64, maxLength: 64 * 1024 });

export const SSL_PROTOCOLS = ['TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const;
export type SslProtocol = (typeof SSL_PROTOCOLS)[number];

/**
 * An APISIX `ssl` object (etcd key `<prefix>/ssls/<id>`): a certificate and its private key, with
 * the host names (SNIs) it is served for. `certs`/`keys` add more pairs for the same names (an
 * ECDSA pair beside an RSA one); `client` turns on mutual TLS with `client.ca`. `key`/`keys` may be
 * stored encrypted with the data_encryption keyring (see src/server/tls/encryption.ts).
 *
 * Rules beyond the fields, as APISIX's schema has them: `cert` and `key` always; a `server`
 * object (the default type) needs exactly one of `sni`/`snis`. `certs`/`keys` of equal length is
 * checked by checkSsl (APISIX: check_ssl_conf), as JSON Schema cannot say it.
 *
 * `name` comes with Meta although APISIX's ssl schema has none: accepted, never required.
 */
export const SslSchema = Type.Object(
  {
    ...Meta,
    type: Type.Optional(StringEnum(['server', 'client'] as const, { default: 'server' })),
    cert: CertificatePem,
    key: PrivateKeyPem,
    sni: Type.Optional(SniHost),
    snis: Type.Optional(Type.Array(SniHost, { minItems: 1, maxItems: 1024 })),
    certs: Type.Optional(Type.Array(CertificatePem, { maxItems: 16 })),
    keys: Type.Optional(Type.Array(PrivateKeyPem, { maxItems: 16 })),
    client: Type.Optional(
      Type.Object(
        {
          ca: CertificatePem,
          depth: Type.Optional(Type.Integer({ minimum: 0, default: 1 })),
          skip_mtls_uri_regex: Type.Optional(
            Type.Array(Type.String({ maxLength: 4096 }), { minItems: 1, uniqueItems: true, maxItems: 256 }),
          ),
        },
        // open like APISIX's `client` (no additionalProperties there), so its objects load as they are
      ),
    ),
    // an enum, not a union of literals: ajv then reports "must be one of 1, 0"
    status: Type.Optional(Type.Unsafe<1 | 0>({ type: 'integer', enum: [1, 0], default: 1 })),
    ssl_protocols: Type.Optional(Type.Array(StringEnum(SSL_PROTOCOLS), { maxItems: 3, uniqueItems: true })),
  },
  {
    additionalProperties: false,
    // APISIX: if type is server (or absent: `properties` holds vacuously), then oneOf sni/snis
    if: { properties: { type: { enum: ['server'] } } },
    then: { oneOf: [{ required: ['sni'] }, { required: ['snis'] }] },
  },
);

export type SslConfig = Static<typeof SslSchema>;

/** The SNIs of a server ssl object, whichever of `sni`/`snis` it uses. */
export function sslSnis(ssl: Pick<SslConfig, 'sni' | 'snis'>): string[] {
  return ssl.snis ?? (ssl.sni !== undefined ? [ssl.sni] : []);
}
