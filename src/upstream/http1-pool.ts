import { upstreamTlsOptions } from './tls.ts';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ResponseParser, type ResponseHandler } from '../proxy/http1/response-parser.ts';
import { continueFiltered, continueHeld, responseMayBegin, skipContinueResponses, takeContinueHeld } from './continue-filter.ts';
import { poolKey, pools as sharedPools, type NodeGate } from './pools.ts';
import type { UpstreamNode, UpstreamTarget } from './types.ts';

/*
 * Upstream connections of the socket transport (proxy.transport: socket): per node, a LIFO list of
 * idle kept-alive net/tls sockets, each with its own ResponseParser. The node's NodeGate (the
 * per-node cap, shared with the node transport's pools) is taken by the exchange, not here.
 */

/** Why an upstream connection failed its request; the exchange maps it to a Failure. */
export const UpstreamEvent = {
  /** connect() failed (refused, unreachable, TLS handshake) */
  ConnectFailed: 0,
  ConnectTimeout: 1,
  /** reset or closed by the upstream before the response ended */
  Broken: 2,
  /** no byte within timeout.read while a response was awaited or read */
  ReadTimeout: 3,
  /** the response is not HTTP/1.1 (the parser refused it) */
  Protocol: 4,
  /** the request could not be written within timeout.send */
  SendTimeout: 5,
} as const;
export type UpstreamEvent = (typeof UpstreamEvent)[keyof typeof UpstreamEvent];

/** What uses a connection for one request: the parser's handler plus the connection's events. */
export interface UpstreamUser extends ResponseHandler {
  /** the connection is open (fresh, or taken from the idle list): the request may be written */
  upstreamReady(conn: UpstreamConnection): void;
  /** the upstream took the bytes it had been refusing (write() returned false before) */
  upstreamDrained(): void;
  /** the connection failed before the response ended; it is already destroyed */
  upstreamFailed(event: UpstreamEvent, err: Error | undefined): void;
}

/**
 * A plain-TCP upstream connection reads into a buffer of its own, again and again (net's `onread`),
 * not into a new Buffer per read through the socket's readable stream: that per-read allocation
 * and stream machinery cost ~10 % of the proxy's throughput (A/B, docs/development.md). 16 KiB: a typical response in one read,
 * and 16 MiB for 1,000 open upstream connections (node reads 64 KiB at a time, then shrinks it).
 */
export const READ_BUFFER_SIZE = 16 * 1024;

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 2;

/** One socket to a node and the parser of the responses on it. */
export class UpstreamConnection {
  readonly socket: Socket;
  readonly parser: ResponseParser;
  user: UpstreamUser | null = null;
  /** requests sent on this connection */
  requests = 0;
  /** taken from the idle list: a failure may be the upstream's close racing our reuse */
  reused = false;
  /** waiting for the response's bytes (not idle, not paused by the client) */
  private state = CONNECTING;
  private lastError: Error | undefined;
  private parsing = false;
  private keepWhenParsed = false;
  private slotToLeave: NodeGate | undefined;
  /** the read timer is on (a request is out); off while idle or paused for the client */
  private readMs = 0;
  /** pauseReading() is in force */
  private readingPaused = false;
  /** a write of the request is waiting for the upstream to take bytes: timeout.send applies */
  private sending = false;
  /**
   * the socket's idle timeout in force (ms, 0 = none). Set only when it changes: node's
   * socket.setTimeout() allocates a timer and a bound function per call, and with the defaults
   * (timeout.read = keepalive_pool.idle_timeout = 60 s) a kept-alive connection needs no call per
   * request at all — the reads and writes of each exchange restart the countdown anyway.
   */
  private timeoutMs = -1;
  /** plain TCP: the buffer reads go into (TLS sockets read through their stream) */
  private readBuffer: Buffer | undefined;
  /**
   * a view of the last read is still referenced (kept by the parser or the 100-continue filter,
   * queued on the client's socket, held by a body filter): the next read goes into a new buffer
   */
  private readPinned = false;

