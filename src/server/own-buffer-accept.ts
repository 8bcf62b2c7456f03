import { Socket, type Server, type SocketConstructorOpts } from 'node:net';
import { getSystemErrorName } from 'node:util';

/**
 * Accepted connections that read into buffers their owner chooses (the HTTP/1 client connections:
 * one buffer they all share, src/proxy/http1/client-connection.ts).
 *
 * A socket created with net's `onread` option reads into a buffer its owner gives it, read after
 * read, and hands each read to a callback: no new Buffer per read, no readable-stream machinery
 * (push, 'data', maybeReadMore). The upstream side has used it since 3cb8b72 (+11 %). node's
 * servers take no `onread` for the sockets they accept, so this takes over the one step where a
 * server makes a socket of an accepted handle: the listening handle's `onconnection` (the contract
 * between net.Server and its handle, stable since node 0.x, the same for a cluster worker's
 * round-robin handle). What node's own `onconnection` does besides — count the connection on the
 * server (close() waits for it), `socket.server` — is done here too; `maxConnections` is honoured.
 *
 * Returns false, and changes nothing, when the server has no such handle (the caller then uses the
 * server's 'connection' event and stream reads, which is always correct).
 */

/** Where an accepted socket's reads go. */
export interface OwnReads {
  /** the buffer for the next read: the last one again, unless a view of it is still referenced */
  nextReadBuffer(): Buffer;
  /** one read: `n` bytes at the start of `buf`. false stops reading (as a full readable would) */
  onRead(n: number, buf: Buffer): boolean;
}

type OnConnection = (status: number, clientHandle: object) => void;

interface ServerInternals {
  _handle?: { onconnection?: OnConnection } | null;
  _connections: number;
}

export interface OwnBufferOptions {
  allowHalfOpen: boolean;
  noDelay: boolean;
  /** the buffer a connection's first read goes into (its OwnReads chooses the next after each read) */
  firstBuffer: () => Buffer;
}

/**
 * Once the server listens: every connection it accepts is a socket reading through `accept`'s
 * OwnReads (called synchronously, before the socket's first read can arrive).
 */
export function acceptIntoOwnBuffers(server: Server, options: OwnBufferOptions, accept: (socket: Socket) => OwnReads): boolean {
  const internals = server as unknown as ServerInternals;
  const handle = internals._handle;
  if (handle == null || typeof handle.onconnection !== 'function') return false;
  const { allowHalfOpen, noDelay, firstBuffer } = options;
  handle.onconnection = (status, clientHandle) => {
    if (status < 0) {
      // as node's own: an accept() failure (EMFILE and the like) is the server's error
      const err = Object.assign(new Error(`accept ${getSystemErrorName(status)}`), { code: getSystemErrorName(status), errno: status, syscall: 'accept' });
      server.emit('error', err);
      return;
    }
    if (server.maxConnections != null && internals._connections >= server.maxConnections) {
      (clientHandle as { close(): void }).close();
      return;
    }
    let reads: OwnReads | undefined;
    const socket = new Socket({
      handle: clientHandle,
      allowHalfOpen,
      readable: true,
      writable: true,
      // (node asks for the first buffer while it makes the socket, before `reads` is known)
      onread: { buffer: () => (reads === undefined ? firstBuffer() : reads.nextReadBuffer()), callback: (n: number, buf: Uint8Array) => reads!.onRead(n, buf as Buffer) },
    } as SocketConstructorOpts);
    if (noDelay) socket.setNoDelay(true);
    internals._connections++;
    const owned = socket as unknown as { server: Server; _server: Server };
    owned.server = server;
    owned._server = server;
    reads = accept(socket);
  };
  return true;
}
