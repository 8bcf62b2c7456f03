import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { ProxyError } from '../errors.ts';

export type ProxyErrorKind = (typeof ProxyError)[keyof typeof ProxyError];

/** An error response, serialized once at startup: the hot path only writes Buffers. */
interface PreparedError {
  status: number;
  headers: string[];
  body: Buffer;
  /** the whole HTTP/1.1 response, for raw sockets (upgrade requests) */
  raw: Buffer;
}

const prepared = new Map<ProxyErrorKind, PreparedError>();
for (const kind of Object.values(ProxyError)) {
  const body = Buffer.from(`{"error_msg":${JSON.stringify(kind.message)}}\n`);
  const headers = ['Content-Type', 'application/json', 'Content-Length', String(body.length)];
  const head =
    `HTTP/1.1 ${kind.status} ${kind.message.replace(/^\d+ /, '')}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  prepared.set(kind, { status: kind.status, headers, body, raw: Buffer.concat([Buffer.from(head, 'latin1'), body]) });
}

/**
 * Sends an APISIX-style error (`{"error_msg":"..."}`). When the response has already started
 * there is no way to signal an error in-band, so the connection is cut instead.
 */
export function sendError(res: ServerResponse, kind: ProxyErrorKind): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const error = prepared.get(kind)!;
  res.writeHead(error.status, error.headers);
  res.end(error.body);
}

/** Writes an error to a raw client socket (an upgrade request that could not be proxied) and closes it. */
export function writeRawError(socket: Duplex, kind: ProxyErrorKind): void {
  if (socket.destroyed) return;
  socket.end(prepared.get(kind)!.raw);
}
