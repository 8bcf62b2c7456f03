/**
 * Checks of an ssl object's PEM material, beyond its JSON schema (APISIX: check_ssl_conf in
 * apisix/ssl.lua). Pure: no state, no I/O; node:crypto does the parsing.
 *
 * A problem refuses the object, named by its field path (`/certs/1: certificate and key do not
 * match`), the way validate.ts reports schema errors. Warnings do not refuse it: an expired or
 * not-yet-valid certificate, an SNI the certificate does not name. Messages never carry PEM text:
 * OpenSSL's own error strings are not passed on, only fixed sentences.
 *
 * Differences from APISIX, on purpose:
 * - APISIX parses cert and key but does not check that they belong together ("TODO: check if key &
 *   cert match"); such an object is accepted and every handshake for it then fails. Portico refuses
 *   it, so the previous good version stays in force.
 * - APISIX checks nothing about dates or names. Portico accepts expired certificates too (APISIX
 *   serves them, and refusing a renewal-lagging cert would take the host down harder than serving
 *   it) but says so in a warning, and the CertInfo carries daysLeft for status/metrics.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { PorticoError } from '../../errors.ts';
import { sslSnis, type SslConfig } from '../../config/schema/ssl.ts';
import { checkConfigRegex } from '../../security/regex.ts';

/** What one cert/key pair holds, for status pages and expiry metrics. */
export interface PairInfo {
  /** the field path of the certificate: `/cert` or `/certs/<i>` */
  path: string;
  /** DNS names of the subjectAltName (the certificate's CN when it has no SAN DNS names), lower case */
  names: string[];
  subject: string;
  /** expiry, ms since the epoch */
  notAfter: number;
  notBefore: number;
  /** whole days until notAfter (negative once expired) */
  daysLeft: number;
  /** the private key's type: 'rsa', 'ec', 'ed25519', 'rsa-pss', ... */
  keyType: string;
  fingerprint256: string;
}

export interface CertInfo {
  /** `/cert` first, then `/certs/<i>` in order */
  pairs: PairInfo[];
  /** the earliest notAfter of all pairs */
  notAfter: number;
  /** the fewest days left of all pairs */
  daysLeft: number;
}

export interface SslCheck {
  /** why the object cannot be used, with the field path; undefined when it can */
  problem?: string;
  warnings: string[];
  /** present when there is no problem */
  info?: CertInfo;
}

const DAY_MS = 86_400_000;
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** Each PEM certificate of a chain, in order, or a problem. */
function parseCertificates(pem: string, path: string): X509Certificate[] | string {
  const blocks = [...pem.matchAll(PEM_BLOCK)].filter((m) => m[1] === 'CERTIFICATE' || m[1] === 'TRUSTED CERTIFICATE');
  if (blocks.length === 0) return `${path}: not a PEM certificate`;
  const chain: X509Certificate[] = [];
  for (let i = 0; i < blocks.length; i++) {
    try {
      chain.push(new X509Certificate(blocks[i]![0]));
    } catch {
      return blocks.length === 1
        ? `${path}: not a PEM certificate`
        : `${path}: certificate ${i + 1} of the chain does not parse`;
    }
  }
  return chain;
}

function parsePrivateKey(
  stored: string,
  path: string,
  decryptKey: ((stored: string) => string) | undefined,
): KeyObject | string {
  let pem = stored;
  if (decryptKey !== undefined) {
    try {
      pem = decryptKey(stored);
    } catch (e) {
      // only our own messages: a foreign error could quote the value
      return `${path}: ${e instanceof PorticoError ? e.message : 'decrypt ssl key failed'}`;
    }
  }
  if (!pem.includes('-----BEGIN')) {
    return decryptKey === undefined && !pem.startsWith('---')
      ? `${path}: not a PEM private key (encrypted with a data_encryption keyring? none was given)`
      : `${path}: not a PEM private key`;
  }
  if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: 4,ENCRYPTED/.test(pem)) {
    return `${path}: the private key is protected by a passphrase, which APISIX ssl objects cannot carry`;
  }
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    return `${path}: not a PEM private key`;
  }
}

/** The DNS names a certificate is valid for: SAN DNS entries, else the subject CN (as old clients do). */
export function certificateNames(cert: X509Certificate): string[] {
  const san = cert.subjectAltName;
  if (san) {
    const names: string[] = [];
    // "DNS:a.com, DNS:*.b.com, IP Address:127.0.0.1"; quoted entries only for odd characters
    for (const part of san.split(/,\s*/)) {
      if (part.startsWith('DNS:')) names.push(normalizeHost(part.slice(4).replace(/^"|"$/g, '')));
    }
    if (names.length > 0) return names;
  }
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  return cn ? [normalizeHost(cn[1]!)] : [];
}

