import type { Socket } from 'node:net';

/** What the watch knows of one client connection between two checks. */
interface SendState {
  /** bytes queued for the client at the last check (0: nothing waiting) */
  pending: number;
  /** when the queued bytes last moved: a stall began, they shrank, or the socket drained */
  movedAt: number;
}

/**
 * proxy.timeouts.send, as nginx's send_timeout: a client connection whose queued response bytes
 * have not moved for that long is destroyed. It watches sockets, not responses, so it holds for
 * every byte a client is sent — a proxied body (the upstream request is then aborted, which frees
 * its connection), an error answer, a flood of pipelined answers nobody reads, a WebSocket relay —
 * and for any transport that writes to a net.Socket.
 *
 * One check per tick over the open connections (two property reads each) instead of a timer per
 * stall: a stall costs nothing, and a check of 10,000 connections takes well under a millisecond.
 * "Moved" is: the socket drained, or the bytes waiting (node's buffer plus libuv's write queue)
 * shrank since the last check — a slow reader that keeps reading is never cut.
 */
export class SendTimeoutWatch {
  private readonly connections = new Map<Socket, SendState>();
  private readonly timer: NodeJS.Timeout;
  private readonly onDrain: (this: Socket) => void;
  private readonly onClose: (this: Socket) => void;

  constructor(private readonly timeoutMs: number) {
    // at most a quarter of the timeout late, and at most a second
    this.timer = setInterval(() => this.check(), Math.max(50, Math.min(1000, Math.round(timeoutMs / 4)))).unref();
    const connections = this.connections;
    // shared by every socket (no closure per connection)
    this.onDrain = function (this: Socket) {
      const state = connections.get(this);
      if (state !== undefined) state.pending = 0;
    };
    this.onClose = function (this: Socket) {
      connections.delete(this);
    };
  }

  watch(socket: Socket): void {
    this.connections.set(socket, { pending: 0, movedAt: 0 });
    socket.on('drain', this.onDrain);
    socket.once('close', this.onClose);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private check(): void {
    const now = Date.now();
    for (const [socket, state] of this.connections) {
      const pending = pendingBytes(socket);
      if (pending === 0) {
        state.pending = 0;
        continue;
      }
      // a new stall (nothing was waiting, or it drained since), or the client read some; more
      // bytes queued is not progress, but the next shrink is measured from them
      const moved = state.pending === 0 || pending < state.pending;
      state.pending = pending;
      if (moved) state.movedAt = now;
      else if (now - state.movedAt >= this.timeoutMs) {
        this.connections.delete(socket);
        socket.destroy();
      }
    }
  }
}

/** Bytes written for the client that the kernel has not taken yet: shrinks whenever the client reads. */
function pendingBytes(socket: Socket): number {
  const handle = (socket as { _handle?: { writeQueueSize?: number } | null })._handle;
  return socket.writableLength + (handle?.writeQueueSize ?? 0);
}
