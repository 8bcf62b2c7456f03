import { performance } from 'node:perf_hooks';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { ClientTimeouts } from '../../config/listen.ts';
import { ProxyError } from '../../errors.ts';
import type { RouteTable } from '../../runtime/types.ts';
import { http1Pools, UpstreamEvent, type NodePool1, type UpstreamConnection, type UpstreamUser } from '../../upstream/http1-pool.ts';
import type { NodeWaiter } from '../../upstream/pools.ts';
import type { Balancer, PickRequest, UpstreamNode, UpstreamTarget } from '../../upstream/types.ts';
import { Failure, failureOutcome, failureResponse } from '../failures.ts';
import { clientHeaderList, upstreamHeaders, upstreamHost } from '../headers.ts';
import { describeRequest, rejectRequestHead, type ProxyRequest, type RequestPolicy } from '../request.ts';
import { lingeringClose } from '../lingering-close.ts';
import { BodyForMatching, postArgsMaxBytes, withoutBody } from '../post-args.ts';
import { errorForStatus, writeLocalResponse, writeRawError, writeSocketError, type ProxyErrorKind } from '../responses.ts';
import { NodeRetries } from '../retries.ts';
import { destroyOnError, proxyUpgrade, sniName, upgradeRequestBody } from '../websocket.ts';
import type { Http1ParseError } from './errors.ts';
import { RequestParser, type RequestHandler, type RequestHead } from './request-parser.ts';
import type { ResponseHead } from './response-parser.ts';
import { chunkHeader, CRLF, headerLines, LAST_CHUNK } from './serialize.ts';
import { NO_CONSUMERS } from '../../plugins/consumers.ts';
import { localAnswer, pickRequestOf, PluginRun } from '../../plugins/run.ts';
import type { PluginAnswer } from '../../plugins/types.ts';
import type { RouteMatch } from '../../router/types.ts';
import type { CompiledRoute } from '../../runtime/types.ts';
import { attemptStarted, bytesWrittenOf, upstreamEnded, type ObservedRequest, type RequestObservers } from '../../observability/observers.ts';
import { LazyTimer } from './lazy-timer.ts';
import type { OwnReads } from '../../server/own-buffer-accept.ts';

/*
 * The socket transport's client side (proxy.transport: socket): one ClientConnection per accepted
 * socket, a RequestParser on its bytes, one SocketExchange per proxied request. Requests on a
 * connection are served strictly one at a time (the parser pauses at each request's end until its
 * response is written), so pipelined requests are answered in order and an error in a later
 * request is answered after the responses before it.
 */

/** A TLS socket (a listener with a certificate): the request's scheme is https. */
function isTls(socket: Socket): boolean {
  return (socket as { encrypted?: boolean }).encrypted === true;
}

/** Whether a raw header list has a header of this (lower-case) name. */
function hasHeader(raw: readonly string[], name: string): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i]!;
    if (n.length === name.length && n.toLowerCase() === name) return true;
  }
  return false;
}

let dateText = '';
let dateSecond = -1;
/** The current time as an HTTP date, formatted at most once a second (nginx caches it the same way). */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/** What every connection of a listener shares. */
export interface ConnectionSettings {
  routes: () => RouteTable;
  policy: RequestPolicy;
  timeouts: ClientTimeouts;
  owner: ConnectionOwner;
  /** for requests on TLS connections: why one must be refused (400; mutual TLS rules), or undefined */
  tlsRequestProblem?: (socket: Socket, host: string | undefined, path: string) => string | undefined;
  /** who is told of each finished request (metrics, access log, tracing) */
  observers?: RequestObservers;
}

/** The listener a connection belongs to (drain, WebSocket tunnels). */
export interface ConnectionOwner {
  readonly draining: boolean;
  /** the connection has no request in flight (a drain may close it) */
  connectionIdle(conn: ClientConnection): void;
  connectionClosed(conn: ClientConnection): void;
  /** the socket became a tunnel (WebSocket), no longer HTTP */
  upgraded(socket: Socket): void;
}

/**
 * A client request, transport-independent: the method, target, raw header list and client socket.
 * It has the fields describeRequest, upstreamHeaders and the WebSocket relay read of node's
 * IncomingMessage, so the same request logic serves both transports.
 */
export class RequestContext {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor: number;
  readonly rawHeaders: string[];
  readonly socket: Socket;
  private headerObject: Record<string, string | undefined> | undefined;

  constructor(head: RequestHead, socket: Socket) {
    this.method = head.method;
    this.url = head.target;
    this.httpVersion = head.httpVersion;
    this.httpVersionMinor = head.httpVersion === '1.1' ? 1 : 0;
    this.rawHeaders = head.rawHeaders;
    this.socket = socket;
  }

  /**
   * Lower-cased names → value (duplicates joined with ", ", first-wins fields as node), built on first
   * use: only routes with `vars` and WebSocket requests read it.
   */
  get headers(): Record<string, string | undefined> {
    if (this.headerObject !== undefined) return this.headerObject;
    // no prototype: a header named `constructor` is the client's, not Object's
    const headers = Object.create(null) as Record<string, string | undefined>;
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      const value = raw[i + 1]!;
      const previous = headers[name];
      if (previous === undefined) headers[name] = value;
      else if (!FIRST_WINS.has(name)) headers[name] = previous + ', ' + value;
    }
    this.headerObject = headers;
    return headers;
  }
}

/** Fields node:http keeps the first of (a second one is dropped, not joined). */
const FIRST_WINS = new Set(['host', 'content-type', 'content-length', 'user-agent', 'authorization', 'referer', 'from', 'age', 'etag', 'expires', 'location', 'server', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'max-forwards', 'proxy-authorization', 'retry-after']);

/** What the connection is waiting for (which client timeout applies). */
const Phase = {
  /** a request head (proxy.timeouts.header, a total from its first byte) */
  Head: 0,
  /** the request body (request_body, between two reads) */
  Body: 1,
  /** the request was read, its response is being written (send, by the SendTimeoutWatch) */
  Response: 2,
  /** between requests (keepalive) */
  Idle: 3,
} as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/**
 * A request body read before its route is known (a route's vars read `post_arg.*`): the request's
 * parts until the second match, and the bytes read, forwarded first and unchanged.
 */
interface BodyMatch {
  readonly read: BodyForMatching;
  readonly head: RequestHead;
  readonly ctx: RequestContext;
  readonly request: ProxyRequest;
  readonly table: RouteTable;
}

/** Body bytes read for matching, handed to the exchange: `complete` when they are the whole body. */
interface ReadBody {
  readonly chunks: readonly Buffer[];
  readonly complete: boolean;
}

