import dgram from 'node:dgram';
import { once } from 'node:events';
import { createServer, isIPv6, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { GatewayConfig } from '../config/gateway.ts';
import { parseListen } from '../config/listen.ts';
import { log } from '../observability/log.ts';
import { proxyTcp, type TcpSession } from '../proxy/stream/tcp.ts';
import { UdpRelay } from '../proxy/stream/udp.ts';
import type { Runtime, StreamRoute } from '../runtime/runtime.ts';
import { tlsListener } from './tls-front.ts';
import type { SniTable } from './tls/sni-table.ts';

/**
 * The L4 listeners of stream routes (`proxy.stream_listen`): TCP, TLS-terminating TCP (the
 * certificate chosen by SNI like HTTPS, and the SNI available to routes) and UDP. Each new TCP
 * connection, and each UDP client's first datagram, is routed on the stream routes in force;
 * nothing matches → the connection is closed (the datagram dropped), as APISIX does.
 *
 * Changes: a new or changed route applies to new connections; established sessions keep going
 * through unrelated changes and through changes to their own route (they stay with the node they
 * connected to). A session whose route is deleted is closed after `drain_timeout`, unless the
 * route is back by then. On shutdown, sessions get `drain_timeout` to finish, then are closed.
 */
export class StreamListeners {
  private readonly servers: Server[] = [];
  private readonly udpSockets: dgram.Socket[] = [];
  private readonly relays: UdpRelay<StreamRoute>[] = [];
  private readonly sessions = new Map<TcpSession, string>();
  /** deleted route ids whose sessions are closed when the timer fires */
  private readonly doomed = new Map<string, NodeJS.Timeout>();
  private draining = false;
  /** the route ids in force at the last change */
  private known = new Set<string>();

  constructor(
    private readonly config: GatewayConfig['proxy'],
    private readonly runtime: () => Runtime,
    private readonly sniTable: () => SniTable,
    /** serve the UDP listeners here (with workers, one process does: a client's session needs one owner) */
    private readonly udp: boolean,
  ) {}

  get size(): number {
    return this.config.stream_listen.length;
  }

  async start(): Promise<AddressInfo[]> {
    const addresses: AddressInfo[] = [];
    for (const entry of this.config.stream_listen) {
      const { host, port } = parseListen(entry.addr);
      if (entry.udp === true) {
        if (!this.udp) continue;
        const socket = dgram.createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
        // bound in this process only (not shared by the cluster): see `udp`
        socket.bind({ port, address: host, exclusive: true });
        await once(socket, 'listening');
        this.udpSockets.push(socket);
        this.relays.push(
          new UdpRelay<StreamRoute>(socket, {
            match: (first) => {
              const route = this.runtime().streamRouter.match(first);
              const upstream = route?.upstream;
              return route === undefined || upstream === undefined ? undefined : { route, upstream, idleTimeout: route.udpIdleTimeout };
            },
            log,
          }),
        );
        addresses.push(socket.address());
        continue;
      }
      const server =
        entry.tls === true
          ? tlsListener(this.sniTable, { http1: (socket: TLSSocket) => this.connection(socket, typeof socket.servername === 'string' ? socket.servername : undefined) })
          : createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.connection(socket, undefined));
      server.listen(port, host);
      await once(server, 'listening');
      this.servers.push(server);
      addresses.push(server.address() as AddressInfo);
    }
    return addresses;
  }

  private connection(socket: Socket, sni: string | undefined): void {
    if (this.draining) return void socket.destroy();
    // read now: a client that resets at once no longer has them
    const remoteAddr = socket.remoteAddress;
    const serverAddr = socket.localAddress;
    const serverPort = socket.localPort;
    if (remoteAddr === undefined || serverAddr === undefined || serverPort === undefined) return void socket.destroy();
    const route = this.runtime().streamRouter.match({ remoteAddr, serverAddr, serverPort, sni });
    const upstream = route?.upstream;
    if (route === undefined || upstream === undefined) return void socket.destroy();
    const session = proxyTcp(socket, upstream, { idleTimeout: route.idleTimeout, sni, log });
    this.sessions.set(session, route.id);
    void session.closed.then(() => this.sessions.delete(session));
  }

  /** After each applied change: sessions of deleted routes are closed after drain_timeout. */
  routesChanged(): void {
    const live = this.runtime().streamRoutes;
    for (const [id, timer] of this.doomed) {
      if (live.has(id)) {
        clearTimeout(timer);
        this.doomed.delete(id);
      }
    }
    const gone = [...this.known].filter((id) => !live.has(id) && !this.doomed.has(id));
    this.known = new Set(live.keys());
    for (const id of gone) {
      log.info({ streamRoute: id, drainTimeout: this.config.drain_timeout }, 'stream route deleted: its sessions close after drain_timeout');
      const timer = setTimeout(() => {
        this.doomed.delete(id);
        if (this.runtime().streamRoutes.has(id)) return;
        for (const [session, routeId] of this.sessions) if (routeId === id) session.close();
        for (const relay of this.relays) relay.closeSessions((route) => route.id === id);
      }, this.config.drain_timeout * 1000);
      timer.unref();
      this.doomed.set(id, timer);
    }
  }

  /** Stops accepting; sessions get drain_timeout to finish, then are closed. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const closed = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const timer of this.doomed.values()) clearTimeout(timer);
    if (this.sessions.size > 0) {
      const deadline = new Promise<void>((r) => setTimeout(r, this.config.drain_timeout * 1000).unref());
      await Promise.race([deadline, Promise.all([...this.sessions.keys()].map((s) => s.closed))]);
    }
    for (const session of this.sessions.keys()) session.close();
    for (const relay of this.relays) relay.close();
    for (const socket of this.udpSockets) socket.close();
    await Promise.all(closed);
  }

  /** Sessions open now (TCP and UDP), for /status. */
  stats(): { tcp_sessions: number; udp_sessions: number } {
    let udp = 0;
    for (const relay of this.relays) udp += relay.size;
    return { tcp_sessions: this.sessions.size, udp_sessions: udp };
  }
}
