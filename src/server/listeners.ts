import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { GatewayConfig } from '../config/gateway.ts';
import { clientTimeouts, listenerSpec, type ClientTimeouts } from '../config/listen.ts';
import { ProxyError } from '../errors.ts';
import { createHttpProxy, observeNodeRequest } from '../proxy/http.ts';
import { rejectRequestHead, requestPolicy, type RequestPolicy } from '../proxy/request.ts';
import { isLingering, lingeringClose } from '../proxy/lingering-close.ts';
import { sendError, writeRawError, type ProxyErrorKind } from '../proxy/responses.ts';
import type { RouteTable } from '../runtime/types.ts';
import { SendTimeoutWatch } from './send-timeout.ts';
import { Http2Front } from './http2-front.ts';
import { routedPath, tlsListener, tlsRequestProblem } from './tls-front.ts';
import type { SniTable } from './tls/sni-table.ts';
import type { RequestObservers } from '../observability/observers.ts';

/**
 * The proxy's HTTP listeners and their graceful drain. Knows nothing of where config comes from:
 * it asks `routes()` for the table in force on each request.
 *
 * Every client connection is bounded in time (proxy.timeouts): a head that takes longer than
 * `header` from its first byte, a body that pauses longer than `request_body`, a keep-alive
 * connection idle longer than `keepalive`, a client that reads nothing for `send` — each ends with
 * the socket destroyed (after a 408 when nothing was answered yet), never half-closed and left to
 * the client.
 */
export class ProxyListeners {
  private readonly servers: Server[] = [];
  private inFlight = 0;
  private draining = false;
  private readonly upgraded = new Set<Socket>();
  private drained: (() => void) | undefined;
  private readonly timeouts: ClientTimeouts;
  private readonly policy: RequestPolicy;
  private sendWatch: SendTimeoutWatch | undefined;
  private http2: Http2Front | undefined;
  /** listeners whose connections go elsewhere: TLS (then to a node:http server) and h2c */
  private readonly fronts: NetServer[] = [];
  /** who is told of each finished request (set before start) */
  observers: RequestObservers | undefined;
  private connections = 0;

  constructor(
    private readonly config: GatewayConfig['proxy'],
    private readonly routes: () => RouteTable,
    /** the certificates of the TLS listeners (the ssls objects in force) */
    private readonly sniTable: () => SniTable,
  ) {
    this.timeouts = clientTimeouts(config);
    this.policy = requestPolicy(config);
  }

  /** client connections open now (HTTP/1 listeners; HTTP/2 sessions not counted) */
  openConnections(): number {
    return this.connections;
  }

