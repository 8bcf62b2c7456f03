/**
 * Which ssl object serves a TLS handshake, by the SNI the client sent (APISIX:
 * apisix/ssl/router/radixtree_sni.lua).
 *
 * Model: an SniTable is immutable, built from SslEntry objects; the listener reads the current
 * table through a getter, so a config change swaps the table and the next handshake sees it
 * (handshakes under way finish with the entry they found). An SslEntry is one version of one ssl
 * object and owns its lazily created tls.SecureContexts: a table rebuilt from the same entries
 * keeps them, a replaced object gets a new entry and so new contexts. Building a table parses no
 * PEM (10,000 entries: see the test's timing), the first handshake for an entry does.
 *
 * Matching, as APISIX:
 * - configured SNIs and the client's servername are compared lower case, without a trailing dot;
 * - an exact name first; then wildcards, longest suffix first: `*.b.com` matches `a.b.com`, not
 *   `b.com` and not `x.a.b.com` (APISIX's radixtree_sni.t TEST 11: aa.bb.test2.com does not match
 *   *.test2.com); a lone `*` matches every servername;
 * - no servername (clients by IP): `fallbackSni` (APISIX's apisix.ssl.fallback_sni) when set,
 *   else no entry and the handshake fails;
 * - only `type: server` objects with status 1 (or absent) are in the table.
 * Two differences, both where APISIX's behaviour is an artefact of its radix tree: when the
 * longest wildcard does not fit (`*.b.com` for `x.a.b.com`), APISIX gives up, Portico goes on to a
 * shorter fitting wildcard or `*`; and a wildcard stands for a non-empty part of the first label
 * (`*b.com` matches `xb.com`), while APISIX's suffix match also lets `*b.com` match `b.com`.
 * The same name in two objects: the first entry in the list wins (the caller orders them, e.g. by
 * id); `duplicates` lists the others so they can be reported.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import { sslSnis, type SslConfig, type SslProtocol } from '../../config/schema/ssl.ts';
import { normalizeHost } from './certificate.ts';
import { acceptedKeyTypes, type ClientHello } from './client-hello.ts';
import { compileConfigRegex, type ConfigRegex } from '../../security/regex.ts';

export interface SslEntryOptions {
  /** turns a stored `key`/`keys` value into PEM (encryption.ts decryptKey with the keyring) */
  decryptKey?: (stored: string) => string;
}

interface Pair {
  cert: string;
  key: string;
  keyType?: string;
  context?: SecureContext;
}

/** One version of one ssl object, as the data plane needs it. */
export class SslEntry {
  readonly id: string;
  readonly ssl: SslConfig;
  /** normalized: lower case, no trailing dot */
  readonly snis: readonly string[];
  /** mutual TLS: clients must present a certificate signed by `ssl.client.ca` */
  readonly requiresClientCert: boolean;
  /** `ssl_protocols`, or undefined for the listener's default */
  readonly protocols: readonly SslProtocol[] | undefined;
  private readonly pairs: Pair[];
  private readonly decryptKey: ((stored: string) => string) | undefined;

  constructor(id: string, ssl: SslConfig, options: SslEntryOptions = {}) {
    this.id = id;
    this.ssl = ssl;
    this.snis = sslSnis(ssl).map(normalizeHost);
    this.requiresClientCert = ssl.client !== undefined;
    this.protocols = ssl.ssl_protocols?.length ? ssl.ssl_protocols : undefined;
    this.pairs = [{ cert: ssl.cert, key: ssl.key }];
    const certs = ssl.certs ?? [];
    for (let i = 0; i < certs.length; i++) this.pairs.push({ cert: certs[i]!, key: ssl.keys?.[i] ?? '' });
    this.decryptKey = options.decryptKey;
  }

  /**
   * Whether a request path is exempt from the client certificate (`client.skip_mtls_uri_regex`,
   * searched anywhere in the path as ngx.re.match does). Compiled on first use, through the one
   * config-regex compiler (linear-time matching); checkSsl has refused patterns that do not compile.
   */
  skipsClientCert(uri: string): boolean {
    const patterns = this.ssl.client?.skip_mtls_uri_regex;
    if (patterns === undefined) return false;
    this.skipRegexes ??= patterns.map((p) => compileConfigRegex(p));
    return this.skipRegexes.some((r) => r.test(uri));
  }

  private skipRegexes: ConfigRegex[] | undefined;

  get pairCount(): number {
    return this.pairs.length;
  }

  private pem(pair: Pair): string {
    return this.decryptKey ? this.decryptKey(pair.key) : pair.key;
  }

  /** The key type ('rsa', 'ec', ...) of each pair; parses the keys on first use. */
  keyTypes(): string[] {
    return this.pairs.map((pair) => (pair.keyType ??= createPrivateKey(this.pem(pair)).asymmetricKeyType ?? 'unknown'));
  }

