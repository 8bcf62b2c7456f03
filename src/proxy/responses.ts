import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProxyError } from '../errors.ts';
import { isLingering, lingeringClose } from './lingering-close.ts';

export type ProxyErrorKind = (typeof ProxyError)[keyof typeof ProxyError];

/** An error response, serialized once at startup: the hot path only writes Buffers. */
interface PreparedError {
  status: number;
  headers: string[];
  /** `headers` plus `Connection: close` */
  closeHeaders: string[];
  body: Buffer;
  /** the whole HTTP/1.1 response, for raw sockets (upgrade requests) */
  raw: Buffer;
  /** head only, `Connection: close` / `keep-alive`: the socket transport (HEAD answers, keep-alive) */
  closeHead: string;
  keepAliveHead: string;
}

const prepared = new Map<ProxyErrorKind, PreparedError>();
for (const kind of Object.values(ProxyError)) {
  const body = Buffer.from(`{"error_msg":${JSON.stringify(kind.message)}}\n`);
  const headers = ['Content-Type', 'application/json', 'Content-Length', String(body.length)];
  const head =
    `HTTP/1.1 ${kind.status} ${kind.message.replace(/^\d+ /, '')}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  const closeHeaders = [...headers, 'Connection', 'close'];
  prepared.set(kind, {
    status: kind.status,
    headers,
    closeHeaders,
    body,
    raw: Buffer.concat([Buffer.from(head, 'latin1'), body]),
    closeHead: head,
    keepAliveHead: head.replace('Connection: close', 'Connection: keep-alive'),
  });
}

/**
 * Statuses the socket transport's request parser answers that have no ProxyError of their own
 * (node:http answered these 400/431): prepared the same way, looked up by status.
 */
const PARSER_ERRORS: Record<number, ProxyErrorKind | { status: number; message: string }> = {
  413: { status: 413, message: '413 Request Entity Too Large' },
  414: { status: 414, message: '414 Request-URI Too Large' },
  505: { status: 505, message: '505 HTTP Version Not Supported' },
};
for (const kind of Object.values(PARSER_ERRORS)) {
  const body = Buffer.from(`{"error_msg":${JSON.stringify(kind.message)}}\n`);
  const head =
    `HTTP/1.1 ${kind.status} ${kind.message.replace(/^\d+ /, '')}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  prepared.set(kind as ProxyErrorKind, {
    status: kind.status,
    headers: [],
    closeHeaders: [],
    body,
    raw: Buffer.concat([Buffer.from(head, 'latin1'), body]),
    closeHead: head,
    keepAliveHead: head,
  });
}

/** The error kind answering a request parser status (400, 413, 414, 431, 501, 505). */
export function errorForStatus(status: number): ProxyErrorKind {
  switch (status) {
    case 431:
      return ProxyError.HEADERS_TOO_LARGE;
    case 501:
      return ProxyError.NOT_IMPLEMENTED;
    case 408:
      return ProxyError.REQUEST_TIMEOUT;
    default:
      return (PARSER_ERRORS[status] as ProxyErrorKind | undefined) ?? ProxyError.BAD_REQUEST;
  }
}

/**
 * A response of the gateway's own (a plugin's answer) on a raw socket: status, headers, a body
 * with its Content-Length (none for HEAD), `Connection: close` or `keep-alive`. One write.
 */
export function writeLocalResponse(socket: Duplex, status: number, headers: readonly string[], body: Buffer, close: boolean, headOnly: boolean): boolean {
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += headers[i] + ': ' + headers[i + 1] + '\r\n';
  // 1xx, 204 and 304 have no body, nor a length (RFC 9110 §8.6)
  const bodyless = status < 200 || status === 204 || status === 304;
  if (!bodyless) head += `Content-Length: ${body.length}\r\n`;
  head += close ? 'Connection: close\r\n\r\n' : 'Connection: keep-alive\r\n\r\n';
  if (headOnly || bodyless || body.length === 0) return socket.write(head, 'latin1');
  const out = Buffer.allocUnsafe(Buffer.byteLength(head, 'latin1') + body.length);
  const n = out.write(head, 0, 'latin1');
  body.copy(out, n);
  return socket.write(out);
}

/**
 * An error response for a raw socket that may stay open: head (`Connection: close` or
 * `keep-alive`) and, unless `headOnly` (a HEAD request), the JSON body. One write.
 */
export function writeSocketError(socket: Duplex, kind: ProxyErrorKind, close: boolean, headOnly: boolean): boolean {
  const error = prepared.get(kind)!;
  const head = close ? error.closeHead : error.keepAliveHead;
  if (headOnly) return socket.write(head, 'latin1');
  socket.cork();
  socket.write(head, 'latin1');
  const ok = socket.write(error.body);
  socket.uncork();
  return ok;
}

/**
 * Sends an APISIX-style error (`{"error_msg":"..."}`). When the response has already started
 * there is no way to signal an error in-band, so the connection is cut instead. With
 * `closeConnection` the response says `Connection: close` and node:http destroys the socket once
 * the response is flushed.
 */
export function sendError(res: ServerResponse, kind: ProxyErrorKind, closeConnection = false): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const error = prepared.get(kind)!;
  res.writeHead(error.status, closeConnection ? error.closeHeaders : error.headers);
  res.end(error.body);
}

/**
 * Writes an error (with `Connection: close`) to a raw client socket — malformed or timed-out HTTP,
 * an upgrade request that could not be proxied — and closes the connection: FIN after the answer,
 * then a lingering close (proxy/lingering-close.ts: what the client still sends is dropped, then the
 * socket is destroyed), or for a 408 the socket destroyed once the answer is flushed. Only ending it
 * would leave a half-closed socket, and its file descriptor, to a client that never closes its side.
 * (A client that does not even read the answer is cut by proxy.timeouts.send, like any other.)
 */
export function writeRawError(socket: Socket, kind: ProxyErrorKind): void {
  if (socket.destroyed) return;
  if (socket.writableEnded) {
    if (!isLingering(socket)) socket.destroy();
    return;
  }
  const raw = prepared.get(kind)!.raw;
  // a 408 goes to a client that went silent (or too slow to matter): nothing to linger for, and
  // its socket is let go as soon as the answer is out
  if (kind === ProxyError.REQUEST_TIMEOUT) return void socket.end(raw, () => socket.destroy());
  socket.write(raw);
  lingeringClose(socket);
}
