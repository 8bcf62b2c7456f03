import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Logger } from '../../observability/log.ts';
import { unmapIpv4 } from '../../router/ip.ts';
import type { UpstreamNode } from '../../upstream/types.ts';
import { classifyFailure, failureOutcome } from '../failures.ts';
import { StreamPickRequest, type StreamUpstream } from './tcp.ts';

/**
 * The UDP side of stream routes: one relay per UDP listener socket (nginx `listen ... udp`).
 *
 * Model: a *session* per client address:port, made by the client's first datagram. That datagram
 * is routed (`match`), a node of the route's upstream is picked, and the session gets its own
 * `dgram` socket connected to that node; the client's datagrams go out through it, and whatever the
 * node sends back to it goes to that client (and only that client) from the listener socket. A
 * session ends after `idleTimeout` ms without a datagram either way (nginx `proxy_timeout`), when
 * the node's socket fails (e.g. ICMP port unreachable: ECONNREFUSED), or on close().
 *
 * Decisions:
 *  - Idle time: per route, from `match` (see udpIdleTimeout): the upstream's max(timeout.send,
 *    timeout.read) when configured, as APISIX sets nginx's proxy_timeout; else 60 s rather than
 *    nginx's 10 minutes: every session holds a socket (a file descriptor), and one-shot clients
 *    (DNS, syslog) would keep 10 minutes' worth of them open.
 *  - A cap on sessions (`maxSessions`): past it, datagrams of new clients are dropped and counted
 *    (`stats.droppedOverCap`), with a warning at most every 10 s (the same for an upstream without
 *    nodes: `stats.noNode`). Existing sessions keep working.
 *  - No retry on another node: UDP has no connect to fail. A node that answers with ICMP port
 *    unreachable fails the session (reported to passive health as a tcp_failure, as APISIX's stream
 *    log phase does for any session that did not end well); the client's next datagram opens a new
 *    session, picked again (the health check by then may skip the node).
 *  - Datagrams that arrive while a session's socket is still being connected (name resolution) are
 *    queued, at most QUEUE_LIMIT; more are dropped, as a full socket buffer would drop them.
 *  - A node given by host name gets a udp4 socket (resolved as IPv4); IPv6 nodes need an address.
 *  - `server_addr` for routing is the listener's bound address (Node cannot tell which local
 *    address a datagram to a wildcard-bound socket was sent to).
 */

/** Default idle time of a UDP session (ms) when the upstream sets no send/read timeout. */
export const DEFAULT_UDP_IDLE_MS = 60_000;
/** Default cap on concurrent sessions per relay. */
export const DEFAULT_UDP_MAX_SESSIONS = 10_000;
/** datagrams queued per session while its upstream socket connects */
const QUEUE_LIMIT = 64;
const WARNING_INTERVAL_MS = 10_000;

/** A UDP session's idle time for an upstream's `timeout` config (seconds); see the module comment. */
export function udpIdleTimeout(timeout: { send?: number; read?: number } | undefined): number {
  const send = timeout?.send;
  const read = timeout?.read;
  if (send === undefined && read === undefined) return DEFAULT_UDP_IDLE_MS;
  return Math.max(send ?? 0, read ?? 0) * 1000;
}

/** A client's first datagram, as routing sees it (StreamConnection of src/router/stream.ts). */
export interface UdpFirstDatagram {
  remoteAddr: string;
  remotePort: number;
  serverAddr: string;
  serverPort: number;
}

/** Where a client's session goes: what `match` returns for a routed first datagram. */
export interface UdpRoute<R> {
  upstream: StreamUpstream;
  /** ms; default DEFAULT_UDP_IDLE_MS */
  idleTimeout?: number;
  /** the lead's route object, handed back in session ends and to closeSessions() */
  route: R;
}

export interface UdpRelayOptions<R> {
  /** the route for a new client, or undefined to drop its datagram (no session is made) */
  match(first: UdpFirstDatagram): UdpRoute<R> | undefined;
  maxSessions?: number;
  log?: Pick<Logger, 'warn' | 'debug'>;
  /** called once per ended session (metrics, logs) */
  onSessionEnd?(end: UdpSessionEnd<R>): void;
}

