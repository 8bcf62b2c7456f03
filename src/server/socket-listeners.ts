import { once } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { GatewayConfig } from '../config/gateway.ts';
import { clientTimeouts, listenerSpec, type ClientTimeouts } from '../config/listen.ts';
import { acceptIntoOwnBuffers } from './own-buffer-accept.ts';
import { ClientConnection, sharedReadBuffer, type ConnectionOwner, type ConnectionSettings } from '../proxy/http1/client-connection.ts';
import { requestPolicy, type RequestPolicy } from '../proxy/request.ts';
import type { RouteTable } from '../runtime/types.ts';
import { SendTimeoutWatch } from './send-timeout.ts';
import { Http2Front } from './http2-front.ts';
import { tlsListener, tlsRequestProblem } from './tls-front.ts';
import type { SniTable } from './tls/sni-table.ts';
import type { RequestObservers } from '../observability/observers.ts';

/**
 * The proxy's listeners on the socket transport (proxy.transport: socket): net.Server sockets read
 * by the HTTP/1.1 codec (src/proxy/http1/client-connection.ts), no node:http. Same contract as
 * ProxyListeners: start, then drain on shutdown (finish in-flight requests up to drain_timeout,
 * close keep-alive connections between requests).
 */
export class SocketListeners implements ConnectionOwner {
  private readonly servers: Server[] = [];
  private readonly connections = new Set<ClientConnection>();
  private readonly upgradedSockets = new Set<Socket>();
  draining = false;
  private drained: (() => void) | undefined;
  private readonly timeouts: ClientTimeouts;
  private readonly policy: RequestPolicy;
  private sendWatch: SendTimeoutWatch | undefined;
  private http2: Http2Front | undefined;
  /** who is told of each finished request (set before start) */
  observers: RequestObservers | undefined;

  constructor(
    private readonly config: GatewayConfig['proxy'],
    private readonly routes: () => RouteTable,
    /** the certificates of the TLS listeners (the ssls objects in force) */
    private readonly sniTable: () => SniTable,
  ) {
    this.timeouts = clientTimeouts(config);
    this.policy = requestPolicy(config);
  }

  /** client connections open now (HTTP/1 and tunnels; HTTP/2 sessions not counted) */
  openConnections(): number {
    return this.connections.size + this.upgradedSockets.size;
  }

  async start(): Promise<AddressInfo[]> {
    const sendWatch = (this.sendWatch = new SendTimeoutWatch(this.timeouts.send));
    const sniTable = this.sniTable;
    const settings: ConnectionSettings = {
      routes: this.routes,
      policy: this.policy,
      timeouts: this.timeouts,
      owner: this,
      tlsRequestProblem: (socket, host, path) => tlsRequestProblem(socket, sniTable(), host, path),
      ...(this.observers !== undefined && { observers: this.observers }),
    };
    const connections = this.connections;
    const addresses: AddressInfo[] = [];
    const connect = (socket: Socket, ownReads: boolean): ClientConnection => {
      // read the peer address now: a client that resets right after its request no longer has one
      void socket.remoteAddress;
      sendWatch.watch(socket);
      const conn = new ClientConnection(socket, settings, ownReads);
      connections.add(conn);
      return conn;
    };
    const http1 = (socket: Socket) => void connect(socket, false);
    const ownReads = (socket: Socket) => connect(socket, true);
    // allowHalfOpen: a client's FIN after its request still gets the answer
    const serverOptions = { allowHalfOpen: true, noDelay: true };
    const ownBuffers = { ...serverOptions, firstBuffer: sharedReadBuffer };
    const http2 = (socket: Socket) => (this.http2 ??= new Http2Front(this.routes, this.policy, this.timeouts, sniTable, this.observers)).accept(socket);
    const specs = [
      ...this.config.listen.map((entry) => ({ ...listenerSpec(entry, false), tls: false })),
      ...this.config.tls_listen.map((entry) => ({ ...listenerSpec(entry, true), tls: true })),
    ];
    for (const { host, port, http2: h2, tls } of specs) {
      const server = tls
        ? tlsListener(this.sniTable, { http1: http1 as (s: TLSSocket) => void, http2: h2 ? http2 : undefined })
        : createServer(serverOptions, h2 ? http2 : http1);
      server.listen(port, host);
      await once(server, 'listening');
      // plain HTTP/1: the accepted sockets read into the buffer the client connections share (or,
      // without the handle this needs, through the 'connection' event as created above)
      if (!tls && !h2) acceptIntoOwnBuffers(server, ownBuffers, ownReads);
      this.servers.push(server);
      addresses.push(server.address() as AddressInfo);
    }
    return addresses;
  }

  connectionIdle(conn: ClientConnection): void {
    if (this.draining) conn.close();
  }

  connectionClosed(conn: ClientConnection): void {
    this.connections.delete(conn);
    if (this.draining && this.connections.size === 0) this.drained?.();
  }

  upgraded(socket: Socket): void {
    this.upgradedSockets.add(socket);
    socket.once('close', () => this.upgradedSockets.delete(socket));
  }

  /** Stop accepting, let in-flight requests finish (up to the drain timeout), then close all. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const closed = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const conn of this.connections) conn.close();
    const http2Drained = this.http2?.drain(this.config.drain_timeout * 1000);
    if (this.connections.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.config.drain_timeout * 1000);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const conn of this.connections) conn.socket.destroy();
    for (const socket of this.upgradedSockets) socket.destroy();
    this.sendWatch?.stop();
    await http2Drained;
    await Promise.all(closed);
  }
}