  async start(): Promise<AddressInfo[]> {
    const { timeouts, policy } = this;
    const proxy = createHttpProxy({ routes: this.routes, ...(this.observers !== undefined && { observers: this.observers }) });
    const sendWatch = (this.sendWatch = new SendTimeoutWatch(timeouts.send));
    // one listener for every response, not a closure per request
    const listeners = this;
    function onResponseClose(this: ServerResponse) {
      listeners.requestDone(this.req.socket);
    }
    const addresses: AddressInfo[] = [];
    const http2 = (socket: Socket) => (this.http2 ??= new Http2Front(this.routes, policy, timeouts, this.sniTable, this.observers)).accept(socket);
    const specs = [
      ...this.config.listen.map((entry) => ({ ...listenerSpec(entry, false), tls: false })),
      ...this.config.tls_listen.map((entry) => ({ ...listenerSpec(entry, true), tls: true })),
    ];
    for (const { host, port, http2: h2, tls } of specs) {
      if (h2 && !tls) {
        // h2c with prior knowledge: every connection speaks HTTP/2 from its first byte
        const front = createNetServer({ allowHalfOpen: true, noDelay: true }, http2);
        front.listen(port, host);
        await once(front, 'listening');
        this.fronts.push(front);
        addresses.push(front.address() as AddressInfo);
        continue;
      }
      const onRequest = (req: IncomingMessage, res: ServerResponse) => {
        // the connection closes after a refusal: a request pipelined behind it is not served (left
        // unanswered, it goes when node:http closes the socket after the refusal is sent)
        if (answering.has(req.socket)) return;
        this.inFlight++;
        if (this.draining) res.setHeader('connection', 'close');
        res.on('close', onResponseClose);
        const rejection = rejectRequestHead(req.method!, req.url!, req.httpVersion, req.rawHeaders, policy);
        if (rejection !== undefined) {
          // refused before the proxy sees it: still a request the access log and metrics count
          if (this.observers !== undefined) observeNodeRequest(this.observers, req, res);
          // node:http goes on parsing what follows (a refused request's body, say): none of it may
          // be answered after the refusal, the connection closes once it is sent
          if (rejection.closeConnection) answering.add(req.socket);
          return sendError(res, rejection.error, rejection.closeConnection);
        }
        if ((req.socket as { encrypted?: boolean }).encrypted === true) {
          const path = routedPath(req.url!);
          if (path === undefined || tlsRequestProblem(req.socket, this.sniTable(), req.headers.host, path) !== undefined) {
            if (this.observers !== undefined) observeNodeRequest(this.observers, req, res);
            return sendError(res, ProxyError.BAD_REQUEST);
          }
        }
        if (hasBody(req)) watchRequestBody(req, res, timeouts.requestBody);
        proxy.handleRequest(req, res);
      };
      const server = createServer(
        {
          keepAliveTimeout: timeouts.keepalive,
          // total, from the head's first byte (or the connection's start): a head trickled one byte
          // at a time is cut as surely as a silent one. Answered 408 through 'clientError'.
          headersTimeout: timeouts.header,
          // no deadline for a whole request: a large upload may take long, as long as it moves
          // (request_body, below, is the idle timeout between body reads, as nginx's)
          requestTimeout: 0,
          // node checks head deadlines on this tick (default 30 s, which made a 60 s timeout fire
          // anywhere up to 90 s)
          connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.round(timeouts.header / 4))),
          // a missing Host is refused by rejectRequestHead, with the same JSON error as the rest
          requireHostHeader: false,
        },
        onRequest,
      );
      // node:http's own 417 is plain text: the same JSON answer as the socket transport
      server.on('checkExpectation', (_req: IncomingMessage, res: ServerResponse) => sendError(res, ProxyError.EXPECTATION_FAILED));
      server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
        sendContinue(res);
        onRequest(req, res);
      });
      // one more than allowed, so that too many is seen (and refused) rather than cut silently
      server.maxHeadersCount = policy.maxHeaderCount + 1;
      server.on('connection', (socket: Socket) => {
        // read the peer address now: node caches it, and a client that resets right after its
        // request no longer has one to read (it was forwarded with an empty X-Real-IP)
        void socket.remoteAddress;
        sendWatch.watch(socket);
        this.connections++;
        socket.once('close', () => this.connections--);
        // node:http closes a connection after its last response with destroySoon(): the bytes the
        // client still sends (a body not read) would be answered with a reset, which can discard
        // that response; a lingering close reads and drops them first (proxy/lingering-close.ts)
        socket.destroySoon = lingerOnClose;
      });
      server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
        const rejection = rejectRequestHead(req.method!, req.url!, req.httpVersion, req.rawHeaders, policy);
        if (rejection !== undefined) {
          answering.add(socket);
          return writeRawError(socket, rejection.error);
        }
        this.upgraded.add(socket);
        socket.once('close', () => this.upgraded.delete(socket));
        proxy.handleUpgrade(req, socket, head);
      });
      // a forward proxy's tunnel request: not something a gateway serves (nginx answers 405 too);
      // without this listener node:http would close the connection without a byte
      server.on('connect', (_req: IncomingMessage, socket: Socket) => writeRawError(socket, ProxyError.METHOD_NOT_ALLOWED));
      server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
        // bytes after the last response, read only to be dropped
        if (isLingering(socket)) return;
        // node:http keeps parsing after an error, so this comes again for a socket being answered
        if (answering.has(socket)) return;
        const error = clientErrorResponse(err.code);
        // a socket error (reset, ...): nobody to answer
        if (error === undefined || !socket.writable) return void socket.destroy();
        // malformed, oversize or too slow: answer like nginx would, without logging each one
        answering.add(socket);
        answerClientError(socket, error);
      });
      this.servers.push(server);
      if (tls) {
        // secured sockets are served by this (not listening) node:http server, or by HTTP/2 (ALPN h2)
        const front = tlsListener(this.sniTable, { http1: (socket: TLSSocket) => server.emit('connection', socket), http2: h2 ? http2 : undefined });
        front.listen(port, host);
        await once(front, 'listening');
        this.fronts.push(front);
        addresses.push(front.address() as AddressInfo);
        continue;
      }
      server.listen(port, host);
      await once(server, 'listening');
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
    const closed = [...this.servers, ...this.fronts].map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.servers) s.closeIdleConnections();
    const http2Drained = this.http2?.drain(this.config.drain_timeout * 1000);
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.config.drain_timeout * 1000);
        this.drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const s of this.servers) s.closeAllConnections();
    for (const socket of this.upgraded) socket.destroy();
    this.sendWatch?.stop();
    await http2Drained;
    await Promise.all(closed);
  }
}

