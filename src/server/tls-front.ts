import { createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { log } from '../observability/log.ts';
import { normalizePath } from '../router/path.ts';
import { requestClientCertProblem, type SniTable, type SslEntry } from './tls/sni-table.ts';
import { TlsTerminator } from './tls/terminator.ts';

/** Handshakes refused since start, by why (exported in /status; reasons never hold key material). */
export const tlsRefusals = { noCertificate: 0, refused: 0 };

let lastLog = 0;
let unlogged = 0;
/** One line per second at most: a scanner must not turn refusals into a log flood. */
function logRefusal(message: string, fields: Record<string, unknown>): void {
  const now = Date.now();
  if (now - lastLog < 1000) {
    unlogged++;
    return;
  }
  log.warn({ ...fields, ...(unlogged > 0 && { alsoRefusedSinceLastLine: unlogged }) }, message);
  lastLog = now;
  unlogged = 0;
}

/** the ssl object each secured connection's handshake was served by */
const securedBy = new WeakMap<Socket, SslEntry>();
/** whether a table has an object that requires client certificates (computed once per table) */
const mtlsTables = new WeakMap<SniTable, boolean>();

/** A request target's path as routes see it (normalized), for tlsRequestProblem; undefined when malformed. */
export function routedPath(target: string): string | undefined {
  const q = target.indexOf('?');
  return normalizePath(q === -1 ? target : target.slice(0, q))?.match;
}

/**
 * Why a request on a TLS connection must be refused (400), or undefined: APISIX's
 * verify_https_client. A Host whose ssl object requires a client certificate, on a connection
 * secured for another SNI (which got around the certificate check); or, with
 * `client.skip_mtls_uri_regex`, a path not exempted on a connection without a valid certificate.
 * Costs a WeakMap lookup per request unless some ssl object has `client`.
 */
export function tlsRequestProblem(socket: Socket, table: SniTable, host: string | undefined, path: string): string | undefined {
  // (`path`: the normalized path routes match on, so `/public/../private` is not exempted as /public)
  let mtls = mtlsTables.get(table);
  if (mtls === undefined) {
    mtls = [...table.entries.values()].some((e) => e.requiresClientCert);
    mtlsTables.set(table, mtls);
  }
  if (!mtls) return undefined;
  const entry = securedBy.get(socket);
  return entry === undefined ? undefined : requestClientCertProblem(socket as TLSSocket, table, entry, host, path);
}

/**
 * A TLS listener whose certificate is chosen per handshake from the ssl objects in force
 * (`sniTable()`, read at each handshake: a certificate added, replaced or removed applies to the
 * next one, connections already secured keep theirs). Secured sockets go to `http1` or, when the
 * client chose `h2` by ALPN, to `http2`.
 */
export function tlsListener(
  sniTable: () => SniTable,
  handlers: { http1: (socket: TLSSocket) => void; http2?: (socket: TLSSocket) => void },
): Server {
  const terminator = new TlsTerminator({
    table: sniTable,
    alpnProtocols: handlers.http2 ? ['h2', 'http/1.1'] : ['http/1.1'],
    onSecure: (socket, entry) => {
      securedBy.set(socket, entry);
      if (socket.alpnProtocol === 'h2' && handlers.http2) handlers.http2(socket);
      else handlers.http1(socket);
    },
    onMiss: (servername) => {
      tlsRefusals.noCertificate++;
      logRefusal('TLS handshake refused: no ssl object for this SNI', { sni: servername ?? null });
    },
    onReject: (reason, servername) => {
      tlsRefusals.refused++;
      logRefusal('TLS connection refused', { sni: servername ?? null, reason });
    },
  });
  return createServer({ allowHalfOpen: true, noDelay: true }, (socket: Socket) => terminator.accept(socket));
}
