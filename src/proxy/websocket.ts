import { request as httpRequest, ServerResponse, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { ProxyError } from '../errors.ts';
import type { UpstreamNode, UpstreamTarget } from '../upstream/types.ts';
import { clientHeaders, upstreamHeaders } from './headers.ts';
import type { ProxyRequest } from './request.ts';
import { NodeRetries } from './retries.ts';
import type { PluginRun } from '../plugins/run.ts';
import { sendError, writeRawError } from './responses.ts';

/*
 * Upgrade requests (WebSocket and any other `Connection: upgrade` + `Upgrade: x`). node:http hands
 * them over as a raw socket with everything after the request head unread, so both ways of serving
 * one end with the connection closed: node's parser no longer reads that socket, and closing is how
 * HTTP framing is kept — no byte the client wrote after its request can reach an upstream unrouted.
 *
 * - Route without enable_websocket (the default, as APISIX): proxied as a plain HTTP request, without
 *   its Upgrade headers (APISIX sends them only when the route enables WebSocket), through the
 *   ordinary exchange (proxy/http.ts) answering on `responseOnSocket`.
 * - Route with enable_websocket: `proxyUpgrade` below. Bytes are relayed both ways only after the
 *   upstream answered 101 with an Upgrade the client asked for; any other final response is
 *   answered as HTTP, then the connection is closed.
 */

/** Destroys a socket on error ('error' listener shared by every raw client socket). */
export function destroyOnError(this: Duplex): void {
  this.destroy();
}

/**
 * A ServerResponse for a request node:http handed over as a raw socket: it says `Connection: close`
 * and closes the socket once the response is sent.
 */
export function responseOnSocket(req: IncomingMessage, socket: Duplex): ServerResponse {
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  // node's types want a net.Socket; any Duplex works (TLS sockets, tests' streams)
  res.assignSocket(socket as Socket);
  res.once('finish', () => {
    const raw = socket as Partial<Socket>;
    if (typeof raw.destroySoon === 'function') raw.destroySoon();
    else socket.end();
  });
  return res;
}

/**
 * The body of an upgrade request, which node:http leaves on the socket (`head`, then what
 * follows): null when there is none; a stream of exactly Content-Length bytes, whatever follows
 * being put back on the socket (relayed after a 101, otherwise never read); undefined for a
 * Transfer-Encoding body, which is refused (400) rather than decoded outside node's parser. `head`
 * is put back on the socket in every case.
 */
export function upgradeRequestBody(req: IncomingMessage, socket: Duplex, head: Buffer): Readable | null | undefined {
  if (req.headers['transfer-encoding'] !== undefined) return undefined;
  if (head.length > 0) socket.unshift(head);
  const length = Number(req.headers['content-length'] ?? 0);
  return length > 0 ? declaredBody(socket, length) : null;
}

function declaredBody(socket: Duplex, length: number): Readable {
  let left = length;
  const body = new Readable({
    read() {
      socket.resume();
    },
  });
  const onData = (chunk: Buffer) => {
    if (chunk.length < left) {
      left -= chunk.length;
      if (!body.push(chunk)) socket.pause();
      return;
    }
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.pause();
    if (chunk.length > left) socket.unshift(chunk.subarray(left));
    body.push(chunk.subarray(0, left));
    left = 0;
    body.push(null);
  };
  const onEnd = () => body.destroy(new Error('the client closed before the end of its request body'));
  socket.on('data', onData);
  socket.once('end', onEnd);
  return body;
}

/**
 * Proxies an upgrade request on a route with enable_websocket: a fresh connection to a node
 * (upgraded connections are never pooled, nor counted against the per-node connection cap), the
 * request with its Upgrade headers, and node:http's client parser for the answer:
 * - 1xx (100, 102, 103) are skipped;
 * - 101 whose Upgrade names protocols the client asked for: the 101 goes to the client, then bytes
 *   both ways (the client's first, held until now); either side closing closes the other;
 * - 101 for another protocol: 502;
 * - any other response: answered as HTTP (hop-by-hop headers dropped), then the connection closes.
 * Until the upstream answers, failures are reported on the raw client socket (502/504), and a node
 * that cannot be connected is retried like HTTP requests are.
 *
 * timeout.connect and timeout.read apply to the handshake (and the body of a non-101 answer): an
 * established WebSocket may stay idle as long as both ends want.
 */
export function proxyUpgrade(
  req: IncomingMessage,
  socket: Socket,
  body: Readable | null,
  request: ProxyRequest,
  upstream: UpstreamTarget,
  node: UpstreamNode,
  /** the request's plugins: their upstream edits apply to the handshake; log runs when the tunnel closes */
  run?: PluginRun,
): void {
  new UpgradeExchange(req, socket, body, request, upstream, run).connect(node);
}

const upstreamTimeout = new Error('upstream timeout (connect or read)');

/** Methods for which node's http client adds `Transfer-Encoding: chunked` to a request it is given no length for. */
const CHUNKED_BY_DEFAULT = new Set(['POST', 'PUT', 'PATCH']);

class UpgradeExchange {
  private readonly retries: NodeRetries;
  private upstreamRequest: ClientRequest | undefined;
  /** the upstream answered (101 or another final response): failures are no longer reported as 502/504 */
  private answered = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly client: Socket,
    private readonly body: Readable | null,
    private readonly request: ProxyRequest,
    private readonly upstream: UpstreamTarget,
    private readonly run?: PluginRun,
  ) {
    this.retries = new NodeRetries(upstream);
    client.once('close', () => {
      this.upstreamRequest?.destroy();
      run?.runLog();
    });
  }

  connect(node: UpstreamNode): void {
    if (this.client.destroyed) return;
    const { upstream, request } = this;
    const { headers } = upstreamHeaders(this.req, request, upstream, node, true);
    const run = this.run;
    run?.applyUpstreamEdits(headers);
    const method = run?.upstream.method ?? request.method;
    if (this.body === null && CHUNKED_BY_DEFAULT.has(method)) headers.push('Content-Length', '0');
    let hostHeader = '';
    for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'Host') hostHeader = headers[i + 1]!;
    const https = upstream.scheme === 'https';
    const servername = https ? sniName(hostHeader) : undefined;
    const options = {
      host: node.host,
      port: node.port,
      method,
      path: run?.upstream.uri ?? request.forwardPath,
      // a flat [name, value, ...] list is written as given: order, case and duplicates kept, no Host added
      headers,
      agent: false as const,
      ...(servername === undefined ? {} : { servername }),
      // as for pooled https upstreams: nginx's proxy_ssl_verify is off by default
      ...(https ? { rejectUnauthorized: false } : {}),
    };
    let upstreamRequest: ClientRequest;
    try {
      upstreamRequest = https ? httpsRequest(options) : httpRequest(options);
    } catch {
      // a header value node's client refuses (it validates before any byte is sent): the request
      // cannot be proxied, the process must not fail over it
      return writeRawError(this.client, ProxyError.BAD_REQUEST);
    }
    this.upstreamRequest = upstreamRequest;

    let connected = false;
    let timedOut = false;
    upstreamRequest.on('socket', (upstreamSocket: Socket) => {
      upstreamSocket.setNoDelay(true);
      upstreamSocket.setTimeout(upstream.timeout.connect, () => {
        timedOut = true;
        upstreamRequest.destroy(upstreamTimeout);
      });
      upstreamSocket.once(https ? 'secureConnect' : 'connect', () => {
        connected = true;
        // the handshake answer (and a non-101 answer's body) within timeout.read, as for HTTP
        upstreamSocket.setTimeout(upstream.timeout.read);
      });
    });
    upstreamRequest.on('error', () => {
      if (this.answered || this.client.destroyed || this.upstreamRequest !== upstreamRequest) return;
      // another node only while the request body is untouched (node's client may have buffered some)
      if (!connected && this.body === null) {
        const next = this.retries.next(node);
        if (next !== undefined) return this.connect(next);
      }
      // not connected, or connected but no answer: the upstream hung up or took too long
      writeRawError(this.client, timedOut ? ProxyError.UPSTREAM_TIMEOUT : ProxyError.UPSTREAM_UNAVAILABLE);
    });
    upstreamRequest.on('upgrade', (res: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer) => {
      this.answered = true;
      this.switchProtocols(res, upstreamSocket, upstreamHead);
    });
    upstreamRequest.on('response', (res: IncomingMessage) => {
      this.answered = true;
      this.answerAsHttp(res);
    });
    if (this.body === null) upstreamRequest.end();
    else this.body.pipe(upstreamRequest);
  }

  /** 101: relay, if the upstream switched to a protocol the client asked for. */
  private switchProtocols(res: IncomingMessage, upstreamSocket: Socket, upstreamHead: Buffer): void {
    const client = this.client;
    if (client.destroyed) {
      upstreamSocket.destroy();
      return;
    }
    if (!upgradeAccepted(this.req.headers.upgrade, res.headers.upgrade)) {
      upstreamSocket.destroy();
      writeRawError(client, ProxyError.UPSTREAM_UNAVAILABLE);
      return;
    }
    upstreamSocket.setTimeout(0);
    upstreamSocket.on('error', destroyOnError);
    // node's parser refused CR/LF in the head it parsed: it can be written back as it came
    let head = `HTTP/1.1 101 ${res.statusMessage ?? ''}\r\n`;
    const raw = res.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
    client.write(head + '\r\n', 'latin1');
    if (upstreamHead.length > 0) client.write(upstreamHead);
    // bytes both ways, with backpressure; the client's bytes held since its request go first
    upstreamSocket.pipe(client);
    client.pipe(upstreamSocket);
    client.once('close', () => upstreamSocket.destroy());
    upstreamSocket.once('close', (hadError) => {
      if (hadError) client.destroy();
    });
  }

  /** Any final response other than 101: HTTP framing kept, connection closed after it. */
  private answerAsHttp(res: IncomingMessage): void {
    const out = responseOnSocket(this.req, this.client);
    // an upstream that breaks off (or stalls past timeout.read) mid-body: the client sees a cut, not a complete-looking answer
    res.once('error', () => out.destroy());
    res.once('aborted', () => out.destroy());
    try {
      const headers = clientHeaders(res.rawHeaders.map((h) => Buffer.from(h, 'latin1')));
      out.writeHead(res.statusCode!, res.statusMessage, headers);
    } catch {
      res.destroy();
      sendError(out, ProxyError.UPSTREAM_UNAVAILABLE);
      return;
    }
    res.pipe(out);
  }
}

/**
 * RFC 9110 §7.8: a server switches only to protocols the client listed in its Upgrade. Every
 * protocol the 101 names must be one of them (tokens compared case-insensitively).
 */
export function upgradeAccepted(requested: string | undefined, answered: string | undefined): boolean {
  if (requested === undefined || answered === undefined) return false;
  const asked = new Set(protocolList(requested));
  const switched = protocolList(answered);
  return switched.length > 0 && switched.every((p) => asked.has(p));
}

function protocolList(value: string): string[] {
  return value
    .split(',')
    .map((p) => p.trim().toLowerCase())
    .filter((p) => p !== '');
}

/** SNI takes a DNS name only: no port, no IP literal. */
export function sniName(hostHeader: string): string | undefined {
  let name = hostHeader;
  if (name.startsWith('[')) return undefined;
  const colon = name.lastIndexOf(':');
  if (colon !== -1) name = name.slice(0, colon);
  return name === '' || isIP(name) !== 0 ? undefined : name;
}