/** sockets whose client error is answered (or waits for the responses before it) */
const answering = new WeakSet<Socket>();

/** The answer to a node:http client error; undefined for a socket error (no HTTP to answer). */
function clientErrorResponse(code: string | undefined): ProxyErrorKind | undefined {
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return ProxyError.REQUEST_TIMEOUT;
  if (code === 'HPE_HEADER_OVERFLOW') return ProxyError.HEADERS_TOO_LARGE;
  return code?.startsWith('HPE_') === true ? ProxyError.BAD_REQUEST : undefined;
}

/**
 * Answers a client error, then closes the connection. Requests parsed before the bad one (pipelined
 * on the connection) are answered first, in order: written at once, the error would be read as the
 * answer to a request the upstream is still serving.
 */
function lingerOnClose(this: Socket): void {
  lingeringClose(this);
}

function answerClientError(socket: Socket, error: ProxyErrorKind): void {
  const inFlight = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
  if (inFlight != null && !inFlight.destroyed && !inFlight.writableFinished) {
    if (inFlight.req.complete) {
      // on 'close' node:http has handed the socket to the next queued response, if any
      inFlight.once('close', () => answerClientError(socket, error));
      return;
    }
    // the bad bytes are in this request's own body: once its response started, only a cut is left
    if (inFlight.headersSent) return void socket.destroy();
  }
  writeRawError(socket, error);
}

/**
 * `100 Continue` for an `Expect: 100-continue` request. node:http would write it at once, but for
 * a pipelined request whose response waits behind another one, it lands between the head and the
 * body of that response when the gateway answers it itself (an error): so it waits for the
 * response's turn on the socket, and is skipped when the final answer is already written.
 */
function sendContinue(res: ServerResponse): void {
  if (res.socket !== null) return void res.writeContinue();
  res.once('socket', () => {
    if (!res.headersSent) res.writeContinue();
  });
}

function hasBody(req: IncomingMessage): boolean {
  const headers = req.headers;
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * request_body, as nginx's client_body_timeout: the longest pause between two reads of the body.
 * It uses the socket's idle timer, which node:http refreshes on every byte parsed, and it ends with
 * the body: from then on the socket's timer is node's again (keep-alive).
 */
function watchRequestBody(req: IncomingMessage, res: ServerResponse, timeoutMs: number): void {
  const socket = req.socket;
  req.setTimeout(timeoutMs, () => {
    // the body is not being read (no connection to the upstream yet, or the upstream is slow to
    // take it): the client cannot send, so it is not the one that is late
    if (req.readableFlowing !== true && !res.writableFinished) {
      socket.setTimeout(timeoutMs);
      return;
    }
    // the body stopped coming. Nothing answered yet: 408, then node:http closes the connection.
    // Otherwise only the cut is left.
    if (res.headersSent) return void socket.destroy();
    sendError(res, ProxyError.REQUEST_TIMEOUT, true);
    // node:http forgets a request once its response is finished, so closing the connection no
    // longer aborts it: destroyed here, its body stream ends in error and the upstream request
    // (still waiting for the rest of the body) is aborted with it
    res.once('close', () => req.destroy());
  });
  req.once('end', () => {
    // after the response, node:http has already replaced our timer with its keep-alive timer
    if (!res.writableFinished) socket.setTimeout(0);
  });
}
