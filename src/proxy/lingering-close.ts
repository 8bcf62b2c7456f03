import type { Socket } from 'node:net';

/*
 * Lingering close, as nginx's `lingering_close on`: when the gateway closes a client connection
 * after its answer, the client may still be sending (the body of a request answered early, a 400
 * for bad bytes followed by more, pipelined requests behind a `Connection: close`). Closing the
 * socket with bytes unread makes the kernel answer them with a reset, and a reset can discard the
 * answer before the client has read it: the client sees a reset instead of the 400/405/413.
 *
 * So the write side ends (FIN after the answer) and whatever still comes is read and dropped until
 * the client closes its side, LINGER_IDLE_MS pass without a byte, or LINGER_TOTAL_MS in all (a
 * client that trickles bytes cannot hold the socket). nginx's lingering_timeout and lingering_time
 * defaults.
 */

/** nginx lingering_timeout: silence after which the socket is closed */
export const LINGER_IDLE_MS = 5_000;
/** nginx lingering_time: the most a closing connection is read for */
export const LINGER_TOTAL_MS = 30_000;

const lingering = new WeakSet<Socket>();

/** Whether the socket is being closed by lingeringClose (its bytes are dropped). */
export function isLingering(socket: Socket): boolean {
  return lingering.has(socket);
}

/**
 * Ends the socket after what was written, then drops what the client still sends until it closes,
 * goes silent, or the total time is up; then the socket is destroyed. The caller's own 'data'
 * listeners keep being called and must ignore the bytes.
 */
export function lingeringClose(socket: Socket): void {
  if (socket.destroyed || lingering.has(socket)) return;
  lingering.add(socket);
  const destroy = (): void => {
    socket.destroy();
  };
  if (socket.readableEnded) {
    // the client already closed its side: nothing more can come
    socket.end(destroy);
    return;
  }
  // the answer is flushed before the socket goes (a client still reading it keeps it, as long as
  // the send timeout lets it)
  const done = (): void => {
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', destroy);
  };
  socket.end();
  socket.setTimeout(LINGER_IDLE_MS);
  socket.on('timeout', done);
  socket.on('end', done);
  const total = setTimeout(destroy, LINGER_TOTAL_MS);
  socket.once('close', () => clearTimeout(total));
  // read on (a paused socket would leave the bytes in the kernel, the reset this avoids)
  socket.resume();
}
