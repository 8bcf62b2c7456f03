import net from 'node:net';
import type { Logger } from '../../observability/log.ts';
import { unmapIpv4 } from '../../router/ip.ts';
import type { UpstreamHealth } from '../../upstream/health/book.ts';
import type { Balancer, PickRequest, UpstreamNode } from '../../upstream/types.ts';
import { classifyFailure, failureOutcome } from '../failures.ts';

/**
 * One proxied TCP connection of a stream route (APISIX `stream_routes`, nginx's stream proxy):
 * the client's socket is joined to a connection to one node of the route's upstream.
 *
 * Model, per connection:
 *  1. connecting: the client is paused (its bytes wait in the socket) while a node is picked and
 *     connected to within `timeout.connect`. A refused, unreachable or timed-out connect is reported
 *     to the upstream's passive health check and to the balancer (failed), and the next node is
 *     picked (the failed ones are `tried`), up to `retries` more times within `retry_timeout`
 *     (nginx's proxy_next_upstream: only before any byte went to a node, so nothing is replayed).
 *  2. piping: bytes flow both ways with backpressure (a side that cannot take more pauses the
 *     other). A FIN is passed on (end()) and the other direction keeps flowing, so a client that
 *     finished sending still receives the whole answer (both sockets must be allowHalfOpen).
 *     No byte either way for `idleTimeout` ms closes the session (nginx `proxy_timeout`).
 *     An error on one side destroys the other; a reset (ECONNRESET) is passed on as a reset.
 *  3. ended: both sockets closed; `closed` resolves with why and how many bytes went each way.
 *
 * Decisions:
 *  - The balancer is told started() when a connect is attempted and done() when that attempt fails
 *    or, for the connection that made it, when the session ends: least_conn counts open sessions.
 *    done()'s latency is the connect time (ewma): a session's lifetime says nothing of the node.
 *  - A connect that succeeded reports `success` to passive health (consecutive failures start over,
 *    as lua-resty-healthcheck's report_success does). APISIX's stream subsystem only reports
 *    failures; without successes, every few refused connects over a node's lifetime would add up.
 *    Errors after the connect (a reset mid-session) are not reported: either side may have caused it.
 *  - `chash` upstreams hash the client's address (`remote_addr`, IPv4-mapped IPv6 unmapped) or the
 *    SNI as `host`; the other request variables are absent on L4.
 *  - Half-close differs from nginx's default (`proxy_half_close off`, which closes the session when
 *    one side sends FIN): this proxy keeps the other direction open, which is what request/response
 *    protocols that signal "request done" with a FIN need, and is harmless for the rest.
 */

/** What the TCP proxy needs of a compiled upstream (an UpstreamTarget fits). */
export interface StreamUpstream {
  readonly key: string;
  readonly balancer: Balancer;
  /** other nodes to try after a failed connect */
  readonly retries: number;
  /** ms for all connect attempts together; 0: no limit */
  readonly retryTimeout: number;
  readonly timeout: { readonly connect: number };
  readonly health?: UpstreamHealth;
}

export interface TcpProxyOptions {
  /** ms without a byte either way before the session is closed; 0: never (see streamIdleTimeout) */
  idleTimeout: number;
  /** the client's SNI when the listener terminated TLS (chash on `host`) */
  sni?: string;
  /** warnings: no node, every connect failed (the data plane logs nothing per session at info) */
  log?: Pick<Logger, 'warn' | 'debug'>;
}

export type TcpEndReason =
  /** both sides closed after their FINs */
  | 'done'
  /** no byte either way for idleTimeout */
  | 'idle_timeout'
  /** the upstream has no node to pick */
  | 'no_node'
  /** every connect attempt failed (refused, unreachable, timed out) */
  | 'connect_failed'
  /**
   * the client's socket closed before the upstream connection was made. The client is not read
   * while connecting, so its FIN is taken as a half-close (the request is complete) and a reset is
   * only seen once reading starts: mostly this is a listener destroying the socket.
   */
  | 'client_closed'
  /** the client's socket failed mid-session (reset, ...) */
  | 'client_error'
  /** the upstream's socket failed mid-session */
  | 'upstream_error'
  /** close() was called (e.g. the route was deleted and its drain time passed) */
  | 'closed';

export interface TcpSessionStats {
  /** bytes read from the client (sent to the node) */
  bytesFromClient: number;
  /** bytes read from the node (sent to the client) */
  bytesToClient: number;
  /** connect attempts made */
  tries: number;
  /** key ("host:port") of the node the session is (or was last) connected to or trying */
  node: string | undefined;
  /** ms the successful connect took; -1 before */
  connectMs: number;
}

export interface TcpSessionEnd extends TcpSessionStats {
  reason: TcpEndReason;
  /** the error behind reasons other than done/idle_timeout/closed, when there was one */
  error: string | undefined;
  durationMs: number;
}