  /**
   * The pair to serve a client that can verify `accepted` key types (best first, from
   * client-hello.ts acceptedKeyTypes): the first pair of the first accepted type. Without that
   * knowledge, an RSA pair: every client verifies RSA. Else the first pair (`cert`/`key`).
   */
  pairFor(accepted?: readonly string[]): number {
    if (this.pairs.length === 1) return 0;
    const types = this.keyTypes();
    for (const type of accepted ?? ['rsa']) {
      const i = types.indexOf(type);
      if (i >= 0) return i;
    }
    return 0;
  }

  /**
   * The secure context of one pair, created on first use and kept. One pair per context: Node
   * serves only one certificate of an SNI context (client-hello.ts says why). `ca` is the
   * client CA of mutual TLS: Node uses an SNI context's CA store to verify the client certificate
   * (requestCert itself is a server option: see handshakeProfile).
   */
  context(pairIndex = 0): SecureContext {
    const pair = this.pairs[pairIndex] ?? this.pairs[0]!;
    return (pair.context ??= createSecureContext(this.contextOptions(pairIndex)));
  }

  /** The options of context(pairIndex), for server.setSecureContext (holds the decrypted key: keep it short-lived). */
  contextOptions(pairIndex = 0): SecureContextOptions {
    const pair = this.pairs[pairIndex] ?? this.pairs[0]!;
    return {
      cert: pair.cert,
      key: this.pem(pair),
      ...(this.ssl.client !== undefined ? { ca: this.ssl.client.ca } : {}),
    };
  }
}

export interface SniTableOptions {
  /** servername to use when the client sends none (APISIX apisix.ssl.fallback_sni) */
  fallbackSni?: string;
}

/** Whether an ssl object takes part in SNI matching: a server certificate that is enabled. */
export function servesHandshakes(ssl: SslConfig): boolean {
  return (ssl.type ?? 'server') === 'server' && (ssl.status ?? 1) === 1;
}

export class SniTable {
  /** every entry given that serves handshakes, by id */
  readonly entries: ReadonlyMap<string, SslEntry>;
  /** `sni (id)` for each name already taken by an earlier entry */
  readonly duplicates: readonly string[];
  private readonly exact = new Map<string, SslEntry>();
  /** wildcard suffix (`.b.com` for `*.b.com`) -> entry */
  private readonly wildcards = new Map<string, SslEntry>();
  private readonly catchAll: SslEntry | undefined;
  /** some wildcard is not `*.`: `*b.com` matches `xb.com` (APISIX's suffix match) */
  private readonly partialWildcards: boolean;
  private readonly fallbackSni: string | undefined;

  constructor(entries: Iterable<SslEntry>, options: SniTableOptions = {}) {
    const byId = new Map<string, SslEntry>();
    const duplicates: string[] = [];
    let catchAll: SslEntry | undefined;
    let partial = false;
    for (const entry of entries) {
      if (!servesHandshakes(entry.ssl)) continue;
      byId.set(entry.id, entry);
      for (const sni of entry.snis) {
        if (sni === '*') {
          if (catchAll === undefined) catchAll = entry;
          else duplicates.push(`* (${entry.id})`);
          continue;
        }
        const map = sni.startsWith('*') ? this.wildcards : this.exact;
        const key = sni.startsWith('*') ? sni.slice(1) : sni;
        if (sni.startsWith('*') && !key.startsWith('.')) partial = true;
        const taken = map.get(key);
        if (taken === undefined) map.set(key, entry);
        else if (taken !== entry) duplicates.push(`${sni} (${entry.id})`);
      }
    }
    this.entries = byId;
    this.duplicates = duplicates;
    this.catchAll = catchAll;
    this.partialWildcards = partial;
    this.fallbackSni = options.fallbackSni === undefined ? undefined : normalizeHost(options.fallbackSni);
  }

  /** A table from ssl objects (id -> value): those that serve handshakes, in the given order. */
  static fromSsls(ssls: Iterable<readonly [string, SslConfig]>, options: SniTableOptions & SslEntryOptions = {}): SniTable {
    const entries: SslEntry[] = [];
    for (const [id, ssl] of ssls) if (servesHandshakes(ssl)) entries.push(new SslEntry(id, ssl, options));
    return new SniTable(entries, options);
  }

