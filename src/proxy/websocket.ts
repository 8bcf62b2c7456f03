import type { IncomingMessage } from 'node:http';
import { isIP, connect as connectTcp, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as connectTls } from 'node:tls';
import { ProxyError } from '../errors.ts';
import type { RouteTable } from '../runtime/types.ts';
import type { UpstreamNode, UpstreamTarget } from '../upstream/types.ts';
import { upstreamHeaders } from './headers.ts';
import { describeRequest, type ProxyRequest } from './request.ts';
import { NodeRetries } from './retries.ts';
import { writeRawError } from './responses.ts';

/**
 * Proxies an HTTP Upgrade request (WebSocket): routes it like any request, opens a fresh
 * connection to a node (upgraded connections are never pooled), sends the request with the
 * Upgrade headers kept, then relays bytes both ways — the upstream's handshake response included,
 * whatever it is. Before the upstream answers, failures are reported on the raw client socket
 * (400/404/502/503/504); after that, either side closing closes the other.
 *
 * timeout.connect and timeout.read apply to the handshake only: an established WebSocket may stay
 * idle as long as both ends want.
 */
export function proxyUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, routes: () => RouteTable): void {
  socket.on('error', destroySelf);
  const request = describeRequest(req);
  if (request === undefined) return writeRawError(socket, ProxyError.BAD_REQUEST);
  const matched = routes().matchRoute(request);
  if (matched === undefined) return writeRawError(socket, ProxyError.ROUTE_NOT_FOUND);
  const upstream = matched.target.upstream;
  if (upstream === undefined) return writeRawError(socket, ProxyError.NO_HEALTHY_NODE);
  const node = upstream.balancer.pick();
  if (node === undefined) return writeRawError(socket, ProxyError.NO_HEALTHY_NODE);
  new UpgradeExchange(req, socket, head, request, upstream).connect(node);
}

function destroySelf(this: Duplex): void {
  this.destroy();
}

class UpgradeExchange {
  private readonly retries: NodeRetries;
  private upstreamSocket: Socket | undefined;
  private answered = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly client: Duplex,
    private readonly head: Buffer,
    private readonly request: ProxyRequest,
    private readonly upstream: UpstreamTarget,
  ) {
    this.retries = new NodeRetries(upstream);
    client.once('close', () => this.upstreamSocket?.destroy());
  }

  connect(node: UpstreamNode): void {
    if (this.client.destroyed) return;
    const { upstream } = this;
    const { headers } = upstreamHeaders(this.req, this.request, upstream, node, true);
    let head = `${this.request.method} ${this.request.forwardPath} HTTP/1.1\r\n`;
    let hostHeader = '';
    for (let i = 0; i < headers.length; i += 2) {
      head += `${headers[i]}: ${headers[i + 1]}\r\n`;
      if (headers[i] === 'Host') hostHeader = headers[i + 1]!;
    }
    head += '\r\n';

    const servername = sniName(hostHeader);
    const upstreamSocket =
      upstream.scheme === 'https'
        ? connectTls({
            host: node.host,
            port: node.port,
            ...(servername === undefined ? {} : { servername }),
            // as for pooled https upstreams: nginx's proxy_ssl_verify is off by default
            rejectUnauthorized: false,
          })
        : connectTcp({ host: node.host, port: node.port });
    this.upstreamSocket = upstreamSocket;
    upstreamSocket.setNoDelay(true);

    let connected = false;
    let timedOut = false;
    upstreamSocket.setTimeout(upstream.timeout.connect, () => {
      timedOut = true;
      upstreamSocket.destroy();
    });
    upstreamSocket.once(upstream.scheme === 'https' ? 'secureConnect' : 'connect', () => {
      connected = true;
      upstreamSocket.setTimeout(upstream.timeout.read);
      upstreamSocket.write(head, 'latin1');
      if (this.head.length > 0) upstreamSocket.write(this.head);
      this.relay(upstreamSocket);
    });
    upstreamSocket.once('data', () => {
      this.answered = true;
      upstreamSocket.setTimeout(0);
    });
    upstreamSocket.on('error', () => {});
    upstreamSocket.once('close', (hadError) => {
      if (this.answered) {
        if (hadError) this.client.destroy();
        return;
      }
      if (this.client.destroyed || this.upstreamSocket !== upstreamSocket) return;
      if (!connected) {
        const next = this.retries.next(node);
        if (next !== undefined) {
          this.connect(next);
          return;
        }
        return writeRawError(this.client, timedOut ? ProxyError.UPSTREAM_TIMEOUT : ProxyError.UPSTREAM_UNAVAILABLE);
      }
      // connected, but no handshake response: read timeout or the upstream hung up
      writeRawError(this.client, timedOut ? ProxyError.UPSTREAM_TIMEOUT : ProxyError.UPSTREAM_UNAVAILABLE);
    });
  }

  /** Bytes both ways, with backpressure (pipe pauses the faster side). */
  private relay(upstreamSocket: Socket): void {
    const client = this.client;
    // the upstream's end is forwarded only once it answered: before that, a hang-up becomes a 502
    upstreamSocket.pipe(client, { end: false });
    upstreamSocket.once('end', () => {
      if (this.answered) client.end();
    });
    client.pipe(upstreamSocket);
  }
}

/** SNI takes a DNS name only: no port, no IP literal. */
function sniName(hostHeader: string): string | undefined {
  let name = hostHeader;
  if (name.startsWith('[')) return undefined;
  const colon = name.lastIndexOf(':');
  if (colon !== -1) name = name.slice(0, colon);
  return name === '' || isIP(name) !== 0 ? undefined : name;
}