/** body bytes up to this size are copied behind the response head, for a single write */
const HEAD_COPY_MAX = 16 * 1024;
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
/** bytes held by a paused parser before the socket stops being read */
const MAX_BUFFERED = 64 * 1024;
/**
 * Reads of sockets accepted with own buffers (server/own-buffer-accept.ts) go into ONE buffer that
 * every such connection shares: a read is handled before the next one of any socket can happen, so
 * a buffer that nothing keeps a view of after its read can take the next read, whichever socket it
 * is from. An idle connection holds no buffer at all. What must outlive the read is copied out (a
 * paused parser's leftovers, body bytes written upstream or read for matching, a tunnel's bytes):
 * see `keep`. A read that fills the shared buffer (a body, most likely) is followed by reads into
 * a BULK_READ_SIZE buffer of the connection's own, given up as soon as a read does not fill it;
 * views of a bulk buffer are not copied but make the next read take a new one (`pinned`).
 */
const SHARED_READ_SIZE = 16 * 1024;
const BULK_READ_SIZE = 64 * 1024;
const sharedRead = Buffer.allocUnsafeSlow(SHARED_READ_SIZE);
const sharedReadMemory = sharedRead.buffer;

/** The buffer an accepted socket's first read goes into. */
export function sharedReadBuffer(): Buffer {
  return sharedRead;
}

function onHeadTimeout(conn: ClientConnection): void {
  conn.headTimedOut();
}

function onKeepaliveTimeout(conn: ClientConnection): void {
  conn.keepaliveTimedOut();
}

export class ClientConnection implements RequestHandler, OwnReads {
  readonly socket: Socket;
  /** a TLS connection (read once: requests on it are https) */
  private readonly tls: boolean;
  private readonly parser: RequestParser;
  private readonly settings: ConnectionSettings;
  private phase: Phase = Phase.Head;
  /** the exchange of the request being served (null: answered locally, or none) */
  private exchange: SocketExchange | null = null;
  /** a request is being served: its head was read and its response or body is not done */
  private busy = false;
  private requestEnded = false;
  private responseDone = false;
  /** the request is HEAD (answers without a body) */
  private headRequest = false;
  /** the connection closes after the current response */
  private closeAfter = false;
  /** a request body may be read now (the exchange has an upstream connection for it) */
  private bodyOpen = false;
  /** the request waits for `100 Continue` before it sends its body, and has not had it */
  private awaitingContinue = false;
  private parsing = false;
  private socketPaused = false;
  /**
   * The client's two deadlines between requests, restarted per request without timer work
   * (LazyTimer): the head must arrive within timeouts.header of its first byte (or of the
   * connection), and an idle keep-alive connection is closed after timeouts.keepalive. The socket's
   * own timeout serves only request_body (between two reads of a body).
   */
  private readonly headTimer: LazyTimer<ClientConnection>;
  private readonly keepaliveTimer: LazyTimer<ClientConnection>;
  private upgrade: { ctx: RequestContext; request: ProxyRequest; upstream: UpstreamTarget; node: UpstreamNode } | null = null;
  /** the current request's plugin run (undefined: no plugins on its route nor global rules) */
  private pluginRun: PluginRun | undefined = undefined;
  /** the current request's body is being read to match it (post_arg.*); null: not reading one */
  private bodyMatch: BodyMatch | null = null;
  private closed = false;
  /** the current request as the observers will get it (null: none, or no observers) */
  obs: ObservedRequest | null = null;
  /** the socket's byte counts when the current request began (its bytes in and out are the differences) */
  private readMark = 0;
  private writtenMark = 0;
  /** the socket's idle timeout in force (keepalive or request_body; 0 = off) */
  private socketTimer = 0;
  /** own reads: this connection's buffer for bulk reads (undefined: reads go to the shared buffer) */
  private bulkBuffer: Buffer | undefined = undefined;
  /** a view of the bulk buffer outlives the last read (queued on the upstream socket...): the next takes a new one */
  private bulkPinned = false;
  /** the last read filled its buffer (more is likely waiting: a body) */
  private lastReadFilled = false;
  /** the socket is a tunnel now (WebSocket): own reads go to its readable side, as stream reads would */
  private tunnel = false;
  private readonly onData: (chunk: Buffer) => void;
  private readonly onSocketEnd: () => void;
  private readonly onClose: () => void;
  private readonly onTimeout: () => void;
  private readonly onDrain: () => void;

  /**
   * `ownReads`: the socket was made with net's `onread` calling this connection's onRead
   * (server/own-buffer-accept.ts); otherwise it is read through its 'data' events (TLS, fallback).
   */
  constructor(socket: Socket, settings: ConnectionSettings, ownReads = false) {
    this.socket = socket;
    this.settings = settings;
    this.tls = isTls(socket);
    const maxHeaderCount = settings.policy.maxHeaderCount + 1;
    this.parser = new RequestParser(this, { maxHeaderCount });
    // connection-level listeners (one set per connection, none per request)
    this.onData = (chunk) => this.run(chunk);
    this.onSocketEnd = () => this.clientEnded();
    this.onClose = () => this.clientClosed();
    this.onTimeout = () => this.idleTimedOut();
    this.onDrain = () => this.exchange?.clientDrained();
    if (!ownReads) socket.on('data', this.onData);
    socket.on('end', this.onSocketEnd);
    socket.on('close', this.onClose);
    socket.on('timeout', this.onTimeout);
    socket.on('drain', this.onDrain);
    socket.on('error', destroyOnError);
    this.headTimer = new LazyTimer<ClientConnection>(settings.timeouts.header, onHeadTimeout, this);
    this.keepaliveTimer = new LazyTimer<ClientConnection>(settings.timeouts.keepalive, onKeepaliveTimeout, this);
    this.headTimer.restart();
  }

  /** The connection is closing or handed over: its deadlines go with it. */
  private clearDeadlines(): void {
    this.headTimer.clear();
    this.keepaliveTimer.clear();
  }

  private setSocketTimer(ms: number): void {
    if (this.socketTimer === ms) return;
    this.socketTimer = ms;
    this.socket.setTimeout(ms);
  }

  /** No request in flight: nothing is lost by closing it. */
  get idle(): boolean {
    return !this.busy;
  }

  /** Closes an idle connection (drain). */
  close(): void {
    if (!this.busy) this.socket.destroy();
  }

  // --- reading ----------------------------------------------------------------------------------

  /**
   * The buffer the next read goes into: the shared one, unless the last read filled its buffer
   * (then this connection's bulk buffer, a new one if a view of the last is kept).
   */
  nextReadBuffer(): Buffer {
    const pinned = this.bulkPinned;
    this.bulkPinned = false;
    if (!this.lastReadFilled) {
      this.bulkBuffer = undefined;
      return sharedRead;
    }
    if (this.bulkBuffer === undefined || pinned) this.bulkBuffer = Buffer.allocUnsafe(BULK_READ_SIZE);
    return this.bulkBuffer;
  }

