/**
 * TLS termination for a listener whose certificates come from ssl objects: a plain socket in,
 * a secured TLSSocket out (handed to the HTTP transport like a plain one: node:http
 * `server.emit('connection', tlsSocket)`, or `new ClientConnection(tlsSocket, ...)`).
 *
 * Per connection: read the ClientHello (client-hello.ts), find the entry for its SNI, pick the
 * tls.Server variant that fits the entry (protocol range, client certificate request, key type:
 * handshakeProfile) and give it the socket. Variants are made on first use and kept: at most
 * 6 protocol ranges x 3 client-cert modes x the key types in use. After the handshake,
 * clientCertProblem and protocolProblem may still refuse the connection (destroyed, onReject).
 *
 * Why variants rather than one server: see client-hello.ts (Node negotiates the protocol and
 * decides on requesting a client certificate per server, and serves one certificate per SNI
 * context).
 */
import { constants } from 'node:crypto';
import type { Socket } from 'node:net';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { SslProtocol } from '../../config/schema/ssl.ts';
import { readClientHello, type ClientHello } from './client-hello.ts';
import { clientCertProblem, handshakeProfile, protocolProblem, sniCallback, type HandshakeProfile, type SniTable, type SslEntry } from './sni-table.ts';

export interface TlsTerminatorOptions {
  table: () => SniTable;
  /** a secured connection, with the entry that served it */
  onSecure: (socket: TLSSocket, entry: SslEntry) => void;
  /** a handshake without entry (unknown SNI, or none and no fallback) */
  onMiss?: (servername: string | undefined) => void;
  /** a connection refused after or during the handshake (reason never holds key material) */
  onReject?: (reason: string, servername: string | undefined) => void;
  /** ALPN protocols offered, best first (e.g. ['h2', 'http/1.1']); none: no ALPN */
  alpnProtocols?: string[];
  /** protocols when an entry has no ssl_protocols (APISIX apisix.ssl.ssl_protocols; default TLSv1.2, TLSv1.3) */
  defaultProtocols?: readonly SslProtocol[];
  /** ms to wait for a ClientHello, then for the handshake (default 10,000, like nginx's client_header_timeout ballpark) */
  handshakeTimeoutMs?: number;
}

export class TlsTerminator {
  private readonly servers = new Map<string, Server>();
  private readonly defaultEntry = new WeakMap<Server, SslEntry>();

  constructor(private readonly options: TlsTerminatorOptions) {}

  /** Takes a freshly accepted plain socket; it is destroyed on any failure. */
  accept(raw: Socket): void {
    const timeout = this.options.handshakeTimeoutMs ?? 10_000;
    // keep an error listener for the whole life of the raw socket before TLS takes it
    const swallow = () => {};
    raw.on('error', swallow);
    void readClientHello(raw, timeout).then((hello) => {
      raw.off('error', swallow);
      if (raw.destroyed || hello === undefined) {
        raw.destroy();
        return;
      }
      const table = this.options.table();
      const entry = table.lookup(hello.servername);
      if (entry === undefined) {
        this.options.onMiss?.(hello.servername);
        raw.destroy(); // APISIX fails such handshakes too; no alert is sent from here
        return;
      }
      const profile = handshakeProfile(entry, hello, this.options.defaultProtocols);
      this.serverFor(profile, hello, entry).emit('connection', raw);
    });
  }

  private serverFor(profile: HandshakeProfile, hello: ClientHello, entry: SslEntry): Server {
    let server = this.servers.get(profile.key);
    if (server === undefined) this.servers.set(profile.key, (server = this.createVariant(profile)));
    if (hello.servername === undefined && this.defaultEntry.get(server) !== entry) {
      // no SNI: Node calls no SNICallback and uses the server's default context, so that must be
      // the fallback entry's (APISIX apisix.ssl.fallback_sni); replaced when the entry changes
      server.setSecureContext(entry.contextOptions(entry.pairFor(profile.accepted.length ? profile.accepted : undefined)));
      this.defaultEntry.set(server, entry);
    }
    return server;
  }

  private createVariant(profile: HandshakeProfile): Server {
    const options = this.options;
    const onMiss = (servername: string) => options.onMiss?.(servername);
    const server = createServer({
      SNICallback: sniCallback(options.table, onMiss, profile.accepted.length ? profile.accepted : undefined),
      minVersion: profile.minVersion,
      maxVersion: profile.maxVersion,
      requestCert: profile.requestCert,
      rejectUnauthorized: profile.rejectUnauthorized,
      handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
      // No session resumption where client certificates count: OpenSSL resumes a TLS 1.3 session
      // under another SNI and Node then reports the first handshake's verification, so a client
      // verified for one mTLS host (CA A) would get into another (CA B) with its ticket (tested).
      // APISIX guards the same hole (verify_tls_session_resumption). Node keeps no server-side
      // session cache, so without tickets every mTLS handshake is a full one.
      ...(profile.requestCert && { secureOptions: constants.SSL_OP_NO_TICKET }),
      // OpenSSL 3 at its default security level 1 has no signature algorithm TLS 1.1 can use
      // (SHA-1): an ssl object that lists TLSv1.1 gets level 0 for its handshakes, only it (tested)
      ...(profile.minVersion === 'TLSv1.1' && { ciphers: 'DEFAULT:@SECLEVEL=0' }),
      ...(options.alpnProtocols !== undefined && { ALPNProtocols: options.alpnProtocols }),
    });
    server.on('secureConnection', (socket: TLSSocket) => {
      const servername = typeof socket.servername === 'string' ? socket.servername : undefined;
      const entry = options.table().lookup(servername);
      const reason = entry === undefined
        ? 'ssl object removed during the handshake'
        : entry.ssl.client?.skip_mtls_uri_regex === undefined
          ? clientCertProblem(socket, entry) ?? protocolProblem(socket, entry, options.defaultProtocols)
          : protocolProblem(socket, entry, options.defaultProtocols);
      if (reason !== undefined || entry === undefined) {
        options.onReject?.(reason ?? 'no entry', servername);
        socket.destroy();
        return;
      }
      options.onSecure(socket, entry);
    });
    server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
      options.onReject?.(err.message.split('\n')[0]!, typeof socket.servername === 'string' ? socket.servername : undefined);
      socket.destroy();
    });
    return server;
  }

  /** How many server variants exist (for tests and status). */
  get variants(): number {
    return this.servers.size;
  }
}
