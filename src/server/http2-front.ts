import { createServer, constants, type Http2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ClientTimeouts } from '../config/listen.ts';
import { createHttpProxy, type HttpProxy } from '../proxy/http.ts';
import { rejectRequestHead, type RequestPolicy } from '../proxy/request.ts';
import { sendError } from '../proxy/responses.ts';
import type { RouteTable } from '../runtime/types.ts';
import { ProxyError } from '../errors.ts';
import { routedPath, tlsRequestProblem } from './tls-front.ts';
import type { SniTable } from './tls/sni-table.ts';
import type { RequestObservers } from '../observability/observers.ts';

/**
 * HTTP/2 to clients (ALPN `h2` on a TLS listener, or h2c with prior knowledge on a plain listener
 * that asks for it), proxied to the same routes, plugins and HTTP/1.1 upstreams as HTTP/1.1: each
 * stream is handed to the node-transport proxy (src/proxy/http.ts) through node:http2's
 * compatibility request and response, which stream both bodies with HTTP/2 flow control. A client's
 * RST_STREAM closes the response, which aborts the upstream request as a client abort does in
 * HTTP/1.1.
 *
 * The listener owns the sockets; sessions are started here with `emit('connection')`, so one
 * node:http2 server serves every h2 listener of the process and never listens itself.
 */
export class Http2Front {
  private readonly server: Http2Server;
  private readonly sessions = new Set<Http2Session>();
  private inFlight = 0;
  private draining = false;
  private drained: (() => void) | undefined;

  constructor(routes: () => RouteTable, policy: RequestPolicy, timeouts: ClientTimeouts, private readonly sniTable: () => SniTable, observers?: RequestObservers) {
    const proxy: HttpProxy = createHttpProxy({ routes, ...(observers !== undefined && { observers }) });
    this.server = createServer(
      {
        // a client that opens a stream per request gets at most this many at once
        settings: { maxConcurrentStreams: 128 },
      },
      (req, res) => this.onRequest(proxy, policy, req, res),
    );
    this.server.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      // keep-alive: an idle session is closed like an idle HTTP/1.1 connection
      // (node resets the timer on every frame in either direction)
      session.setTimeout(timeouts.keepalive, () => session.close());
      if (this.draining) session.close();
    });
    // a session-level protocol error: the session is destroyed by node; nothing to answer
    this.server.on('sessionError', () => {});
  }

  /** Starts an HTTP/2 session on an accepted (plain or already-secured) socket. */
  accept(socket: Socket): void {
    if (this.draining) return void socket.destroy();
    this.server.emit('connection', socket);
  }

  private onRequest(proxy: HttpProxy, policy: RequestPolicy, req: Http2ServerRequest, res: Http2ServerResponse): void {
    this.inFlight++;
    res.once('close', () => this.requestDone());
    // what the HTTP/1.1 path reads: a Host (HTTP/2 carries it as :authority) and a header list
    // without pseudo-headers (they must not be forwarded as header lines)
    const authority = req.authority ?? req.headers[':authority'];
    if (req.headers.host === undefined && typeof authority === 'string') req.headers.host = authority;
    const raw = req.rawHeaders;
    const rawHeaders: string[] = [];
    for (let i = 0; i < raw.length; i += 2) if (raw[i]!.charCodeAt(0) !== 58 /* : */) rawHeaders.push(raw[i]!, raw[i + 1]!);
    if (req.headers.host !== undefined && !rawHeaders.some((n, i) => i % 2 === 0 && n.toLowerCase() === 'host')) rawHeaders.unshift('host', req.headers.host);
    // HTTP/2 frames the body itself: one without a length goes upstream chunked (HTTP/1.1)
    if (!req.stream.endAfterHeaders && req.headers['content-length'] === undefined) {
      req.headers['transfer-encoding'] = 'chunked';
      rawHeaders.push('transfer-encoding', 'chunked');
    }
    Object.defineProperty(req, 'rawHeaders', { value: rawHeaders });
    const rejection = rejectRequestHead(req.method, req.url, '1.1', rawHeaders, policy);
    const r = req as unknown as IncomingMessage;
    const s = res as unknown as ServerResponse;
    if (rejection !== undefined) return sendError(s, rejection.error, false);
    const socket = req.stream.session?.socket;
    if (socket !== undefined && (socket as { encrypted?: boolean }).encrypted === true) {
      const path = routedPath(req.url);
      if (path === undefined || tlsRequestProblem(socket, this.sniTable(), req.headers.host, path) !== undefined) return sendError(s, ProxyError.BAD_REQUEST, false);
    }
    // a client's RST_STREAM (or a session going away) ends the stream: the response closes and the
    // proxy aborts the upstream request, as for a client that disconnects
    req.stream.once('aborted', () => res.destroy());
    proxy.handleRequest(r, s);
  }

  private requestDone(): void {
    this.inFlight--;
    if (this.draining && this.inFlight === 0) this.drained?.();
  }

  /** GOAWAY to every session (streams under way finish), up to `timeoutMs`; then every session is destroyed. */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    for (const session of this.sessions) session.close();
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const session of this.sessions) session.destroy(undefined, constants.NGHTTP2_CANCEL);
  }
}
