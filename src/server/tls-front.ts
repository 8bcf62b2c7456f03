import { createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { log } from '../observability/log.ts';
import type { SniTable } from './tls/sni-table.ts';
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
    onSecure: (socket) => {
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