  /** One read of a socket accepted with own buffers: `n` bytes at the start of `buf`. */
  onRead(n: number, buf: Buffer): boolean {
    this.lastReadFilled = n === buf.length;
    const chunk = buf.subarray(0, n);
    // a tunnel reads the socket as a stream now
    if (this.tunnel) return this.socket.push(this.keep(chunk));
    this.run(chunk);
    // the paused parser keeps the rest of the read (the next request, a body waiting for its upstream)
    if (this.parser.bufferedBytes > 0) {
      if (buf === sharedRead) this.parser.copyBuffered();
      else this.bulkPinned = true;
    }
    return true;
  }

  /**
   * A chunk of the current read that is kept beyond it: bytes of the shared buffer are copied
   * (the next read of any connection overwrites them); a view of the bulk buffer is kept as it is,
   * the next read going into a new one.
   */
  keep(chunk: Buffer): Buffer {
    const kept = this.writable(chunk);
    if (kept === chunk) this.bulkPinned = true;
    return kept;
  }

  /**
   * A chunk of the current read about to be written (the socket may queue it): bytes of the shared
   * buffer are copied; the caller pins a bulk buffer's view if the write was queued (pinRead).
   */
  writable(chunk: Buffer): Buffer {
    return chunk.buffer === sharedReadMemory ? Buffer.from(chunk) : chunk;
  }

  /** A view of the bulk buffer was kept after all (a write that the upstream socket queued). */
  pinRead(): void {
    this.bulkPinned = true;
  }

  // --- parsing ----------------------------------------------------------------------------------

  private run(chunk: Buffer | null): void {
    if (this.closed) return;
    if (chunk !== null && this.phase === Phase.Idle) {
      // the next request's first byte: the keep-alive timeout gives way to the head's deadline
      this.phase = Phase.Head;
      this.keepaliveTimer.stop();
      this.headTimer.restart();
    }
    this.parsing = true;
    let err: Http1ParseError | undefined;
    try {
      err = chunk === null ? this.parser.resume() : this.parser.execute(chunk);
    } finally {
      this.parsing = false;
    }
    if (err !== undefined) return this.parseError(err);
    if (this.upgrade !== null) return this.handOver();
    const parser = this.parser;
    if (parser.isPaused) {
      if (!this.socketPaused && (this.phase === Phase.Body || parser.bufferedBytes > MAX_BUFFERED)) {
        this.socketPaused = true;
        this.socket.pause();
      }
    } else if (this.socketPaused) {
      this.socketPaused = false;
      this.socket.resume();
    }
  }

  /** Goes on parsing after a pause (body wanted again, or the response to the last request done). */
  private resume(): void {
    // inside a parser callback, the callback's return value says whether to go on
    if (this.parsing) return;
    if (this.parser.isPaused) this.run(null);
    else if (this.socketPaused) {
      this.socketPaused = false;
      this.socket.resume();
    }
  }

  onHead(head: RequestHead): boolean {
    this.headTimer.stop();
    this.busy = true;
    this.pluginRun = undefined;
    this.bodyMatch = null;
    this.requestEnded = false;
    this.responseDone = false;
    this.bodyOpen = false;
    this.awaitingContinue = head.expectContinue && head.hasBody;
    this.exchange = null;
    this.headRequest = head.method === 'HEAD';
    this.closeAfter = !head.keepAlive || this.settings.owner.draining;
    const observers = this.settings.observers;
    if (observers !== undefined) this.obs = observers.begin(head.method, head.target, head.host, head.httpVersion, this.socket.remoteAddress ?? '', this.socket.remotePort ?? 0, head.rawHeaders);
    this.phase = head.hasBody ? Phase.Body : Phase.Response;
    if (head.hasBody) this.setSocketTimer(this.settings.timeouts.requestBody);
    // a forward proxy's tunnel request: not something a gateway serves (nginx answers 405 too)
    if (head.method === 'CONNECT') return this.refuse(ProxyError.METHOD_NOT_ALLOWED);
    // an expectation the gateway cannot meet (only 100-continue exists): 417, the body read and dropped
    if (head.expectOther) {
      this.answer(ProxyError.EXPECTATION_FAILED);
      return false;
    }
    const { policy, routes } = this.settings;
    const rejection = rejectRequestHead(head.method, head.target, head.httpVersion, head.rawHeaders, policy);
    if (rejection !== undefined) {
      if (rejection.closeConnection) return this.refuse(rejection.error);
      // well-formed, only refused: its body is read and dropped, keep-alive goes on
      this.answer(rejection.error);
      return false;
    }
    const socket = this.socket;
    // no peer address: the client is gone (reset before we got to it), nothing to forward for it
    if (socket.remoteAddress === undefined) {
      socket.destroy();
      return true;
    }
    const ctx = new RequestContext(head, socket);
    const request = describeRequest(ctx as never, head.host);
    if (request === undefined || (this.tls && this.settings.tlsRequestProblem?.(socket, request.hostHeader, request.path) !== undefined)) {
      this.answer(ProxyError.BAD_REQUEST);
      return false;
    }
    const table = routes();
    let matched = table.matchRoute(request);
    if (matched === undefined && request.bodyWanted === true) {
      // a route's vars read post_arg.*: read the body (bounded), then match again on the same table.
      // An upgrade's bytes are not a body to match on; a declared length over the limit is not read.
      if (head.hasBody && !head.upgrade && !(head.framing === 'length' && head.contentLength > postArgsMaxBytes())) {
        return this.readBodyForMatching(head, ctx, request, table);
      }
      withoutBody(request);
      matched = table.matchRoute(request);
    }
    return this.routed(head, ctx, request, table, matched, null);
  }

  /**
   * After the match: the route's plugins, then the upstream. Returns the parser callback's verdict.
   * `read`: body bytes already read for matching (they go upstream first).
   */
  private routed(head: RequestHead, ctx: RequestContext, request: ProxyRequest, table: RouteTable, matched: RouteMatch<CompiledRoute> | undefined, read: ReadBody | null): boolean {
    if (matched === undefined) {
      this.answer(ProxyError.ROUTE_NOT_FOUND);
      return false;
    }
    const route = matched.target;
    const obs = this.obs;
    if (obs !== null) {
      obs.routeId = matched.id;
      if (route.serviceId !== undefined) obs.serviceId = route.serviceId;
    }
    if (route.chain !== undefined || table.globalChain !== undefined) {
      const run = new PluginRun(matched.id, route.serviceId, table.globalChain, route.chain, table.consumers ?? NO_CONSUMERS, head.method, request, head.rawHeaders, isTls(this.socket) ? 'https' : 'http', head.httpVersion);
      this.pluginRun = run;
      if (obs !== null) obs.run = run;
      const verdict = run.runRequestPhases();
      if (verdict instanceof Promise) {
        // the parser waits (and the body with it) until the plugins have decided
        verdict.then(
          (answer) => this.pluginsDecided(run, answer, head, ctx, request, matched, read),
          () => this.pluginsDecided(run, { status: 500, body: { error_msg: '500 Internal Server Error' } }, head, ctx, request, matched, read),
        );
        return true;
      }
      if (verdict !== undefined) {
        this.answerPlugin(run, verdict);
        return false;
      }
    }
    return this.proxy(head, ctx, request, matched, read);
  }