export type UdpEndReason = 'idle_timeout' | 'upstream_error' | 'closed';

export interface UdpSessionEnd<R> {
  route: R;
  client: string;
  node: string | undefined;
  reason: UdpEndReason;
  error: string | undefined;
  datagramsFromClient: number;
  datagramsToClient: number;
  bytesFromClient: number;
  bytesToClient: number;
}

export interface UdpRelayStats {
  /** sessions open now */
  sessions: number;
  /** sessions made since the start */
  created: number;
  /** first datagrams no route matched (dropped) */
  unrouted: number;
  /** datagrams of new clients dropped because `maxSessions` sessions were open */
  droppedOverCap: number;
  /** datagrams of new clients dropped because the route's upstream had no node */
  noNode: number;
  /** datagrams dropped from a full queue of a connecting session */
  droppedQueued: number;
}

class UdpSession<R> {
  socket: dgram.Socket | undefined;
  node: UpstreamNode | undefined;
  connected = false;
  queue: Buffer[] = [];
  lastActivity = performance.now();
  timer: NodeJS.Timeout | undefined;
  ended = false;
  readonly startedAt = performance.now();
  datagramsFromClient = 0;
  datagramsToClient = 0;
  bytesFromClient = 0;
  bytesToClient = 0;

  constructor(
    readonly key: string,
    readonly address: string,
    readonly port: number,
    readonly target: UdpRoute<R>,
  ) {}
}