  constructor(
    readonly pool: NodePool1,
    user: UpstreamUser,
  ) {
    this.user = user;
    const target = pool.target;
    const node = pool.node;
    const socket =
      target.scheme === 'https'
        ? tlsConnect({
            host: node.host,
            port: node.port,
            // nginx's proxy_ssl_verify is off by default and APISIX keeps it so (as the node transport)
            ...upstreamTlsOptions(target.tls),
            ...(pool.servername === undefined ? {} : { servername: pool.servername }),
          })
        : netConnect({ host: node.host, port: node.port, onread: { buffer: () => this.nextReadBuffer(), callback: (n, buf) => this.onRead(n, buf as Buffer) } });
    this.socket = socket;
    // the same tolerance as the node transport: `100` heads dropped before the parser, bare LF
    // line endings included (expect() tells the filter where a response may begin)
    skipContinueResponses(socket, target.scheme === 'https' ? 'stream' : 'callback', 'announced');
    this.parser = new ResponseParser(user);
    socket.setNoDelay(true);
    this.setIdleTimeout(target.timeout.connect);
    socket.once(target.scheme === 'https' ? 'secureConnect' : 'connect', () => this.onConnect());
    if (target.scheme === 'https') socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: Error) => {
      this.lastError = err;
    });
    socket.on('close', () => this.onClose());
    socket.on('timeout', () => this.onTimeout());
    socket.on('drain', () => {
      if (this.sending) {
        // the upstream takes bytes again: back to the read timeout
        this.sending = false;
        this.setIdleTimeout(this.readMs);
      }
      this.user?.upstreamDrained();
    });
  }

  private onConnect(): void {
    this.state = OPEN;
    this.setIdleTimeout(0);
    const user = this.user;
    if (user === null) return this.release(true);
    user.upstreamReady(this);
  }

  /**
   * The socket's timeout (node's idle timeout: restarted by every read and write), set only when it
   * changes. The idle-list timeout runs on from release to the next request's expect(): taking a
   * connection from the list and writing to it happen in one tick, so it cannot fire in between.
   */
  setIdleTimeout(ms: number): void {
    if (ms === this.timeoutMs) return;
    this.timeoutMs = ms;
    this.socket.setTimeout(ms);
  }

  /** A request goes out on this connection: responses are read within `readMs` of silence. */
  expect(method: string, readMs: number): void {
    this.requests++;
    // (the head is written next: the response may begin with a 100 to drop)
    responseMayBegin(this.socket);
    this.parser.expectResponse(method);
    this.readMs = readMs;
    this.setIdleTimeout(readMs);
  }

  /**
   * A write of the request returned false: until 'drain', the upstream must take bytes again within
   * `sendMs` (timeout.send, nginx's proxy_send_timeout: between two writes that make progress).
   */
  writeBlocked(sendMs: number): void {
    if (this.sending) return;
    this.sending = true;
    this.setIdleTimeout(sendMs);
  }

  /** The client cannot take more: the upstream may wait as long as that lasts (no read timeout). */
  pauseReading(): void {
    this.readingPaused = true;
    this.socket.pause();
    this.setIdleTimeout(0);
  }

  resumeReading(): void {
    this.readingPaused = false;
    this.setIdleTimeout(this.readMs);
    this.socket.resume();
  }

  /** The buffer the next read goes into: the same one, unless a view of it is still referenced. */
  private nextReadBuffer(): Buffer {
    if (this.readBuffer === undefined || this.readPinned) {
      this.readPinned = false;
      this.readBuffer = Buffer.allocUnsafe(READ_BUFFER_SIZE);
    }
    return this.readBuffer;
  }

  /**
   * The response's user keeps a view of the bytes it was just given beyond this read (a write the
   * client's socket has queued, a body filter): the next read must not overwrite them.
   */
  pinReadBuffer(): void {
    this.readPinned = true;
  }

  /** One read of a plain-TCP socket: `n` bytes at the start of `buf` (which is read into again). */
  private onRead(n: number, buf: Buffer): true {
    const chunk = continueFiltered(this.socket, buf.subarray(0, n));
    if (chunk !== null) this.onData(chunk);
    // a paused parser keeps the rest of the read, the filter what it cannot decide on yet
    if (this.parser.bufferedBytes > 0 || continueHeld(this.socket)) this.readPinned = true;
    // (reading stops through socket.pause(), as for a stream-read socket)
    return true;
  }

  private onData(chunk: Buffer): void {
    const user = this.user;
    if (user === null) {
      // bytes on an idle connection: nothing asked for them, the connection cannot be trusted
      this.socket.destroy();
      return;
    }
    this.parsing = true;
    let err;
    try {
      err = this.parser.execute(chunk);
    } finally {
      this.parsing = false;
    }
    if (err !== undefined) {
      this.keepWhenParsed = false;
      const slot = this.slotToLeave;
      this.slotToLeave = undefined;
      slot?.leave();
      if (this.user === user) this.fail(UpstreamEvent.Protocol, err);
      // bytes after the response that was just released (a body longer than its framing): unusable
      else this.socket.destroy();
      return;
    }
    if (this.keepWhenParsed) {
      this.keepWhenParsed = false;
      const slot = this.slotToLeave;
      this.slotToLeave = undefined;
      // only now is the parser idle again: the connection may take the next request
      if (this.parser.isIdle && this.user === null) this.pool.keep(this);
      else if (this.user === null) this.socket.destroy();
      slot?.leave();
    }
  }

  private onEnd(): void {
    const user = this.user;
    if (user === null) return void this.socket.destroy();
    // what the 100-continue filter held back (a stream-read socket's filter has already handed it over)
    const held = takeContinueHeld(this.socket);
    if (held !== null) {
      this.onData(held);
      if (this.user !== user) return;
    }
    // ends a body delimited by the close (the user's onEnd releases the connection; not reusable)
    const err = this.parser.finish();
    if (this.user === user) this.fail(err === undefined ? UpstreamEvent.Broken : UpstreamEvent.Protocol, err);
  }

  private onTimeout(): void {
    if (this.user === null) return void this.socket.destroy();
    this.fail(this.state === CONNECTING ? UpstreamEvent.ConnectTimeout : this.sending ? UpstreamEvent.SendTimeout : UpstreamEvent.ReadTimeout, undefined);
  }

  private onClose(): void {
    const wasConnecting = this.state === CONNECTING;
    this.state = CLOSED;
    this.pool.forget(this);
    if (this.user !== null) this.fail(wasConnecting ? UpstreamEvent.ConnectFailed : UpstreamEvent.Broken, this.lastError);
  }

  /** Ends the request's use of the connection with a failure; the connection is destroyed. */
  private fail(event: UpstreamEvent, err: Error | undefined): void {
    const user = this.user!;
    this.user = null;
    this.socket.destroy();
    user.upstreamFailed(event, err);
  }

  /**
   * The response ended (or the user gave up, `reusable` false): back to the idle list when the
   * response and the pool allow it, else closed.
   */
  release(reusable: boolean, slotOf?: NodeGate): void {
    this.user = null;
    this.sending = false;
    if (this.readingPaused) {
      // paused for a slow (or gone) client on the chunk that ended the response: an idle
      // connection reads, or the next request's answer (and the upstream's close) would never be seen
      this.readingPaused = false;
      this.socket.resume();
    }
    if (this.state !== OPEN || !reusable) {
      this.socket.destroy();
      slotOf?.leave();
      return;
    }
    // from the parser's onEnd: kept once the parser has returned (a waiting request may take it at
    // once, and its expectResponse() needs an idle parser); the request's slot of the node's gate
    // is given back after that, so the request it admits finds this connection idle
    if (this.parsing) {
      this.keepWhenParsed = true;
      this.slotToLeave = slotOf;
      return;
    }
    if (this.parser.isIdle) this.pool.keep(this);
    else this.socket.destroy();
    slotOf?.leave();
  }

  /** The user leaves mid-request (client gone, send timeout): the connection cannot be reused. */
  abort(): void {
    this.user = null;
    this.socket.destroy();
  }

  get open(): boolean {
    return this.state === OPEN;
  }
}