  /**
   * Starts reading the body to match the request on it (post_arg.*): the body flows into a buffer
   * (onBody) until it ends (onEnd: second match with the decoded body) or passes the limit (second
   * match without post args; what was read is forwarded, the rest streams).
   */
  private readBodyForMatching(head: RequestHead, ctx: RequestContext, request: ProxyRequest, table: RouteTable): boolean {
    this.bodyMatch = { read: new BodyForMatching(), head, ctx, request, table };
    // the gateway reads the body now: request_body times a client that stops sending
    this.bodyOpen = true;
    if (this.awaitingContinue) {
      this.awaitingContinue = false;
      this.socket.write(CONTINUE, 'latin1');
    }
    return false;
  }

  /** An asynchronous plugin (a Redis counter, a key lookup) decided: answer, or go on to the upstream. */
  private pluginsDecided(run: PluginRun, answer: PluginAnswer | undefined, head: RequestHead, ctx: RequestContext, request: ProxyRequest, matched: RouteMatch<CompiledRoute>, read: ReadBody | null): void {
    if (this.closed || this.pluginRun !== run) return;
    if (answer !== undefined) this.answerPlugin(run, answer);
    else if (this.proxy(head, ctx, request, matched, read)) {
      // a WebSocket request: the socket becomes a tunnel now (the parser is paused, its bytes kept)
      if (this.upgrade !== null) this.handOver();
      return;
    }
    // a body read whole for matching: the parser is paused past its end until the response is done
    if (!this.requestEnded) this.resume();
  }

  /**
   * Sends the request to the route's upstream. Returns the parser callback's verdict: true while
   * the body must wait for an upstream connection (or the socket became a tunnel).
   */
  private proxy(head: RequestHead, ctx: RequestContext, request: ProxyRequest, matched: RouteMatch<CompiledRoute>, read: ReadBody | null): boolean {
    const upstream = matched.target.upstream;
    const balancer = upstream?.balancer;
    const pickRequest = balancer?.needsRequest === true ? pickRequestOf(this.pluginRun, head.method, request, head.rawHeaders, isTls(this.socket) ? 'https' : 'http', head.httpVersion) : undefined;
    const node = balancer?.pick(undefined, pickRequest);
    if (upstream === undefined || node === undefined) {
      this.answer(ProxyError.NO_HEALTHY_NODE);
      return false;
    }
    if (head.upgrade) {
      // chunked framing is not decoded outside the HTTP parser for a connection about to be a tunnel
      if (head.framing === 'chunked') return this.refuse(ProxyError.BAD_REQUEST);
      if (matched.target.websocket) {
        // handed over to the WebSocket relay once the parser has returned (proxy/websocket.ts)
        this.upgrade = { ctx, request, upstream, node };
        return true;
      }
      // APISIX: on a route without enable_websocket the request is plain HTTP, its Upgrade not
      // forwarded; the connection closes after it (what follows may be the other protocol's bytes)
      this.closeAfter = true;
    }
    const exchange = new SocketExchange(this, ctx, head, request, upstream, node, this.pluginRun, pickRequest, read);
    this.exchange = exchange;
    exchange.start();
    // the body waits in the socket until the exchange has an upstream connection to send it on
    return head.hasBody && !this.bodyOpen;
  }

  onBody(chunk: Buffer): boolean {
    const bodyMatch = this.bodyMatch;
    if (bodyMatch !== null) {
      if (bodyMatch.read.add(this.keep(chunk))) return false;
      // over the limit (APISIX: post_arg.* resolves nothing): match without post args; the bytes
      // read go first, the rest of the body streams once the exchange has its connection
      this.bodyMatch = null;
      const { read, head, ctx, request, table } = bodyMatch;
      withoutBody(request);
      this.bodyOpen = false;
      return this.routed(head, ctx, request, table, table.matchRoute(request), { chunks: read.chunks, complete: false });
    }
    const exchange = this.exchange;
    if (exchange === null) return false; // answered locally: the body is dropped
    return exchange.clientBody(chunk);
  }

  onEnd(): boolean {
    const bodyMatch = this.bodyMatch;
    if (bodyMatch !== null) {
      // the whole body is read: match again with its post args. Routed before requestEnded is set,
      // as when routing at the head: an answer here drops nothing more, an exchange gets the body.
      this.bodyMatch = null;
      const { read, head, ctx, request, table } = bodyMatch;
      read.decodeInto(request, ctx.headers['content-type']);
      this.routed(head, ctx, request, table, table.matchRoute(request), { chunks: read.chunks, complete: true });
    }
    this.requestEnded = true;
    if (this.phase === Phase.Body) {
      this.phase = Phase.Response;
      this.setSocketTimer(0);
    }
    this.exchange?.clientBodyEnd();
    if (!this.responseDone) return true;
    this.nextRequest();
    return this.closed || this.closeAfter;
  }

  /** The exchange has an upstream connection: the body may flow (after `100 Continue` if asked). */
  openBody(expectContinue: boolean): void {
    if (this.bodyOpen) return;
    this.bodyOpen = true;
    // (not when the body was read for matching: its 100 went out then)
    if (expectContinue && this.awaitingContinue) this.socket.write(CONTINUE, 'latin1');
    this.awaitingContinue = false;
    this.resume();
  }

  /** The upstream took the body bytes it had refused: read on. */
  bodyDrained(): void {
    // a body read whole for matching: the parser is paused past its end until the response is done
    if (!this.requestEnded) this.resume();
  }

  // --- answers ----------------------------------------------------------------------------------

  /** The gateway's own answer (an error response); the request's body, if any, is dropped. */
  answer(kind: ProxyErrorKind): void {
    // the client may send its body or not, having had no 100: what follows cannot be framed (node:http closes too)
    if (this.awaitingContinue) this.closeAfter = true;
    if (this.obs !== null) this.obs.status = kind.status;
    writeSocketError(this.socket, kind, this.closeAfter, this.headRequest);
    this.responseFinished(!this.closeAfter);
  }