/** Lower case, no trailing dot: how both APISIX (ssl_filter, server_name) and Portico compare host names. */
export function normalizeHost(host: string): string {
  const lower = host.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * Whether a certificate name covers a host the way TLS clients check it (RFC 6125): `*.a.com`
 * covers `x.a.com`, not `a.com` nor `y.x.a.com`. A host that is itself a wildcard (`*.a.com` as
 * an SNI of the ssl object) is covered only by the same wildcard.
 */
export function nameCovers(certName: string, host: string): boolean {
  const name = normalizeHost(certName);
  const h = normalizeHost(host);
  if (name === h) return true;
  if (!name.startsWith('*.') || h.startsWith('*')) return false;
  const dot = h.indexOf('.');
  return dot > 0 && h.slice(dot + 1) === name.slice(2);
}

function checkPair(
  certPem: string,
  keyStored: string,
  certPath: string,
  keyPath: string,
  decryptKey: ((stored: string) => string) | undefined,
  now: number,
): PairInfo | string {
  const chain = parseCertificates(certPem, certPath);
  if (typeof chain === 'string') return chain;
  const key = parsePrivateKey(keyStored, keyPath, decryptKey);
  if (typeof key === 'string') return key;
  const leaf = chain[0]!;
  let matches = false;
  try {
    matches = leaf.checkPrivateKey(key);
  } catch {
    matches = false;
  }
  if (!matches) return `${certPath}: certificate and key do not match`;
  const notAfter = Date.parse(leaf.validTo);
  return {
    path: certPath,
    names: certificateNames(leaf),
    subject: leaf.subject.replace(/\n/g, ', '),
    notAfter,
    notBefore: Date.parse(leaf.validFrom),
    daysLeft: Math.floor((notAfter - now) / DAY_MS),
    keyType: key.asymmetricKeyType ?? 'unknown',
    fingerprint256: leaf.fingerprint256,
  };
}

/**
 * Checks an ssl object that passed SslSchema: every cert/key pair parses and belongs together,
 * `certs`/`keys` pair up, `client.ca` parses, `client.skip_mtls_uri_regex` compiles. `decryptKey` turns a stored `key`/`keys` value into
 * PEM (encryption.ts's decryptKey with the keyring); without it keys must be plain PEM.
 * `now` is for tests.
 */
export function checkSsl(
  ssl: SslConfig,
  decryptKey?: (stored: string) => string,
  now: number = Date.now(),
): SslCheck {
  const warnings: string[] = [];
  const pairs: PairInfo[] = [];

  const main = checkPair(ssl.cert, ssl.key, '/cert', '/key', decryptKey, now);
  if (typeof main === 'string') return { problem: main, warnings };
  pairs.push(main);

  // APISIX checks only cert/key of a client-type object (a certificate Portico presents upstream)
  if (ssl.type !== 'client') {
    const certs = ssl.certs ?? [];
    const keys = ssl.keys ?? [];
    if (certs.length !== keys.length) {
      return { problem: `/keys: mismatched number of certs and keys (${certs.length} certs, ${keys.length} keys)`, warnings };
    }
    for (let i = 0; i < certs.length; i++) {
      const pair = checkPair(certs[i]!, keys[i]!, `/certs/${i}`, `/keys/${i}`, decryptKey, now);
      if (typeof pair === 'string') return { problem: pair, warnings };
      pairs.push(pair);
    }
    if (ssl.client !== undefined) {
      const ca = parseCertificates(ssl.client.ca, '/client/ca');
      if (typeof ca === 'string') return { problem: ca, warnings };
      const skips = ssl.client.skip_mtls_uri_regex ?? [];
      for (let i = 0; i < skips.length; i++) {
        const reason = checkConfigRegex(skips[i]!);
        if (reason !== undefined) return { problem: `/client/skip_mtls_uri_regex/${i}: ${reason}`, warnings };
      }
      for (const c of ca) {
        if (Date.parse(c.validTo) < now) warnings.push(`/client/ca: CA certificate ${c.subject.replace(/\n/g, ', ')} expired on ${new Date(Date.parse(c.validTo)).toISOString()}`);
      }
    }
  }

  for (const pair of pairs) {
    if (pair.notAfter < now) {
      warnings.push(`${pair.path}: certificate expired on ${new Date(pair.notAfter).toISOString()}; still served, as APISIX does`);
    } else if (pair.notBefore > now) {
      warnings.push(`${pair.path}: certificate is not valid before ${new Date(pair.notBefore).toISOString()}`);
    }
  }

  if (ssl.type !== 'client') {
    const snis = sslSnis(ssl);
    const field = ssl.snis !== undefined ? '/snis' : '/sni';
    snis.forEach((sni, i) => {
      if (sni === '*') return; // the catch-all: no certificate names every host
      for (const pair of pairs) {
        if (!pair.names.some((n) => nameCovers(n, sni))) {
          const where = ssl.snis !== undefined ? `${field}/${i}` : field;
          warnings.push(`${where}: ${JSON.stringify(normalizeHost(sni))} is not a name of the certificate ${pair.path} (${pair.names.join(', ') || 'no DNS names'}); clients will refuse it`);
        }
      }
    });
  }

  let notAfter = Infinity;
  let daysLeft = Infinity;
  for (const p of pairs) {
    notAfter = Math.min(notAfter, p.notAfter);
    daysLeft = Math.min(daysLeft, p.daysLeft);
  }
  return { warnings, info: { pairs, notAfter, daysLeft } };
}