/** The kept-alive connections of one node (one set of connection settings, one TLS server name). */
export class NodePool1 {
  private readonly idle: UpstreamConnection[] = [];
  /** retained no more (its node left the config): connections are closed after use */
  closed = false;

  constructor(
    readonly key: string,
    /** the target last resolved to this pool (a recompiled target with the same settings keeps the pool) */
    public target: UpstreamTarget,
    readonly node: UpstreamNode,
    readonly gate: NodeGate,
    readonly servername: string | undefined,
  ) {}

  /**
   * A connection for `user`: an idle one (upstreamReady is called at once), else a new one
   * (upstreamReady once connected, upstreamFailed if it cannot be).
   */
  acquire(user: UpstreamUser): UpstreamConnection {
    const conn = this.idle.pop();
    if (conn !== undefined) {
      conn.user = user;
      conn.reused = true;
      conn.parser.handler = user;
      // (its idle timeout runs on until upstreamReady's expect() sets the read timeout, in this tick)
      user.upstreamReady(conn);
      return conn;
    }
    return new UpstreamConnection(this, user);
  }

  /** Whether a connection that served `requests` may be kept after the current response. */
  mayKeep(requests: number): boolean {
    const keepalive = this.target.keepalive;
    if (keepalive.idleTimeout === 0 || this.closed) return false;
    return keepalive.requests === 0 || requests < keepalive.requests;
  }