  /** A plugin's own answer (header_filter runs on it); the request's body, if any, is dropped. */
  private answerPlugin(run: PluginRun, answer: PluginAnswer): void {
    if (this.awaitingContinue) this.closeAfter = true;
    const { status, headers, body } = localAnswer(run, answer);
    if (this.obs !== null) this.obs.status = status;
    writeLocalResponse(this.socket, status, headers, body, !this.keepAlive, this.headRequest);
    this.responseFinished(!this.closeAfter);
  }

  /** An answer after which the connection closes at once: nothing after this request is parsed. */
  private refuse(kind: ProxyErrorKind): true {
    this.closeAfter = true;
    this.responseDone = true;
    this.closed = true;
    this.clearDeadlines();
    this.stopListening();
    writeRawError(this.socket, kind);
    if (this.obs !== null) {
      this.obs.status = kind.status;
      this.observed(false);
    }
    return true;
  }

  /** The observers get the current request (once): its bytes are the socket's counts since it began. */
  private observed(aborted: boolean): void {
    const obs = this.obs!;
    this.obs = null;
    const socket = this.socket;
    const read = socket.bytesRead;
    const written = bytesWrittenOf(socket);
    obs.bytesIn = read - this.readMark;
    obs.bytesOut = written - this.writtenMark;
    this.readMark = read;
    this.writtenMark = written;
    this.settings.observers!.finish(obs, aborted);
  }

  /** Whether the response being written may leave the connection open. */
  get keepAlive(): boolean {
    return !this.closeAfter && !this.settings.owner.draining;
  }

  get isHeadRequest(): boolean {
    return this.headRequest;
  }

  /** The last byte of the response is written. */
  responseFinished(keepAlive: boolean): void {
    if (this.obs !== null) this.observed(false);
    if (this.pluginRun !== undefined) {
      this.pluginRun.runLog();
      this.pluginRun = undefined;
    }
    if (!keepAlive) this.closeAfter = true;
    this.responseDone = true;
    this.exchange = null;
    this.bodyOpen = true;
    // the rest of a body nobody reads any more is still parsed (and dropped) to find the next request
    if (!this.requestEnded) {
      if (this.closeAfter) this.endConnection();
      else this.resume();
      return;
    }
    this.nextRequest();
    this.resume();
  }

  private nextRequest(): void {
    this.busy = false;
    if (this.closeAfter || this.settings.owner.draining) return this.endConnection();
    this.phase = Phase.Idle;
    this.setSocketTimer(0);
    this.keepaliveTimer.restart();
    this.settings.owner.connectionIdle(this);
  }

  /**
   * FIN after what was written; what the client still sends is read and dropped for a while
   * (lingering close), then the socket is destroyed (never left half-closed).
   */
  private endConnection(): void {
    if (this.closed) return;
    this.closed = true;
    this.busy = false;
    this.clearDeadlines();
    this.stopListening();
    lingeringClose(this.socket);
  }

  /** The connection is closing or handed over: its own socket listeners go ('close' stays). */
  private stopListening(): void {
    const socket = this.socket;
    socket.off('data', this.onData);
    socket.off('end', this.onSocketEnd);
    socket.off('timeout', this.onTimeout);
    socket.off('drain', this.onDrain);
    socket.setTimeout(0);
    this.socketTimer = 0;
  }

  /** The request's bytes stopped making sense mid-way: cut the connection. */
  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private parseError(err: Http1ParseError): void {
    const exchange = this.exchange;
    if (exchange !== null && !this.requestEnded) {
      // the bad bytes are in this request's own body: the upstream request is incomplete
      if (exchange.abortForClient()) return this.destroy();
    } else if (this.busy && !this.responseDone) {
      return this.destroy();
    }
    this.refuse(errorForStatus(err.status));
  }

  // --- timeouts and the client going away -------------------------------------------------------

  headTimedOut(): void {
    if (this.closed || this.phase !== Phase.Head) return;
    if (this.busy) return this.destroy();
    this.refuse(ProxyError.REQUEST_TIMEOUT);
  }

  keepaliveTimedOut(): void {
    if (!this.closed && this.phase === Phase.Idle) this.destroy();
  }

  /** The socket's timeout: request_body (the only one it serves). */
  private idleTimedOut(): void {
    if (this.phase !== Phase.Body) return;
    // request_body: the body is not being read (no upstream connection yet, or the upstream is slow
    // to take it): the client cannot send, so it is not the one that is late
    if (!this.bodyOpen || this.parser.isPaused) return;
    const exchange = this.exchange;
    if (exchange !== null && exchange.abortForClient()) return this.destroy();
    if (this.responseDone) return this.destroy();
    this.refuse(ProxyError.REQUEST_TIMEOUT);
  }

  private clientEnded(): void {
    const err = this.parser.finish();
    if (err !== undefined || (this.busy && !this.requestEnded)) {
      // gone mid-request: nobody to answer, the upstream request is abandoned
      this.exchange?.abortForClient();
      return this.destroy();
    }
    // a FIN after complete requests: answer them, then close
    this.closeAfter = true;
    if (!this.busy) this.endConnection();
  }

  private clientClosed(): void {
    this.closed = true;
    this.bodyMatch = null;
    // a request in flight: the client left before its response was complete
    if (this.obs !== null) this.observed(true);
    if (this.pluginRun !== undefined) {
      this.pluginRun.runLog();
      this.pluginRun = undefined;
    }
    this.clearDeadlines();
    this.exchange?.clientGone();
    this.exchange = null;
    this.settings.owner.connectionClosed(this);
  }

  // --- WebSocket --------------------------------------------------------------------------------

  /** After a WebSocket request's head: the rest of the socket belongs to the relay. */
  private handOver(): void {
    const { ctx, request, upstream, node } = this.upgrade!;
    this.upgrade = null;
    this.closed = true;
    this.tunnel = true;
    const socket = this.socket;
    const rest = this.keep(this.parser.detach() ?? Buffer.alloc(0));
    socket.pause();
    this.clearDeadlines();
    this.stopListening();
    this.settings.owner.upgraded(socket);
    if (this.obs !== null) {
      // a tunnel from here on: the request is reported as switched (the relay answers on its own)
      this.obs.status = 101;
      this.observed(false);
    }
    const body = upgradeRequestBody(ctx as never, socket, rest);
    if (body === undefined) return writeRawError(socket, ProxyError.BAD_REQUEST);
    proxyUpgrade(ctx as never, socket, body, request, upstream, node, this.pluginRun);
  }
}

function onSlotTimeout(exchange: SocketExchange): void {
  exchange.slotTimedOut();
}

const nodeBusyEvent = -1;

/**
 * One proxied request on the socket transport: the parser handler of its upstream response and the
 * user of its upstream connection, one object with its methods on the prototype.
 */
