import { performance } from 'node:perf_hooks';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ProxyError } from '../errors.ts';
import type { RouteTable } from '../runtime/types.ts';
import { pools as sharedPools, type ConnectionPools, type NodePool, type NodeWaiter } from '../upstream/pools.ts';
import type { Balancer, PickRequest, UpstreamNode, UpstreamTarget } from '../upstream/types.ts';
import { classifyFailure, Failure, failureOutcome, failureResponse, nodeBusy } from './failures.ts';
import { clientHeaders, upstreamHeaders, upstreamHost } from './headers.ts';
import { describeRequest, type ProxyRequest } from './request.ts';
import { BodyForMatching, declaredTooLarge, withoutBody } from './post-args.ts';
import { NodeRetries } from './retries.ts';
import { sendError, writeLocalResponse, writeRawError } from './responses.ts';
import { lingeringClose } from './lingering-close.ts';
import { destroyOnError, proxyUpgrade, responseOnSocket, upgradeRequestBody } from './websocket.ts';
import { NO_CONSUMERS } from '../plugins/consumers.ts';
import { localAnswer, pickRequestOf, PluginRun } from '../plugins/run.ts';
import type { PluginAnswer } from '../plugins/types.ts';
import type { CompiledRoute } from '../runtime/types.ts';
import { attemptStarted, bytesWrittenOf, upstreamEnded, type ObservedRequest, type RequestObservers } from '../observability/observers.ts';

/** The observed request of a response (node transport), kept on the response object. */
const OBSERVED = Symbol('portico.observed');
type Observed = ServerResponse & { [OBSERVED]?: ObservedRequest };
/** A socket's byte counts when its current request began. */
const MARKS = Symbol('portico.byteMarks');
type Marked = Socket & { [MARKS]?: { read: number; written: number } };

/** The observers get a node:http request once its response is over (or the client gone). */
export function observeNodeRequest(observers: RequestObservers, req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket as Marked;
  const obs = observers.begin(req.method!, req.url!, req.headers.host, req.httpVersion, socket.remoteAddress ?? '', socket.remotePort ?? 0, req.rawHeaders);
  (res as Observed)[OBSERVED] = obs;
  res.once('close', () => {
    obs.status = res.headersSent ? res.statusCode : 0;
    const marks = (socket[MARKS] ??= { read: 0, written: 0 });
    // (an HTTP/2 stream's socket is the session's: its counts are the connection's, not the request's)
    const read = socket.bytesRead ?? 0;
    const written = bytesWrittenOf(socket);
    obs.bytesIn = read - marks.read;
    obs.bytesOut = written - marks.written;
    marks.read = read;
    marks.written = written;
    observers.finish(obs, !res.writableFinished);
  });
}

/** A plugin's own answer, after header_filter. */
function sendPluginAnswer(res: ServerResponse, run: PluginRun, answer: PluginAnswer): void {
  if (res.destroyed || res.headersSent) return;
  const { status: final, headers, body } = localAnswer(run, answer);
  // 1xx, 204 and 304 have no body, nor a length (RFC 9110 §8.6)
  const bodyless = final < 200 || final === 204 || final === 304;
  if (!bodyless) headers.push('Content-Length', String(body.length));
  try {
    res.writeHead(final, headers);
  } catch {
    return sendError(res, ProxyError.UPSTREAM_UNAVAILABLE);
  }
  res.end(bodyless ? undefined : body);
}

function withoutHeader(headers: string[], lower: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i]!.toLowerCase() !== lower) out.push(headers[i]!, headers[i + 1]!);
  return out;
}

export interface HttpProxyOptions {
  /** the route table in force; called once per request, which then keeps that table to the end */
  routes: () => RouteTable;
  /** keep-alive pools to use (default: the process-wide ones from upstream/pools.ts) */
  pools?: ConnectionPools;
  /** who is told of each finished request (metrics, access log, tracing) */
  observers?: RequestObservers;
}

export interface HttpProxy {
  /** node:http 'request' listener */
  handleRequest(req: IncomingMessage, res: ServerResponse): void;
  /** node:http 'upgrade' listener (WebSocket when the route enables it, else plain HTTP: proxy/websocket.ts) */
  handleUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void;
}