/** Proxies `client` to a node of `upstream`; see TcpSession. The client socket belongs to the session from here on. */
export function proxyTcp(client: net.Socket, upstream: StreamUpstream, options: TcpProxyOptions): TcpSession {
  return new TcpSession(client, upstream, options);
}

/**
 * nginx `proxy_timeout` for a stream upstream as APISIX sets it: the larger of the upstream's
 * `timeout.send` and `timeout.read` when either is configured (lua-resty-core's stream
 * set_timeouts uses max(send, read) for proxy_timeout), else nginx's default of 10 minutes.
 * Takes the config (seconds), not the compiled target, whose timeouts always carry the 60 s default.
 */
export function streamIdleTimeout(timeout: { send?: number; read?: number } | undefined): number {
  const send = timeout?.send;
  const read = timeout?.read;
  if (send === undefined && read === undefined) return DEFAULT_PROXY_TIMEOUT_MS;
  return Math.max(send ?? 0, read ?? 0) * 1000;
}

/** nginx stream `proxy_timeout` default */
export const DEFAULT_PROXY_TIMEOUT_MS = 10 * 60 * 1000;

/** Passes a FIN on: what was written still goes out first. */
function endWrites(socket: net.Socket): void {
  if (!socket.destroyed && !socket.writableEnded) socket.end();
}

/**
 * Sends a reset; a TLS client socket (a listener terminating TLS) has no TCP handle of its own to
 * reset (resetAndDestroy throws ERR_INVALID_HANDLE_TYPE): it is just destroyed.
 */
