import { once } from 'node:events';
import { createServer, get as httpGet, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An upstream node the health tests kill and bring back on the same port, and whose health
 * endpoint can be told to fail. Real requests answer 200 `{"node": name}` (or `status` when set);
 * probes (GET /health) answer `healthStatus`.
 */
export class Node {
  port = 0;
  /** real requests served (not probes) */
  served = 0;
  /** probe requests received */
  probes = 0;
  /** what GET /health answers */
  healthStatus = 200;
  /** what real requests answer */
  status = 200;
  /** the Host header of each real request */
  readonly hosts: string[] = [];
  private server: Server | undefined;

  constructor(
    readonly name: string,
    /** a loopback address of its own (127.0.0.2, ...) lets DNS tests tell nodes apart by address */
    readonly host = '127.0.0.1',
  ) {}

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  private handle = (req: IncomingMessage, res: ServerResponse): void => {
    req.resume();
    if (req.url === '/health') {
      this.probes++;
      res.writeHead(this.healthStatus, { 'content-type': 'text/plain' }).end('probe');
      return;
    }
    this.served++;
    this.hosts.push(req.headers.host ?? '');
    res.writeHead(this.status, { 'content-type': 'application/json' }).end(JSON.stringify({ node: this.name }));
  };

  /** Listens (again, on the same port once it had one). */
  async start(): Promise<this> {
    const server = (this.server = createServer(this.handle));
    server.keepAliveTimeout = 60_000;
    server.listen(this.port, this.host);
    await once(server, 'listening');
    this.port = (server.address() as AddressInfo).port;
    return this;
  }

  /** Stops listening and drops every connection: the port refuses connections until start(). */
  async kill(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}

/** Sends one request; the node's name, or the status when it is not 200. */
export async function hit(url: string, init?: RequestInit): Promise<string> {
  try {
    const res = await fetch(url, init);
    const body = await res.text();
    if (res.status !== 200) return `status ${res.status}`;
    return (JSON.parse(body) as { node: string }).node;
  } catch (err) {
    return `error ${(err as Error).message}`;
  }
}

/** One request on a connection of its own (so that, with workers, connections spread over them). */
export function hitFresh(url: string): Promise<string> {
  return new Promise((resolve) => {
    const req = httpGet(url, { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(res.statusCode === 200 ? (JSON.parse(body) as { node: string }).node : `status ${res.statusCode}`));
    });
    req.on('error', (err) => resolve(`error ${err.message}`));
  });
}