class SocketExchange implements UpstreamUser, NodeWaiter {
  private readonly conn: ClientConnection;
  private readonly socket: Socket;
  private readonly head: RequestHead;
  private readonly upstream: UpstreamTarget;
  private readonly headers: string[];
  private readonly hostIndex: number;
  private readonly clientHost: string | undefined;
  private readonly path: string;
  /** the header section after the request line, rebuilt only when the Host changes */
  private headerText: string;
  private node: UpstreamNode;
  private pool: NodePool1 | undefined;
  private upstreamConn: UpstreamConnection | null = null;
  private retries: NodeRetries | undefined;
  private brokenReuseRetry = true;
  private holdsSlot = false;
  private slotTimer: NodeJS.Timeout | undefined;
  /** the request head was written to an upstream connection (its body may have followed) */
  private written = false;
  private keepUpstream = false;
  /** the whole request body was written upstream */
  private bodySent = false;
  private response: ResponseHead | null = null;
  private headWritten = false;
  /** the response's body is chunk-encoded for the client (its upstream framing was chunked or close) */
  private chunked = false;
  private keepClient = true;
  private clientPaused = false;
  private done = false;
  /** the response body goes through the plugins' body_filter */
  private filtered = false;
  private readonly pickRequest: PickRequest | undefined;
  /** the balancer that picked the node (its accounting hooks; a config change may replace the upstream's) */
  private readonly balancer: Balancer;
  /** when the current attempt's request was written (0: no attempt in flight) */
  private attemptAt = 0;
  /** a plugin set a status without a body (204, 304): the upstream's body is not sent */
  private bodyDropped = false;
  /** the request's plugins (header_filter, body_filter on the response) */
  private readonly run: PluginRun | undefined;
  /** the method sent upstream (a plugin may change it) */
  private readonly method: string;
  /** the Host a plugin set (it stays whatever pass_host says for another node) */
  private readonly pluginHost: string | undefined;
  /** body bytes read for matching (post_arg.*), written after the head on every attempt */
  private readonly read: ReadBody | null;

  constructor(
    conn: ClientConnection,
    ctx: RequestContext,
    head: RequestHead,
    request: ProxyRequest,
    upstream: UpstreamTarget,
    node: UpstreamNode,
    run: PluginRun | undefined,
    pickRequest: PickRequest | undefined,
    read: ReadBody | null,
  ) {
    this.conn = conn;
    this.read = read;
    this.pickRequest = pickRequest;
    this.balancer = upstream.balancer;
    this.socket = conn.socket;
    this.head = head;
    this.upstream = upstream;
    this.node = node;
    this.clientHost = head.host;
    this.run = run;
    this.path = run === undefined ? request.forwardPath : run.upstream.uri;
    this.method = run === undefined ? head.method : run.upstream.method;
    this.pluginHost = run?.upstream.host;
    const built = upstreamHeaders(ctx as never, request, upstream, node, false, conn.obs?.upstreamTrace, conn.obs?.clientTrace);
    // the body's framing is the parser's verdict, written by us: a Content-Length the client sent is
    // dropped (and one a Connection header named, dropped by upstreamHeaders, is not missed)
    const headers = withoutContentLength(built.headers);
    // plugins cannot add framing headers (run.ts), so the list stays without a Content-Length
    run?.applyUpstreamEdits(headers);
    // Host is the last header upstreamHeaders adds
    this.hostIndex = headers.length - 1;
    this.headers = headers;
    if (head.framing === 'chunked') headers.push('Transfer-Encoding', 'chunked');
    else if (head.framing === 'length') headers.push('Content-Length', String(head.contentLength));
    else if (head.method === 'POST' || head.method === 'PUT' || head.method === 'PATCH') {
      // as undici: a request of a method that carries a body says it has none
      headers.push('Content-Length', '0');
    }
    this.headerText = headerLines(this.headers);
  }

  start(): void {
    if (this.upstream.retryTimeout > 0) this.retries = new NodeRetries(this.upstream, this.pickRequest);
    this.dispatchTo(this.node);
  }

  private dispatchTo(node: UpstreamNode): void {
    if (node !== this.node) {
      this.node = node;
      if (this.upstream.passHost === 'node' && this.pluginHost === undefined) {
        this.headers[this.hostIndex] = upstreamHost(this.upstream, node, this.clientHost);
        this.headerText = headerLines(this.headers);
      }
    }
    this.written = false;
    const servername = this.upstream.scheme === 'https' ? sniName(this.headers[this.hostIndex]!) : undefined;
    const pool = (this.pool = http1Pools.nodePool(this.upstream, node, servername));
    if (pool.gate.tryEnter()) return this.send();
    // the node is at its cap: wait for a slot, at most as long as a connection may take to open
    pool.gate.enqueue(this);
    this.slotTimer = setTimeout(onSlotTimeout, this.upstream.timeout.connect, this);
  }

  private send(): void {
    this.holdsSlot = true;
    // keepalive_pool.size bounds the idle connections: beyond that many in flight (counted as the
    // request enters, as the node transport does), the connection is closed after its response
    this.keepUpstream = this.pool!.gate.active <= this.upstream.keepalive.size;
    // counted from here, before a connection is open: a burst is seen at once (least_conn)
    this.attemptAt = performance.now();
    const obs = this.conn.obs;
    if (obs !== null) attemptStarted(obs, this.upstream, this.node);
    this.balancer.started?.(this.node);
    this.pool!.acquire(this);
  }

  admitted(): void {
    clearTimeout(this.slotTimer);
    if (this.done) return void this.pool!.gate.leave();
    this.send();
  }

  slotTimedOut(): void {
    if (!this.pool!.gate.remove(this) || this.done) return;
    this.failed(Failure.NodeBusy);
  }

  private releaseSlot(): void {
    if (!this.holdsSlot) return;
    this.holdsSlot = false;
    this.pool!.gate.leave();
  }

  // --- upstream connection ----------------------------------------------------------------------

  upstreamReady(uc: UpstreamConnection): void {
    if (this.done) {
      uc.release(uc.open);
      this.releaseSlot();
      return;
    }
    this.upstreamConn = uc;
    const head = this.head;
    this.keepUpstream = this.keepUpstream && this.pool!.mayKeep(uc.requests + 1);
    uc.expect(this.method, this.upstream.timeout.read);
    // the head in one write
    uc.socket.write(
      this.method + ' ' + this.path + ' HTTP/1.1\r\n' + this.headerText + (this.keepUpstream ? CRLF : 'Connection: close\r\n\r\n'),
      'latin1',
    );
    this.written = true;
    const read = this.read;
    if (read !== null) {
      // the bytes read for matching, as received (re-chunked when the body came chunked)
      let ok = true;
      for (const chunk of read.chunks) ok = this.writeRequestBody(uc.socket, chunk);
      if (read.complete) {
        if (head.framing === 'chunked') uc.socket.write(LAST_CHUNK, 'latin1');
        this.bodySent = true;
        if (!ok) uc.writeBlocked(this.upstream.timeout.send);
        return;
      }
      if (!ok) uc.writeBlocked(this.upstream.timeout.send);
    }
    if (head.hasBody) this.conn.openBody(head.expectContinue);
    else this.bodySent = true;
  }