function resetOrDestroy(socket: net.Socket): void {
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

const connectTimeout = (ms: number) =>
  Object.assign(new Error(`connect timed out after ${ms} ms`), { code: 'ETIMEDOUT' });

/** The L4 view of a connection (or UDP session) for balancers that hash: only the client address and SNI exist. */
export class StreamPickRequest implements PickRequest {
  readonly method = '';
  readonly path = '';
  readonly query = '';
  constructor(
    readonly clientAddress: string,
    readonly host: string,
  ) {}
  header(): undefined {
    return undefined;
  }
  cookie(): undefined {
    return undefined;
  }
  arg(): undefined {
    return undefined;
  }
}

const enum State {
  Connecting,
  Piping,
  Ended,
}

export class TcpSession {
  readonly stats: TcpSessionStats = { bytesFromClient: 0, bytesToClient: 0, tries: 0, node: undefined, connectMs: -1 };
  /** resolves once, when the session ended and both sockets are (being) destroyed */
  readonly closed: Promise<TcpSessionEnd>;
  private resolveClosed!: (end: TcpSessionEnd) => void;
  private state = State.Connecting;
  private upstreamSocket: net.Socket | undefined;
  private node: UpstreamNode | undefined;
  private readonly tried = new Set<UpstreamNode>();
  private readonly request: PickRequest | undefined;
  private readonly startedAt = performance.now();
  private readonly deadline: number;
  private attemptAt = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  /** sockets not yet closed; the session is done when both are */
  private open = 1;
  /** the client sent its FIN (possibly before the upstream connection was made) */
  private clientEnded = false;

  constructor(
    private readonly client: net.Socket,
    private readonly upstream: StreamUpstream,
    private readonly options: TcpProxyOptions,
  ) {
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.deadline = upstream.retryTimeout > 0 ? Date.now() + upstream.retryTimeout : 0;
    this.request = upstream.balancer.needsRequest === true
      ? new StreamPickRequest(unmapIpv4(client.remoteAddress ?? ''), options.sni ?? '')
      : undefined;
    // nothing is read from the client until a node accepted: its bytes wait in the socket
    client.pause();
    // a FIN with no bytes before it is reported even while paused (Readable ends on read(0)), so
    // the client's end is listened to from the start, not from the connect on
    client.on('end', () => this.onClientEnd());
    client.on('error', (err) => this.onSocketError(client, err));
    client.on('close', () => this.onSocketClose(client));
    if (client.destroyed) {
      this.finish('client_closed', undefined);
      return;
    }
    const node = upstream.balancer.pick(undefined, this.request);
    if (node === undefined) {
      options.log?.warn({ upstream: upstream.key }, 'stream: no upstream node to connect to');
      this.finish('no_node', undefined);
      return;
    }
    this.connect(node);
  }

  /** Ends the session now (both sockets destroyed): a deleted route's connections after its drain time. */
  close(reason: TcpEndReason = 'closed'): void {
    this.finish(reason, undefined);
  }

  private connect(node: UpstreamNode): void {
    this.node = node;
    this.stats.node = node.key;
    this.stats.tries++;
    this.attemptAt = performance.now();
    this.upstream.balancer.started?.(node);
    const socket = net.connect({ host: node.host, port: node.port, allowHalfOpen: true });
    this.upstreamSocket = socket;
    this.connectTimer = setTimeout(() => socket.destroy(connectTimeout(this.upstream.timeout.connect)), this.upstream.timeout.connect);
    socket.once('connect', () => this.onConnected(socket));
    socket.on('error', (err) => this.onSocketError(socket, err));
    socket.on('close', () => this.onSocketClose(socket));
  }

  private onConnected(socket: net.Socket): void {
    clearTimeout(this.connectTimer);
    if (this.state !== State.Connecting || socket !== this.upstreamSocket) return;
    this.state = State.Piping;
    this.open = 2;
    const node = this.node!;
    this.stats.connectMs = performance.now() - this.attemptAt;
    this.upstream.health?.observe(node, 'success');
    const client = this.client;
    // nginx stream's tcp_nodelay default: small writes of interactive protocols go out at once
    client.setNoDelay(true);
    socket.setNoDelay(true);
    this.join(client, socket, true);
    this.join(socket, client, false);
    if (this.clientEnded) endWrites(socket);
    if (this.options.idleTimeout > 0) {
      // every byte either way passes through the client socket (read from it, or written to it),
      // and a socket's timer restarts on both: one timer covers both directions
      client.setTimeout(this.options.idleTimeout);
      client.on('timeout', () => this.finish('idle_timeout', undefined));
    }
    client.resume();
  }

  /** `from`'s bytes and FIN go to `to`, pausing `from` while `to` cannot take more. */
  private join(from: net.Socket, to: net.Socket, fromClient: boolean): void {
    const stats = this.stats;
    const resume = () => from.resume();
    from.on('data', (chunk: Buffer) => {
      if (fromClient) stats.bytesFromClient += chunk.length;
      else stats.bytesToClient += chunk.length;
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', resume);
      }
    });
    // the client's end: onClientEnd
    if (!fromClient) from.on('end', () => endWrites(to));
  }

  private onClientEnd(): void {
    this.clientEnded = true;
    if (this.state === State.Piping) endWrites(this.upstreamSocket!);
  }

  private onSocketError(socket: net.Socket, err: Error): void {
    if (this.state === State.Ended) return;
    if (socket === this.client) {
      this.finish(this.state === State.Connecting ? 'client_closed' : 'client_error', err);
      return;
    }
    if (socket !== this.upstreamSocket) return;
    if (this.state === State.Piping) {
      this.finish('upstream_error', err);
      return;
    }
    this.connectFailed(err);
  }

  private connectFailed(err: Error): void {
    clearTimeout(this.connectTimer);
    const node = this.node!;
    this.upstream.balancer.done?.(node, performance.now() - this.attemptAt, true);
    const outcome = failureOutcome(classifyFailure(err));
    if (outcome !== undefined) this.upstream.health?.observe(node, outcome);
    this.options.log?.debug({ upstream: this.upstream.key, node: node.key, err: err.message }, 'stream: connect failed');
    this.tried.add(node);
    const inTime = this.deadline === 0 || Date.now() < this.deadline;
    const next = this.stats.tries <= this.upstream.retries && inTime ? this.upstream.balancer.pick(this.tried, this.request) : undefined;
    if (next === undefined) {
      this.node = undefined;
      this.options.log?.warn({ upstream: this.upstream.key, tries: this.stats.tries, err: err.message }, 'stream: could not connect to any upstream node');
      this.finish('connect_failed', err);
      return;
    }
    this.connect(next);
  }

  private onSocketClose(socket: net.Socket): void {
    if (this.state === State.Connecting) {
      // the client left while we were connecting (a failed attempt's close is handled by its error)
      if (socket === this.client) this.finish('client_closed', undefined);
      return;
    }
    if (this.state !== State.Piping) return;
    if (socket !== this.client && socket !== this.upstreamSocket) return;
    // a socket closes without an error once both its directions are done (FIN received, our FIN
    // sent); the other one's are then done or draining: the session is over when both closed
    if (--this.open === 0) this.finish('done', undefined);
  }

  private finish(reason: TcpEndReason, err: Error | undefined): void {
    if (this.state === State.Ended) return;
    const wasPiping = this.state === State.Piping;
    this.state = State.Ended;
    clearTimeout(this.connectTimer);
    const client = this.client;
    const up = this.upstreamSocket;
    // a reset from one side is passed on as a reset, so the other peer sees the same failure
    // (only between connected sockets: resetAndDestroy on a connecting one would connect first)
    const reset = wasPiping && (err as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET';
    for (const socket of up === undefined ? [client] : [client, up]) {
      if (socket.destroyed) continue;
      if (reset) resetOrDestroy(socket);
      else socket.destroy();
    }
    const node = this.node;
    if (node !== undefined && (wasPiping || reason === 'client_closed' || reason === 'closed')) {
      // the session's node is released (least_conn); an attempt the client gave up is no failure of the node
      this.upstream.balancer.done?.(node, wasPiping ? this.stats.connectMs : performance.now() - this.attemptAt, false);
    }
    this.resolveClosed({
      ...this.stats,
      reason,
      error: err?.message,
      durationMs: performance.now() - this.startedAt,
    });
  }
}