  /**
   * A table with some objects put (new entries for new or changed objects) and some deleted, all
   * other entries (and their contexts) kept. Rebuilding is cheap; this only saves the caller
   * the bookkeeping.
   */
  withChanges(put: Iterable<SslEntry>, deletedIds: Iterable<string> = [], options: SniTableOptions = { fallbackSni: this.fallbackSni }): SniTable {
    const next = new Map(this.entries);
    for (const id of deletedIds) next.delete(id);
    for (const entry of put) next.set(entry.id, entry);
    return new SniTable(next.values(), options);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The entry for a client's servername (undefined: none; the handshake should fail). */
  lookup(servername: string | undefined | false | null): SslEntry | undefined {
    const name = servername ? normalizeHost(servername) : this.fallbackSni;
    if (name === undefined || name === '') return undefined;
    const exact = this.exact.get(name);
    if (exact !== undefined) return exact;
    if (this.wildcards.size > 0) {
      // the wildcard stands for the first label, whole (see the class comment): one lookup, or
      // one per position in the first label when some pattern is a partial label (`*b.com`)
      const dot = name.indexOf('.');
      if (dot > 0) {
        for (let i = this.partialWildcards ? 1 : dot; i <= dot; i++) {
          const entry = this.wildcards.get(name.slice(i));
          if (entry !== undefined) return entry;
        }
      }
    }
    return this.catchAll;
  }
}

export type SniCallback = (this: TLSSocket | unknown, servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;

/**
 * An SNICallback for tls.createServer: the context of the entry the current table finds, for
 * the pair of a key type in `accepted` (see SslEntry.pairFor; a terminator that read the
 * ClientHello runs one server per preferred type). No entry: onMiss, and the handshake fails
 * (Node sends an alert), as APISIX's does.
 *
 * Node calls the SNICallback only when the client sent a servername: fallbackSni needs a server
 * whose default context is the fallback's (see terminator.ts) or a ClientHello reader.
 */
export function sniCallback(
  table: () => SniTable,
  onMiss: (servername: string) => void,
  accepted?: readonly string[],
): (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void {
  return (servername, cb) => {
    let context: SecureContext;
    try {
      const entry = table().lookup(servername);
      if (entry === undefined) {
        onMiss(servername);
        cb(new Error(`no ssl object for SNI ${JSON.stringify(servername)}`));
        return;
      }
      context = entry.context(entry.pairFor(accepted));
    } catch (e) {
      // a key that does not decrypt or parse now: checked at validation, so a keyring change
      cb(e instanceof Error ? new Error(`ssl object for SNI ${JSON.stringify(servername)} unusable: ${e.message.split('\n')[0]}`) : new Error('ssl object unusable'));
      return;
    }
    cb(null, context);
  };
}

/** The tls.Server options a handshake for `entry` needs (the terminator keeps one server per distinct profile). */
export interface HandshakeProfile {
  /** identifies the server variant */
  key: string;
  minVersion: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  maxVersion: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';
  requestCert: boolean;
  /**
   * Refuse an unverified client certificate in the handshake, as APISIX does unless
   * `client.skip_mtls_uri_regex` is set (then requests are checked one by one: clientCertProblem).
   */
  rejectUnauthorized: boolean;
  /** key types the client accepts, best first: the SNICallback's pair choice */
  accepted: readonly string[];
}

const PROTOCOL_ORDER: readonly SslProtocol[] = ['TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

/**
 * The server variant for a handshake: protocol range from the entry's ssl_protocols (else
 * `defaultProtocols`, APISIX's default TLSv1.2 TLSv1.3), whether to ask for a client
 * certificate, and the key types to prefer. A protocol list with a gap (TLSv1.1 and TLSv1.3)
 * becomes a range: protocolProblem refuses the version in the gap after the handshake.
 */
export function handshakeProfile(
  entry: SslEntry | undefined,
  hello: ClientHello | undefined,
  defaultProtocols: readonly SslProtocol[] = ['TLSv1.2', 'TLSv1.3'],
): HandshakeProfile {
  const protocols = entry?.protocols ?? defaultProtocols;
  const indexes = protocols.map((p) => PROTOCOL_ORDER.indexOf(p)).filter((i) => i >= 0);
  const minVersion = PROTOCOL_ORDER[Math.min(...indexes)] ?? 'TLSv1.2';
  const maxVersion = PROTOCOL_ORDER[Math.max(...indexes)] ?? 'TLSv1.3';
  const requestCert = entry?.requiresClientCert ?? false;
  const rejectUnauthorized = requestCert && entry?.ssl.client?.skip_mtls_uri_regex === undefined;
  let accepted: string[] = [];
  if (entry !== undefined && entry.pairCount > 1) {
    const types = hello ? acceptedKeyTypes(hello) : ['rsa'];
    accepted = [entry.keyTypes()[entry.pairFor(types)]!];
  }
  return {
    key: `${minVersion}-${maxVersion}-${requestCert ? (rejectUnauthorized ? 'mtls' : 'mtls-lax') : 'tls'}-${accepted.join('')}`,
    minVersion,
    maxVersion,
    requestCert,
    rejectUnauthorized,
    accepted,
  };
}

/**
 * Why a secured connection must not be served for its entry, or undefined; in APISIX's words.
 * For entries with `client`: a certificate must have been presented and verified against
 * `client.ca`, within `client.depth` intermediate certificates (Node has no per-context verify
 * depth, so the chain is counted here). Call after the handshake ('secureConnection') when the
 * entry has no skip_mtls_uri_regex, else for each request whose path matches none of them.
 */
export function clientCertProblem(socket: TLSSocket, entry: SslEntry): string | undefined {
  const client = entry.ssl.client;
  if (client === undefined) return undefined;
  const peer = socket.getPeerCertificate(true);
  if (peer === null || peer === undefined || Object.keys(peer).length === 0) return 'client certificate was not present';
  if (!socket.authorized) return `client certificate verification is not passed: ${String(socket.authorizationError ?? 'unverified')}`;
  // leaf -> issuer -> ... as Node completes it; the certificates between leaf and root are the depth
  const chain = [peer];
  let cert = peer;
  while (cert.issuerCertificate && cert.issuerCertificate.fingerprint256 !== cert.fingerprint256 && chain.length < 32) {
    cert = cert.issuerCertificate;
    chain.push(cert);
  }
  const rootIncluded = chain.length > 1 && cert.issuerCertificate?.fingerprint256 === cert.fingerprint256;
  // Node 24 gives a server only the leaf (no issuerCertificate): then the leaf issued directly by
  // a certificate of client.ca is 0 intermediates, anything else at least 1 (a lower bound: a
  // depth above 1 cannot be enforced exactly there)
  const intermediates = chain.length === 1 && peer.issuerCertificate === undefined ? (issuedByCa(socket, entry) ? 0 : 1) : chain.length - 1 - (rootIncluded ? 1 : 0);
  const depth = client.depth ?? 1;
  if (intermediates > depth) {
    return `client certificate verification is not passed: certificate chain too long (${intermediates} intermediate certificates, depth ${depth})`;
  }
  return undefined;
}

/** CA certificates of each `client.ca` (parsed once per ssl object version) */
const caCertificates = new WeakMap<object, X509Certificate[]>();

/** Whether the client's leaf certificate was issued by a certificate of the entry's `client.ca`. */
function issuedByCa(socket: TLSSocket, entry: SslEntry): boolean {
  const leaf = socket.getPeerX509Certificate();
  const client = entry.ssl.client;
  if (leaf === undefined || client === undefined) return false;
  let cas = caCertificates.get(client);
  if (cas === undefined) {
    cas = (client.ca.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((pem) => new X509Certificate(pem));
    caCertificates.set(client, cas);
  }
  return cas.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey));
}

/** Why a connection's negotiated protocol is not one of the entry's ssl_protocols, or undefined. */
export function protocolProblem(socket: TLSSocket, entry: SslEntry, defaultProtocols: readonly SslProtocol[] = ['TLSv1.2', 'TLSv1.3']): string | undefined {
  const protocol = socket.getProtocol();
  const allowed = entry.protocols ?? defaultProtocols;
  if (protocol && !(allowed as readonly string[]).includes(protocol)) return `protocol ${protocol} is not in ssl_protocols (${allowed.join(', ')})`;
  return undefined;
}

/**
 * Why a request on a secured connection must be refused, or undefined (APISIX verify_https_client
 * in apisix/init.lua, answered with 400):
 * - the connection's entry has `client.skip_mtls_uri_regex` (so the handshake let clients without
 *   a valid certificate through) and the path matches none of them: the certificate must be valid;
 * - the entry for the Host header requires client certificates but the handshake was for another
 *   SNI: refused, as APISIX does ("client certificate verified with SNI a, but the host is b"),
 *   so a certificate checked for one host (or none, under a wildcard) cannot reach another.
 * `uri` is the request path without the query; `host` the Host header (a port is ignored).
 */
export function requestClientCertProblem(
  socket: TLSSocket,
  table: SniTable,
  connectionEntry: SslEntry,
  host: string | undefined,
  uri: string,
): string | undefined {
  if (connectionEntry.ssl.client?.skip_mtls_uri_regex !== undefined && !connectionEntry.skipsClientCert(uri)) {
    const problem = clientCertProblem(socket, connectionEntry);
    if (problem !== undefined) return problem;
  }
  if (host === undefined) return undefined;
  const hostname = normalizeHost(host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, ''));
  const hostEntry = table.lookup(hostname);
  if (hostEntry === undefined || !hostEntry.requiresClientCert) return undefined;
  const sni = typeof socket.servername === 'string' ? normalizeHost(socket.servername) : '';
  if (sni !== hostname) return `client certificate verified with SNI ${sni || '(none)'}, but the host is ${hostname}`;
  return undefined;
}