  /** One piece of the request body, in the request's framing; false when the socket's buffer is full. */
  private writeRequestBody(socket: Socket, chunk: Buffer): boolean {
    if (this.head.framing !== 'chunked') return socket.write(chunk);
    if (chunk.length === 0) return true;
    socket.cork();
    socket.write(chunkHeader(chunk.length), 'latin1');
    socket.write(chunk);
    const ok = socket.write(CRLF, 'latin1');
    socket.uncork();
    return ok;
  }

  upstreamDrained(): void {
    if (!this.done) this.conn.bodyDrained();
  }

  /** The attempt on `this.node` ended: the balancer's accounting (least_conn counts, ewma latency). */
  private attemptEnded(failed: boolean): void {
    if (this.attemptAt === 0) return;
    const ms = performance.now() - this.attemptAt;
    this.attemptAt = 0;
    this.balancer.done?.(this.node, ms, failed);
  }

  clientBody(chunk: Buffer): boolean {
    const uc = this.upstreamConn;
    if (uc === null || this.done) return false;
    const socket = uc.socket;
    const data = this.conn.writable(chunk);
    let ok: boolean;
    if (this.head.framing !== 'chunked') ok = socket.write(data);
    else {
      socket.cork();
      socket.write(chunkHeader(data.length), 'latin1');
      socket.write(data);
      ok = socket.write(CRLF, 'latin1');
      socket.uncork();
    }
    // the socket queued (part of) a view of the client connection's bulk read buffer
    if (data === chunk && socket.writableLength > 0) this.conn.pinRead();
    // the upstream is not taking the body as fast as it comes: timeout.send runs until it does
    if (!ok) uc.writeBlocked(this.upstream.timeout.send);
    return !ok;
  }

  clientBodyEnd(): void {
    const uc = this.upstreamConn;
    // (bodySent: a body read whole for matching was written with the head)
    if (uc === null || this.done || this.bodySent) return;
    if (this.head.framing === 'chunked') uc.socket.write(LAST_CHUNK, 'latin1');
    this.bodySent = true;
  }

  upstreamFailed(event: UpstreamEvent, _err: Error | undefined): void {
    this.attemptEnded(true);
    const reused = this.upstreamConn?.reused === true;
    this.upstreamConn = null;
    this.releaseSlot();
    if (this.done) return;
    this.failed(eventFailure(event), reused);
  }

  private failed(failure: Failure, reused = false): void {
    this.attemptEnded(true);
    const health = this.upstream.health;
    if (health !== undefined) {
      const outcome = failureOutcome(failure);
      if (outcome !== undefined) health.observe(this.node, outcome);
    }
    if (this.response !== null) {
      // the upstream broke mid-response: a cut, so the client sees a truncated response
      if (this.headWritten) return this.cut();
      this.done = true;
      return this.conn.answer(failureResponse(failure === Failure.Broken ? Failure.Protocol : failure));
    }
    if (this.retryable(failure)) {
      const next = this.nextNode(failure, reused);
      if (next !== undefined) return this.dispatchTo(next);
    }
    this.done = true;
    this.conn.answer(failureResponse(failure));
  }

  /** Same rules as the node transport (proxy/http.ts). */
  private retryable(failure: Failure): boolean {
    if (failure === Failure.BadRequest || failure === Failure.ReadTimeout || failure === Failure.Protocol) return false;
    if (!this.written) return true;
    if (failure !== Failure.Broken || this.head.hasBody) return false;
    const method = this.head.method;
    return method !== 'POST' && method !== 'PATCH';
  }

  private nextNode(failure: Failure, reused: boolean): UpstreamNode | undefined {
    const retries = (this.retries ??= new NodeRetries(this.upstream, this.pickRequest));
    if (!retries.inTime()) return undefined;
    if (failure === Failure.Broken && this.written && reused && this.brokenReuseRetry) {
      // probably a kept-alive connection the upstream closed as we reused it: same node is fine
      this.brokenReuseRetry = false;
      return this.node;
    }
    return retries.next(this.node);
  }

  // --- upstream response (ResponseHandler) ------------------------------------------------------

  onInterim(head: ResponseHead): boolean {
    // 102 Processing, 103 Early Hints: passed on to an HTTP/1.1 client before the final response
    // (RFC 9110 §15.2: never to an HTTP/1.0 one). A 100 from the upstream never gets here: the
    // client's Expect handshake is the gateway's own (continue-filter drops upstream 100s).
    if (this.done || this.headWritten || this.head.httpVersion !== '1.1' || head.status === 100) return false;
    const reason = head.reason === '' ? (STATUS_CODES[head.status] ?? '') : head.reason;
    this.socket.write('HTTP/1.1 ' + head.status + ' ' + reason + CRLF + headerLines(clientHeaderList(head.rawHeaders)) + CRLF, 'latin1');
    return false;
  }

  onHead(head: ResponseHead): boolean {
    if (this.done) return true;
    if (head.upgrade) {
      // a 101 to a request that asked for no upgrade
      const uc = this.upstreamConn;
      this.upstreamConn = null;
      uc?.abort();
      this.releaseSlot();
      this.failed(Failure.Protocol);
      return true;
    }
    if (head.status === 204 && hasContentLength(head.rawHeaders)) {
      // a 204 that announces a body: its bytes would be read as the next response (node transport: 502 too)
      const uc = this.upstreamConn;
      this.upstreamConn = null;
      uc?.abort();
      this.releaseSlot();
      this.failed(Failure.Protocol);
      return true;
    }
    this.response = head;
    const obs = this.conn.obs;
    if (obs !== null) obs.upstreamStatus = head.status;
    this.upstream.health?.observeStatus(this.node, head.status);
    return false;
  }