  keep(conn: UpstreamConnection): void {
    const keepalive = this.target.keepalive;
    if (this.closed || this.idle.length >= keepalive.size) return void conn.socket.destroy();
    conn.setIdleTimeout(keepalive.idleTimeout);
    this.idle.push(conn);
  }

  forget(conn: UpstreamConnection): void {
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
  }

  close(): void {
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.socket.destroy();
  }
}

/**
 * The socket transport's pools, by node and settings (poolKey, plus the TLS server name for https
 * nodes). Pools outlive config changes as the node transport's do: `retain()` closes the idle
 * connections of nodes no longer referenced.
 */
export class Http1Pools {
  private readonly byKey = new Map<string, NodePool1>();
  /** hot-path cache for plain-http nodes: node object → pool (no key string per request) */
  private readonly byNode = new WeakMap<UpstreamNode, NodePool1>();

  nodePool(target: UpstreamTarget, node: UpstreamNode, servername: string | undefined): NodePool1 {
    if (target.scheme === 'http') {
      const cached = this.byNode.get(node);
      if (cached !== undefined && cached.target === target && !cached.closed) return cached;
    }
    const base = poolKey(target, node);
    const key = servername === undefined ? base : base + '|' + servername;
    let pool = this.byKey.get(key);
    if (pool === undefined) {
      pool = new NodePool1(key, target, node, sharedPools.nodePool(target, node).gate, servername);
      this.byKey.set(key, pool);
    } else if (pool.target !== target) {
      pool.target = target;
    }
    if (target.scheme === 'http') this.byNode.set(node, pool);
    return pool;
  }

  /** Closes the idle connections of pools whose poolKey is not in `keys`. */
  retain(keys: ReadonlySet<string>): void {
    for (const [key, pool] of this.byKey) {
      const bar = key.indexOf('|', key.indexOf('|k') + 1);
      const base = bar === -1 ? key : key.slice(0, bar);
      if (keys.has(base)) continue;
      this.byKey.delete(key);
      pool.close();
    }
  }

  close(): void {
    this.retain(new Set());
  }
}

export const http1Pools = new Http1Pools();
