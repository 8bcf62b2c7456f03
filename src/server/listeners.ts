import { once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { parseListen } from '../config/gateway.ts';
import { ProxyError } from '../errors.ts';
import { createHttpProxy } from '../proxy/http.ts';
import { writeRawError } from '../proxy/responses.ts';
import type { RouteTable } from '../runtime/types.ts';

/**
 * The proxy's HTTP listeners and their graceful drain. Knows nothing of where config comes from:
 * it asks `routes()` for the table in force on each request.
 */
export class ProxyListeners {
  private readonly servers: Server[] = [];
  private inFlight = 0;
  private draining = false;
  private readonly upgraded = new Set<Socket>();
  private drained: (() => void) | undefined;

  constructor(
    private readonly listen: string[],
    private readonly drainTimeoutMs: number,
    private readonly routes: () => RouteTable,
  ) {}

  async start(): Promise<AddressInfo[]> {
    const proxy = createHttpProxy({ routes: this.routes });
    // one listener for every response, not a closure per request
    const listeners = this;
    function onResponseClose(this: ServerResponse) {
      listeners.requestDone(this.req.socket);
    }
    const addresses: AddressInfo[] = [];
    for (const listen of this.listen) {
      const { host, port } = parseListen(listen);
      const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
        this.inFlight++;
        if (this.draining) res.setHeader('connection', 'close');
        res.on('close', onResponseClose);
        proxy.handleRequest(req, res);
      });
      server.on('upgrade', (req, socket: Socket, head) => {
        this.upgraded.add(socket);
        socket.once('close', () => this.upgraded.delete(socket));
        proxy.handleUpgrade(req, socket, head);
      });
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
        // malformed or oversize HTTP: answer like nginx would, without logging each one
        if (!socket.writable) return void socket.destroy();
        writeRawError(socket, err.code === 'HPE_HEADER_OVERFLOW' ? ProxyError.HEADERS_TOO_LARGE : ProxyError.BAD_REQUEST);
      });
      server.listen(port, host);
      await once(server, 'listening');
      this.servers.push(server);
      addresses.push(server.address() as AddressInfo);
    }
    return addresses;
  }

  private requestDone(socket: Socket): void {
    this.inFlight--;
    if (this.draining) {
      // finish the response, then close: a keep-alive client must reconnect elsewhere
      socket.end();
      if (this.inFlight === 0) this.drained?.();
    }
  }

  /** Stop accepting, let in-flight requests finish (up to the drain timeout), then close all. */
  async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    const closed = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.servers) s.closeIdleConnections();
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.drainTimeoutMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const s of this.servers) s.closeAllConnections();
    for (const socket of this.upgraded) socket.destroy();
    await Promise.all(closed);
  }
}