export class UdpRelay<R = unknown> {
  readonly stats: UdpRelayStats = { sessions: 0, created: 0, unrouted: 0, droppedOverCap: 0, noNode: 0, droppedQueued: 0 };
  private readonly sessions = new Map<string, UdpSession<R>>();
  private readonly maxSessions: number;
  /** when each kind of warning was last logged (they repeat per datagram otherwise) */
  private readonly lastWarning = { cap: 0, noNode: 0 };
  private closedRelay = false;
  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo) => this.fromClient(msg, rinfo);

  /** Relays the datagrams `listener` (bound, owned by the caller) receives; see the module comment. */
  constructor(
    private readonly listener: dgram.Socket,
    private readonly options: UdpRelayOptions<R>,
  ) {
    this.maxSessions = options.maxSessions ?? DEFAULT_UDP_MAX_SESSIONS;
    listener.on('message', this.onMessage);
  }

  /** Open sessions' count. */
  get size(): number {
    return this.sessions.size;
  }

  /** Stops relaying and ends every session; the listener socket stays open (it is the caller's). */
  close(): void {
    this.closedRelay = true;
    this.listener.off('message', this.onMessage);
    for (const session of [...this.sessions.values()]) this.end(session, 'closed', undefined);
  }

  /** Ends the sessions whose route `which` selects (a deleted route, after its drain time). */
  closeSessions(which: (route: R) => boolean): number {
    let n = 0;
    for (const session of [...this.sessions.values()]) {
      if (!which(session.target.route)) continue;
      this.end(session, 'closed', undefined);
      n++;
    }
    return n;
  }

  private fromClient(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const key = `${rinfo.address}|${rinfo.port}`;
    let session = this.sessions.get(key);
    if (session === undefined) {
      session = this.open(key, rinfo);
      if (session === undefined) return;
    }
    session.lastActivity = performance.now();
    session.datagramsFromClient++;
    session.bytesFromClient += msg.length;
    if (session.connected) {
      session.socket!.send(msg);
    } else if (session.queue.length < QUEUE_LIMIT) {
      session.queue.push(msg);
    } else {
      this.stats.droppedQueued++;
    }
  }

  private open(key: string, rinfo: dgram.RemoteInfo): UdpSession<R> | undefined {
    if (this.closedRelay) return undefined;
    if (this.sessions.size >= this.maxSessions) {
      this.stats.droppedOverCap++;
      this.warnEvery(
        'cap',
        { sessions: this.sessions.size, maxSessions: this.maxSessions, droppedOverCap: this.stats.droppedOverCap },
        'stream udp: session cap reached, dropping datagrams of new clients',
      );
      return undefined;
    }
    const local = this.listener.address();
    const target = this.options.match({ remoteAddr: rinfo.address, remotePort: rinfo.port, serverAddr: local.address, serverPort: local.port });
    if (target === undefined) {
      this.stats.unrouted++;
      return undefined;
    }
    const upstream = target.upstream;
    const node = upstream.balancer.pick(undefined, upstream.balancer.needsRequest === true ? new StreamPickRequest(unmapIpv4(rinfo.address), '') : undefined);
    if (node === undefined) {
      this.stats.noNode++;
      this.warnEvery('noNode', { upstream: upstream.key, noNode: this.stats.noNode }, 'stream udp: no upstream node, dropping datagrams of new clients');
      return undefined;
    }
    const session = new UdpSession(key, rinfo.address, rinfo.port, target);
    this.sessions.set(key, session);
    this.stats.sessions = this.sessions.size;
    this.stats.created++;
    session.node = node;
    upstream.balancer.started?.(node);
    const socket = dgram.createSocket(isIPv6(node.host) ? 'udp6' : 'udp4');
    session.socket = socket;
    socket.on('error', (err) => this.end(session, 'upstream_error', err));
    socket.on('message', (reply) => this.toClient(session, reply));
    socket.connect(node.port, node.host, () => {
      if (session.ended) return;
      session.connected = true;
      for (const queued of session.queue) socket.send(queued);
      session.queue = [];
    });
    this.arm(session);
    return session;
  }

  private warnEvery(kind: keyof UdpRelay['lastWarning'], fields: object, message: string): void {
    const now = Date.now();
    if (now - this.lastWarning[kind] < WARNING_INTERVAL_MS) return;
    this.lastWarning[kind] = now;
    this.options.log?.warn(fields, message);
  }

  private toClient(session: UdpSession<R>, reply: Buffer): void {
    if (session.ended) return;
    session.lastActivity = performance.now();
    session.datagramsToClient++;
    session.bytesToClient += reply.length;
    // a callback, so a failed send (EMSGSIZE, the client gone) is not an 'error' on the caller's listener
    this.listener.send(reply, session.port, session.address, ignore);
  }

  /**
   * One timer per session, re-armed for the time left when it fires: a datagram only stamps
   * `lastActivity`, which costs less than moving a timer on every datagram.
   */
  private arm(session: UdpSession<R>): void {
    const idle = session.target.idleTimeout ?? DEFAULT_UDP_IDLE_MS;
    if (idle <= 0) return;
    const left = session.lastActivity + idle - performance.now();
    session.timer = setTimeout(() => {
      if (session.ended) return;
      if (performance.now() - session.lastActivity >= idle) this.end(session, 'idle_timeout', undefined);
      else this.arm(session);
    }, Math.max(1, Math.ceil(left)));
    session.timer.unref();
  }

  private end(session: UdpSession<R>, reason: UdpEndReason, err: Error | undefined): void {
    if (session.ended) return;
    session.ended = true;
    clearTimeout(session.timer);
    if (this.sessions.get(session.key) === session) this.sessions.delete(session.key);
    this.stats.sessions = this.sessions.size;
    const upstream = session.target.upstream;
    const node = session.node;
    if (node !== undefined) {
      const failed = reason === 'upstream_error';
      if (failed) {
        const outcome = failureOutcome(classifyFailure(err));
        if (outcome !== undefined) upstream.health?.observe(node, outcome);
        this.options.log?.debug({ upstream: upstream.key, node: node.key, err: err?.message }, 'stream udp: upstream socket failed');
      }
      upstream.balancer.done?.(node, performance.now() - session.startedAt, failed);
    }
    session.socket?.close();
    this.options.onSessionEnd?.({
      route: session.target.route,
      client: isIPv6(session.address) ? `[${session.address}]:${session.port}` : `${session.address}:${session.port}`,
      node: node?.key,
      reason,
      error: err?.message,
      datagramsFromClient: session.datagramsFromClient,
      datagramsToClient: session.datagramsToClient,
      bytesFromClient: session.bytesFromClient,
      bytesToClient: session.bytesToClient,
    });
  }
}

function ignore(): void {}