  /** Writes the held response head (with `first`, the first body bytes, in the same flush). */
  private writeHead(first: Buffer | null): boolean {
    const response = this.response!;
    this.headWritten = true;
    const conn = this.conn;
    let keep = conn.keepAlive;
    let noBody = conn.isHeadRequest || response.framing === 'none';
    let status = response.status;
    let reason = response.reason === '' ? (STATUS_CODES[status] ?? '') : response.reason;
    let headers = clientHeaderList(response.rawHeaders);
    const run = this.run;
    if (run !== undefined && run.hasResponsePhases) {
      status = run.runHeaderFilter(status, headers, false);
      if (status !== response.status) {
        reason = STATUS_CODES[status] ?? '';
        if (status === 204 || status === 304) {
          // a plugin made it a status without a body: the upstream's body is read and dropped, or
          // the client would take its bytes for the next response (a 204 has no length either)
          noBody = true;
          this.bodyDropped = true;
          if (status === 204) headers = withoutContentLength(headers);
        }
      }
      // a body filter changes the length: the body goes chunked (or close-delimited)
      if (run.hasBodyFilter) {
        headers = withoutContentLength(headers);
        this.filtered = !noBody;
      }
    }
    const obs = conn.obs;
    if (obs !== null) obs.status = status;
    let text = 'HTTP/1.1 ' + status + ' ' + reason + CRLF;
    text += headerLines(headers);
    // RFC 9110 §6.6.1: a recipient with a clock forwarding a response without Date adds one
    if (!hasHeader(response.rawHeaders, 'date')) text += 'Date: ' + httpDate() + CRLF;
    if (!noBody && (response.framing !== 'length' || this.filtered)) {
      if (this.head.httpVersion === '1.1') {
        this.chunked = true;
        text += 'Transfer-Encoding: chunked\r\n';
      } else {
        // an HTTP/1.0 client: the body ends with the connection
        keep = false;
      }
    }
    this.keepClient = keep;
    text += keep ? 'Connection: keep-alive\r\n\r\n' : 'Connection: close\r\n\r\n';
    const socket = this.socket;
    if (first === null || this.bodyDropped) return socket.write(text, 'latin1');
    if (!this.chunked && first.length <= HEAD_COPY_MAX) {
      // head and first bytes in one buffer: one plain write, not cork + two writes + writev (the
      // stream layer's JS for those costs more than copying a small body)
      const out = Buffer.allocUnsafe(text.length + first.length);
      out.write(text, 0, text.length, 'latin1');
      out.set(first, text.length);
      return socket.write(out);
    }
    socket.cork();
    socket.write(text, 'latin1');
    const ok = this.writeBody(first);
    socket.uncork();
    return ok;
  }

  private writeBody(chunk: Buffer): boolean {
    const socket = this.socket;
    if (!this.chunked) return socket.write(chunk);
    socket.write(chunkHeader(chunk.length), 'latin1');
    socket.write(chunk);
    return socket.write(CRLF, 'latin1');
  }

  onBody(chunk: Buffer): boolean {
    if (this.done) return false;
    if (this.bodyDropped) return false;
    if (this.filtered || (!this.headWritten && this.run?.hasBodyFilter === true)) {
      if (!this.headWritten) this.writeHead(null);
      if (this.filtered) {
        // a body filter may keep what it was given: the upstream's read buffer is not reused
        this.upstreamConn?.pinReadBuffer();
        chunk = this.run!.runBodyFilter(chunk, false);
        if (chunk.length === 0) return false;
      }
      if (this.bodyDropped) return false;
    }
    let ok: boolean;
    if (!this.headWritten) ok = this.writeHead(chunk);
    else if (this.chunked) {
      this.socket.cork();
      ok = this.writeBody(chunk);
      this.socket.uncork();
    } else ok = this.socket.write(chunk);
    // `chunk` is a view of the upstream connection's read buffer: a write the socket could not
    // finish now still points into it, so the next read must go into another buffer
    if (this.socket.writableLength > 0) this.upstreamConn?.pinReadBuffer();
    if (!ok && !this.clientPaused) {
      // backpressure: the upstream socket is not read until the client drains
      this.clientPaused = true;
      this.upstreamConn?.pauseReading();
    }
    return false;
  }

  clientDrained(): void {
    if (!this.clientPaused) return;
    this.clientPaused = false;
    this.upstreamConn?.resumeReading();
  }

  onEnd(): boolean {
    if (this.done) return false;
    if (!this.headWritten) this.writeHead(null);
    if (this.filtered) {
      const last = this.run!.runBodyFilter(Buffer.alloc(0), true);
      if (last.length > 0) this.chunked ? (this.socket.cork(), this.writeBody(last), this.socket.uncork()) : this.socket.write(last);
    }
    if (this.chunked) this.socket.write(LAST_CHUNK, 'latin1');
    this.done = true;
    this.attemptEnded(false);
    const obs = this.conn.obs;
    if (obs !== null) upstreamEnded(obs);
    const uc = this.upstreamConn;
    this.upstreamConn = null;
    const response = this.response!;
    // after a response that came before the whole request body was sent, the connection is unusable
    const gate = this.holdsSlot ? this.pool!.gate : undefined;
    this.holdsSlot = false;
    if (uc === null) gate?.leave();
    else uc.release(this.keepUpstream && response.keepAlive && this.bodySent, gate);
    this.conn.responseFinished(this.keepClient);
    return false;
  }

  // --- the client side going away ---------------------------------------------------------------

  /** The client left or broke its request: the upstream request is abandoned. True if the response had started. */
  abortForClient(): boolean {
    const started = this.headWritten;
    this.abandon();
    return started;
  }

  clientGone(): void {
    this.abandon();
  }

  private abandon(): void {
    if (this.done) return;
    this.done = true;
    this.attemptEnded(false);
    clearTimeout(this.slotTimer);
    if (this.pool !== undefined && !this.holdsSlot) this.pool.gate.remove(this);
    const uc = this.upstreamConn;
    this.upstreamConn = null;
    uc?.abort();
    this.releaseSlot();
  }

  private cut(): void {
    this.abandon();
    this.conn.destroy();
  }
}

/** A Content-Length other than 0 among the headers. */
function hasContentLength(raw: readonly string[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length' && raw[i + 1] !== '0') return true;
  }
  return false;
}

function withoutContentLength(headers: string[]): string[] {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length') {
      const kept = headers.slice(0, i);
      for (let j = i + 2; j < headers.length; j += 2) {
        const other = headers[j]!;
        if (other.length !== 14 || other.toLowerCase() !== 'content-length') kept.push(other, headers[j + 1]!);
      }
      return kept;
    }
  }
  return headers;
}

function eventFailure(event: UpstreamEvent | typeof nodeBusyEvent): Failure {
  switch (event) {
    case UpstreamEvent.ConnectFailed:
      return Failure.Connect;
    case UpstreamEvent.ConnectTimeout:
      return Failure.ConnectTimeout;
    case UpstreamEvent.Broken:
      return Failure.Broken;
    case UpstreamEvent.ReadTimeout:
    case UpstreamEvent.SendTimeout:
      return Failure.ReadTimeout;
    case UpstreamEvent.Protocol:
      return Failure.Protocol;
    default:
      return Failure.NodeBusy;
  }
}