export function createHttpProxy(options: HttpProxyOptions): HttpProxy {
  const { routes, observers } = options;
  const pools = options.pools ?? sharedPools;
  const proxyTo = (req: IncomingMessage, res: ServerResponse, request: ProxyRequest, route: CompiledRoute, run: PluginRun | undefined, body: Readable | undefined): void => {
    if (res.destroyed) return;
    const upstream = route.upstream;
    // APISIX: "missing upstream configuration in Route or Service" → 503
    if (upstream === undefined) return sendError(res, ProxyError.NO_HEALTHY_NODE);
    const pickRequest = upstream.balancer.needsRequest === true ? pickRequestOf(run, req.method!, request, req.rawHeaders, (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http', req.httpVersion) : undefined;
    const node = upstream.balancer.pick(undefined, pickRequest);
    if (node === undefined) return sendError(res, ProxyError.NO_HEALTHY_NODE);
    new HttpExchange(req, res, request, upstream, pools, node, body, run, pickRequest).start();
  };
  /** After the match: the route's plugins, then the upstream. `body`: the request body when read for matching. */
  const routed = (req: IncomingMessage, res: ServerResponse, request: ProxyRequest, table: RouteTable, matched: ReturnType<RouteTable['matchRoute']>, body: Readable | undefined): void => {
    if (res.destroyed) return;
    if (matched === undefined) return sendError(res, ProxyError.ROUTE_NOT_FOUND);
    const route = matched.target;
    const obs = (res as Observed)[OBSERVED];
    if (obs !== undefined) {
      obs.routeId = matched.id;
      if (route.serviceId !== undefined) obs.serviceId = route.serviceId;
    }
    if (route.chain === undefined && table.globalChain === undefined) return proxyTo(req, res, request, route, undefined, body);
    const run = new PluginRun(matched.id, route.serviceId, table.globalChain, route.chain, table.consumers ?? NO_CONSUMERS, req.method!, request, req.rawHeaders, (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http', req.httpVersion);
    if (obs !== undefined) obs.run = run;
    res.once('close', () => run.runLog());
    const verdict = run.runRequestPhases();
    if (verdict instanceof Promise) {
      verdict.then(
        (answer) => (answer === undefined ? proxyTo(req, res, request, route, run, body) : sendPluginAnswer(res, run, answer)),
        () => sendError(res, ProxyError.UPSTREAM_UNAVAILABLE),
      );
      return;
    }
    if (verdict !== undefined) return sendPluginAnswer(res, run, verdict);
    proxyTo(req, res, request, route, run, body);
  };
  return {
    handleRequest(req, res) {
      // no peer address: the client is gone (reset before we got to it), nothing to forward for it
      if (req.socket.remoteAddress === undefined) return void res.destroy();
      if (observers !== undefined) observeNodeRequest(observers, req, res);
      const request = describeRequest(req);
      if (request === undefined) return sendError(res, ProxyError.BAD_REQUEST);
      const table = routes();
      const matched = table.matchRoute(request);
      // a route's vars read post_arg.*: match again on the same table once the body is read
      if (matched === undefined && request.bodyWanted === true) {
        return readBodyForMatching(req, res, request, (body) => routed(req, res, request, table, table.matchRoute(request), body));
      }
      routed(req, res, request, table, matched, undefined);
    },
    handleUpgrade(req, socket, head) {
      socket.on('error', destroyOnError);
      if (req.socket.remoteAddress === undefined) return void socket.destroy();
      const request = describeRequest(req);
      if (request === undefined) return writeRawError(socket, ProxyError.BAD_REQUEST);
      const table = routes();
      let matched = table.matchRoute(request);
      if (matched === undefined && request.bodyWanted === true) {
        // an upgrade request's bytes after its head are not a body to match on: no post args
        withoutBody(request);
        matched = table.matchRoute(request);
      }
      if (matched === undefined) return writeRawError(socket, ProxyError.ROUTE_NOT_FOUND);
      const route = matched.target;
      const proceed = (run: PluginRun | undefined): void => {
        if (socket.destroyed) return;
        const upstream = route.upstream;
        if (upstream === undefined) return writeRawError(socket, ProxyError.NO_HEALTHY_NODE);
        const pickRequest = upstream.balancer.needsRequest === true ? pickRequestOf(run, req.method!, request, req.rawHeaders, (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http', req.httpVersion) : undefined;
        const node = upstream.balancer.pick(undefined, pickRequest);
        if (node === undefined) return writeRawError(socket, ProxyError.NO_HEALTHY_NODE);
        const body = upgradeRequestBody(req, socket, head);
        if (body === undefined) return writeRawError(socket, ProxyError.BAD_REQUEST);
        if (route.websocket) return proxyUpgrade(req, socket, body, request, upstream, node, run);
        // APISIX: on a route without enable_websocket the request is plain HTTP, its Upgrade not forwarded
        const res = responseOnSocket(req, socket);
        if (run !== undefined) res.once('close', () => run.runLog());
        new HttpExchange(req, res, request, upstream, pools, node, body ?? undefined, run, pickRequest).start();
      };
      if (route.chain === undefined && table.globalChain === undefined) return proceed(undefined);
      // an upgrade request runs the route's plugins like any other (an auth plugin must not be bypassed)
      const run = new PluginRun(matched.id, route.serviceId, table.globalChain, route.chain, table.consumers ?? NO_CONSUMERS, req.method!, request, req.rawHeaders, (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http', req.httpVersion);
      const decided = (answer: PluginAnswer | undefined): void => {
        if (answer === undefined) return proceed(run);
        const { status, headers, body } = localAnswer(run, answer);
        run.runLog();
        writeLocalResponse(socket, status, headers, body, true, req.method === 'HEAD');
        lingeringClose(socket);
      };
      const verdict = run.runRequestPhases();
      if (verdict instanceof Promise) verdict.then(decided, () => writeRawError(socket, ProxyError.UPSTREAM_UNAVAILABLE));
      else decided(verdict);
    },
  };
}

const clientClosed = new Error('client closed the connection');

/**
 * Reads the request body for `post_arg.*` matching (src/proxy/post-args.ts), then calls `then`
 * with the body to forward in place of `req`: the bytes read, unchanged, followed (when the body
 * was over the limit) by the rest of `req`, streamed. Framing is left to undici as for any body:
 * a client Content-Length is kept, a chunked body goes chunked.
 */
function readBodyForMatching(req: IncomingMessage, res: ServerResponse, request: ProxyRequest, then: (body: Readable | undefined) => void): void {
  const headers = req.headers;
  const contentLength = headers['content-length'];
  const hasBody = headers['transfer-encoding'] !== undefined || (contentLength !== undefined && contentLength !== '0');
  if (!hasBody || declaredTooLarge(contentLength)) {
    withoutBody(request);
    return then(undefined);
  }
  const read = new BodyForMatching();
  let settled = false;
  const finish = (complete: boolean): void => {
    settled = true;
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onClose);
    if (complete) read.decodeInto(request, headers['content-type']);
    else {
      req.pause();
      withoutBody(request);
      // what of the body nobody forwards (a 404, a plugin's answer) is read and dropped after the
      // response, as node:http does with an unread body, so keep-alive goes on
      res.once('finish', () => req.resume());
    }
    then(replayBody(read.chunks, complete ? undefined : req));
  };
  const onData = (chunk: Buffer): void => {
    if (!read.add(chunk)) finish(false);
  };
  const onEnd = (): void => finish(true);
  const onClose = (): void => {
    // the client left before its body ended: nothing to route
    if (!settled) res.destroy();
  };
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('close', onClose);
}

/** The body read for matching, then the rest of `rest` (if any), as one stream of the same bytes. */
function replayBody(chunks: readonly Buffer[], rest: Readable | undefined): Readable {
  if (rest === undefined) return Readable.from(chunks, { objectMode: false });
  return Readable.from(
    (async function* () {
      yield* chunks;
      for await (const chunk of rest) yield chunk as Buffer;
    })(),
    { objectMode: false },
  );
}

function onSlotTimeout(exchange: HttpExchange): void {
  exchange.slotTimedOut();
}

/**
 * One proxied request, also the undici dispatch handler for each attempt, so a request costs one
 * object plus its header array (methods live on the prototype, not in per-request closures).
 *
 * Uses undici's classic handler methods (onConnect/onHeaders/onData/onComplete/onError): undici 7
 * runs them natively and wraps the newer controller API into them, with headers parsed into an
 * object we would only have to flatten again.
 */
class HttpExchange implements Dispatcher.DispatchHandler, NodeWaiter {
  private readonly req: IncomingMessage;
  private readonly res: ServerResponse;
  private readonly upstream: UpstreamTarget;
  private readonly pools: ConnectionPools;
  private readonly dispatchOptions: Dispatcher.DispatchOptions;
  private readonly headers: string[];
  private readonly hostIndex: number;
  private readonly clientHost: string | undefined;
  private readonly hasBody: boolean;

  private node: UpstreamNode;
  private retries: NodeRetries | undefined;
  /** one extra attempt for a kept-alive connection the upstream closed under us (nginx does the same) */
  private brokenReuseRetry = true;
  /** undici called onConnect: the request is on a socket, headers (maybe body) may be sent */
  private onSocket = false;
  private abortUpstream: ((err?: Error) => void) | null = null;
  private resumeUpstream: (() => void) | null = null;
  private onClientDrain: (() => void) | undefined;
  private responding = false;
  private done = false;
  /** the node's pool and connection gate for the current attempt */
  private nodePool: NodePool | undefined;
  /** this attempt counts against the node's connection cap (given back when it ends) */
  private holdsSlot = false;
  /** set while waiting for a slot on a node at its cap */
  private slotTimer: NodeJS.Timeout | undefined;
  /**
   * The upstream's response head, held until its first body byte or its end (node:http would not
   * send it before either anyway): until then an upstream that breaks HTTP can still be answered
   * with a 502 instead of an empty reply. `pendingHeaders` is null once the head is written.
   */
  private pendingStatus = 0;
  private pendingStatusText = '';
  private pendingHeaders: string[] | null = null;
  private readonly run: PluginRun | undefined;
  private readonly pickRequest: PickRequest | undefined;
  /** the balancer that picked the node (its accounting hooks; a config change may replace the upstream's) */
  private readonly balancer: Balancer;
  /** when the current attempt was sent (0: none in flight) */
  private attemptAt = 0;
  /** the Host a plugin set (kept whichever node is tried) */
  private pluginHost: string | undefined;
  /** the response body goes through the plugins' body_filter */
  private filtered = false;
  /** the request as the observers will get it (undefined: no observers) */
  private readonly obs: ObservedRequest | undefined;

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    request: ProxyRequest,
    upstream: UpstreamTarget,
    pools: ConnectionPools,
    node: UpstreamNode,
    /** the request body when it is not `req` (an upgrade request's, which node:http leaves unread) */
    body?: Readable,
    /** the request's plugins: their upstream edits, header_filter and body_filter */
    run?: PluginRun,
    /** for balancers that read the request (chash) */
    pickRequest?: PickRequest,
  ) {
    this.run = run;
    this.pickRequest = pickRequest;
    this.balancer = upstream.balancer;
    this.req = req;
    this.res = res;
    this.upstream = upstream;
    this.pools = pools;
    const headers = req.headers;
    this.hasBody = headers['transfer-encoding'] !== undefined || (headers['content-length'] !== undefined && headers['content-length'] !== '0');
    this.clientHost = headers.host;
    this.node = node;
    this.obs = (res as Observed)[OBSERVED];
    const built = upstreamHeaders(req, request, upstream, node, false, this.obs?.upstreamTrace, this.obs?.clientTrace);
    this.headers = built.headers;
    this.hostIndex = built.hostIndex;
    if (run !== undefined) {
      // Host stays last, set only through upstream.host (upstreamHeaders adds it last)
      run.applyUpstreamEdits(this.headers);
      this.pluginHost = run.upstream.host;
      this.hostIndex = this.headers.length - 1;
    }
    this.dispatchOptions = {
      path: run === undefined ? request.forwardPath : run.upstream.uri,
      method: (run === undefined ? request.method : run.upstream.method) as Dispatcher.HttpMethod,
      headers: this.headers,
      body: this.hasBody ? (body ?? req) : null,
      headersTimeout: upstream.timeout.read,
      bodyTimeout: upstream.timeout.read,
      // set per attempt (send()); declared here so the object keeps one shape
      reset: undefined,
    };
  }

  start(): void {
    this.res.on('close', this.onClientClose);
    // made now (not on first failure) so that retry_timeout counts from the start of the request
    if (this.upstream.retryTimeout > 0) this.retries = new NodeRetries(this.upstream, this.pickRequest);
    this.dispatchTo(this.node);
  }

  private dispatchTo(node: UpstreamNode): void {
    if (node !== this.node) {
      this.node = node;
      if (this.upstream.passHost === 'node' && this.pluginHost === undefined) this.headers[this.hostIndex] = upstreamHost(this.upstream, node, this.clientHost);
    }
    this.onSocket = false;
    this.abortUpstream = null;
    const nodePool = (this.nodePool = this.pools.nodePool(this.upstream, node));
    if (nodePool.gate.tryEnter()) return this.send();
    // the node is at its cap: wait for a slot, at most as long as a connection may take to open
    nodePool.gate.enqueue(this);
    this.slotTimer = setTimeout(onSlotTimeout, this.upstream.timeout.connect, this);
  }

  /** Dispatches the attempt on the node's pool; the caller holds a slot of the node's gate. */
  private send(): void {
    this.holdsSlot = true;
    const nodePool = this.nodePool!;
    const keepalive = this.upstream.keepalive;
    // keepalive_pool.size bounds the idle connections kept: beyond that many requests in flight,
    // the connection is closed after its response (nginx closes what its keepalive cache has no
    // room for). idle_timeout 0 means no keep-alive at all. `undefined`, not false: false would
    // override undici's own closing rules (HEAD, max requests per connection).
    this.dispatchOptions.reset = keepalive.idleTimeout === 0 || nodePool.gate.active > keepalive.size ? true : undefined;
    this.attemptAt = performance.now();
    if (this.obs !== undefined) attemptStarted(this.obs, this.upstream, this.node);
    this.balancer.started?.(this.node);
    nodePool.pool.dispatch(this.dispatchOptions, this);
  }

  /** NodeWaiter: a slot freed up on the node (already counted for this attempt). */
  admitted(): void {
    clearTimeout(this.slotTimer);
    if (this.done) {
      // the client left while waiting: give the slot on
      this.nodePool!.gate.leave();
      return;
    }
    this.send();
  }

  /** No slot within timeout.connect: this attempt fails like a connection that could not be made. */
  slotTimedOut(): void {
    if (!this.nodePool!.gate.remove(this) || this.done) return;
    this.onError(nodeBusy);
  }

  /**
   * The attempt ended (response complete or failed): its slot goes to the next waiting request, and
   * the balancer learns how it went (least_conn counts, ewma latency).
   */
  private releaseSlot(failed = false): void {
    if (this.attemptAt !== 0) {
      const ms = performance.now() - this.attemptAt;
      this.attemptAt = 0;
      this.balancer.done?.(this.node, ms, failed);
    }
    if (!this.holdsSlot) return;
    this.holdsSlot = false;
    this.nodePool!.gate.leave();
  }

  // --- undici handler -------------------------------------------------------------------------

  onConnect(abort: (err?: Error) => void): void {
    if (this.done) {
      abort(clientClosed);
      return;
    }
    this.onSocket = true;
    this.abortUpstream = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx informational: not forwarded (node:http has no raw API for it)
    if (this.done) return false;
    this.upstream.health?.observeStatus(this.node, statusCode);
    if (this.obs !== undefined) this.obs.upstreamStatus = statusCode;
    this.resumeUpstream = resume;
    this.responding = true;
    this.pendingStatus = statusCode;
    this.pendingStatusText = statusText;
    let headers = clientHeaders(rawHeaders);
    const run = this.run;
    if (run !== undefined && run.hasResponsePhases) {
      this.pendingStatus = run.runHeaderFilter(statusCode, headers, false);
      if (this.pendingStatus !== statusCode) this.pendingStatusText = '';
      if (run.hasBodyFilter) {
        // the length changes: node:http sends the body chunked
        headers = withoutHeader(headers, 'content-length');
        this.filtered = true;
      }
    }
    this.pendingHeaders = headers;
    return true;
  }

  /** Writes the held response head; false when node:http refused it (the client then got a 502). */
  private writeResponseHead(): boolean {
    const headers = this.pendingHeaders!;
    this.pendingHeaders = null;
    try {
      this.res.writeHead(this.pendingStatus, this.pendingStatusText === '' ? undefined : this.pendingStatusText, headers);
      return true;
    } catch (err) {
      // an upstream header node:http refuses to write (it validates before storing anything)
      this.done = true;
      this.abortUpstream?.(err as Error);
      sendError(this.res, ProxyError.UPSTREAM_UNAVAILABLE);
      return false;
    }
  }

  onData(chunk: Buffer): boolean {
    if (this.pendingHeaders !== null && !this.writeResponseHead()) return false;
    if (this.filtered) chunk = this.run!.runBodyFilter(chunk, false);
    if (chunk.length === 0 || this.res.write(chunk)) return true;
    // backpressure: undici stops reading the upstream socket until the client drains (the
    // listener is made on first need: most responses never wait)
    // (a client that never drains is cut by proxy.timeouts.send: the listeners' SendTimeoutWatch
    // destroys its socket, and onClientClose aborts the upstream request)
    this.res.once('drain', (this.onClientDrain ??= () => this.resumeUpstream?.()));
    return false;
  }

  onComplete(): void {
    this.releaseSlot();
    if (this.done) return;
    if (this.obs !== undefined) upstreamEnded(this.obs);
    if (this.pendingHeaders !== null && !this.writeResponseHead()) return;
    this.done = true;
    if (this.filtered) {
      const last = this.run!.runBodyFilter(Buffer.alloc(0), true);
      if (last.length > 0) return void this.res.end(last);
    }
    this.res.end();
  }

  onError(err: Error): void {
    // a request the client gave up is not the node's failure
    this.releaseSlot(err !== clientClosed);
    if (this.done) return;
    const health = this.upstream.health;
    if (health !== undefined) {
      const outcome = failureOutcome(classifyFailure(err));
      if (outcome !== undefined) health.observe(this.node, outcome);
    }
    if (this.responding) {
      if (this.pendingHeaders === null) {
        // the upstream broke mid-body (or a body read timeout): cut the client connection so it
        // sees a truncated response rather than a complete-looking one
        this.fail(err);
        return;
      }
      // nothing reached the client yet
      if (this.pendingStatus === 304 && (err as { code?: string }).code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
        // undici holds a 304's Content-Length (the representation's size, RFC 9110 §8.6) against
        // its empty body; the response is complete and valid
        this.onComplete();
        return;
      }
      this.done = true;
      sendError(this.res, failureResponse(classifyFailure(err)));
      return;
    }
    const failure = classifyFailure(err);
    if (this.retryable(failure)) {
      const next = this.nextNode(failure);
      if (next !== undefined) {
        this.dispatchTo(next);
        return;
      }
    }
    this.done = true;
    sendError(this.res, failureResponse(failure));
  }

  // --- retries ----------------------------------------------------------------------------------

  /**
   * Another node may be tried only while the client's request body is untouched: before undici put
   * the request on a socket, or after a broken connection when there is no body and the method is
   * not POST/PATCH (nginx's rule for non-idempotent requests). Timeouts are not retried: the
   * upstream may be working on it.
   */
  private retryable(failure: Failure): boolean {
    if (failure === Failure.BadRequest || failure === Failure.ReadTimeout) return false;
    if (!this.onSocket) return true;
    if (failure !== Failure.Broken || this.hasBody) return false;
    const method = this.dispatchOptions.method;
    return method !== 'POST' && method !== 'PATCH';
  }

  private nextNode(failure: Failure): UpstreamNode | undefined {
    if (this.req.destroyed) return undefined;
    const retries = (this.retries ??= new NodeRetries(this.upstream, this.pickRequest));
    if (!retries.inTime()) return undefined;
    if (failure === Failure.Broken && this.onSocket && this.brokenReuseRetry) {
      // probably a kept-alive connection closed by the upstream as we reused it: same node is fine
      this.brokenReuseRetry = false;
      return this.node;
    }
    return retries.next(this.node);
  }

  // --- client side ------------------------------------------------------------------------------

  private fail(err: Error): void {
    this.done = true;
    this.abortUpstream?.(err);
    this.res.destroy();
  }

  /** 'close' fires after a complete response too; only an unfinished one means the client left. */
  private readonly onClientClose = (): void => {
    if (this.done || this.res.writableFinished) return;
    this.done = true;
    this.abortUpstream?.(clientClosed);
  };
}
