import { SniTable } from '../../src/server/tls/sni-table.ts';
import http, { type IncomingHttpHeaders, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHttpProxy } from '../../src/proxy/http.ts';
import type { MatchRequest } from '../../src/router/types.ts';
import type { CompiledRoute, RouteTable } from '../../src/runtime/types.ts';
import { createBalancer } from '../../src/upstream/balancer/index.ts';
import { normalizeNodes } from '../../src/upstream/nodes.ts';
import { ConnectionPools } from '../../src/upstream/pools.ts';
import type { UpstreamTarget } from '../../src/upstream/types.ts';

/** An upstream as the runtime would compile it, with test-friendly defaults. */
export function makeTarget(nodes: Record<string, number>, overrides: Partial<Omit<UpstreamTarget, 'nodes' | 'balancer'>> = {}): UpstreamTarget {
  const scheme = overrides.scheme ?? 'http';
  const normalized = normalizeNodes(nodes, scheme);
  return {
    key: 'upstreams/test',
    scheme,
    passHost: 'pass',
    timeout: { connect: 2000, send: 5000, read: 5000 },
    retries: Math.max(0, normalized.length - 1),
    retryTimeout: 0,
    keepalive: { size: 32, idleTimeout: 5000, requests: 1000 },
    ...overrides,
    nodes: normalized,
    balancer: createBalancer('roundrobin', normalized),
  };
}

/** A stand-in for the router: longest matching path prefix wins. `websocket`: enable_websocket on every route. */
export function prefixRoutes(routes: Record<string, UpstreamTarget | undefined>, { websocket = false } = {}): RouteTable {
  const entries = Object.entries(routes)
    .map(([prefix, upstream]): [string, CompiledRoute] => [prefix, { id: prefix, upstream, websocket }])
    .sort((a, b) => b[0].length - a[0].length);
  return {
    matchRoute(req: MatchRequest) {
      for (const [prefix, route] of entries) if (req.path.startsWith(prefix)) return { id: route.id, target: route };
      return undefined;
    },
  };
}

export async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export interface Running {
  server: Server;
  port: number;
  close(): Promise<void>;
}

export async function startUpstream(handler: RequestListener): Promise<Running> {
  const server = http.createServer(handler);
  const port = await listen(server);
  return { server, port, close: () => closeServer(server) };
}

/**
 * The proxy on a listener, as the server module wires it: on the socket transport (the default; its
 * pools are the process-wide http1Pools, not `pools`), or on node:http + undici when
 * PORTICO_PROXY_TRANSPORT=node.
 */
export async function startGateway(routes: RouteTable, pools: ConnectionPools): Promise<Running> {
  if ((process.env.PORTICO_PROXY_TRANSPORT ?? 'socket') === 'socket') {
    const { SocketListeners } = await import('../../src/server/socket-listeners.ts');
    const timeouts = { header: 60, keepalive: 75, request_body: 60, send: 60 };
    const config = { listen: ['127.0.0.1:0'], tls_listen: [], drain_timeout: 0, timeouts, max_header_count: 100, allow_trace: false };
    const listeners = new SocketListeners(config as never, () => routes, () => new SniTable([]));
    const [address] = await listeners.start();
    return { server: undefined as never, port: address!.port, close: () => listeners.drain() };
  }
  const proxy = createHttpProxy({ routes: () => routes, pools });
  const server = http.createServer(proxy.handleRequest);
  server.on('upgrade', proxy.handleUpgrade);
  const port = await listen(server);
  return { server, port, close: () => closeServer(server) };
}

/**
 * A loopback port nothing listens on: 1 (tcpmux), which no test binds. (A port bound then closed
 * could be taken at once by a test running alongside: CI saw a "dead" node answer.)
 */
export async function closedPort(): Promise<number> {
  return REFUSED_PORT;
}

export const REFUSED_PORT = 1;

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export function request(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers, agent: false },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Upstream handler answering with what it received, as JSON. */
export const echoRequest: RequestListener = (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = JSON.stringify({
      method: req.method,
      url: req.url,
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    });
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream-port': String(req.socket.localPort) });
    res.end(body);
  });
};

export interface Echo {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}
