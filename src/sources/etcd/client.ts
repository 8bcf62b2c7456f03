/**
 * A small etcd v3 client over etcd's HTTP/JSON gateway (`/v3/...`, the API APISIX uses), on undici;
 * a listing's pages go over etcd's gRPC API instead (grpc.ts), which costs etcd a fraction of the CPU.
 *
 * Keys and values travel base64-encoded; int64 fields (revisions, lease ids) arrive as JSON strings.
 * Revisions are returned as numbers (they stay far below 2^53); lease ids stay strings because they
 * use the full int64 range.
 */
import { readFileSync } from 'node:fs';
import * as undici from 'undici';
import type { Dispatcher } from 'undici';
import { ErrorCode, PorticoError } from '../../errors.ts';
import { provide } from '../../lazy-package.ts';
import { log } from '../../observability/log.ts';
import { GrpcKv, NotGrpcError, type GrpcRange, type RangePage } from './grpc.ts';

// every process with an etcd client has undici loaded (in a build, the CLI bundle's own copy): the
// node transport's pools use it rather than load another (upstream/pools.ts)
provide('undici', undici);

export interface EtcdTlsOptions {
  /** path of a PEM CA bundle to verify etcd's certificate */
  ca?: string;
  /** path of a PEM client certificate (mutual TLS) */
  cert?: string;
  /** path of the PEM key of `cert` */
  key?: string;
}

export interface EtcdClientOptions {
  /** e.g. ["http://127.0.0.1:2379"]; tried in order, rotating on connection errors */
  endpoints: string[];
  user?: string;
  password?: string;
  tls?: EtcdTlsOptions;
  /** per-request timeout in seconds (default 5) */
  timeout?: number;
}

export interface ResponseHeader {
  clusterId: string;
  memberId: string;
  /** the store revision when the request was served */
  revision: number;
  raftTerm: number;
}

export interface KeyValue {
  key: string;
  /** raw bytes of the value as UTF-8 text ('' for keys_only ranges) */
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
  /** lease id, when the key is attached to one */
  lease?: string;
}

export interface RangeOptions {
  /** range over every key starting with `key` */
  prefix?: boolean;
  /** explicit range end (exclusive); overrides `prefix` */
  rangeEnd?: string;
  limit?: number;
  /** read at this revision (0 / absent: latest) */
  revision?: number;
  /** serve from the local member without a quorum round-trip */
  serializable?: boolean;
  keysOnly?: boolean;
  countOnly?: boolean;
  /** pin the request to one endpoint (no failover) */
  endpoint?: string;
  signal?: AbortSignal;
}

export interface RangeResult {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

export interface PutOptions {
  /** lease id from grantLease() */
  lease?: string;
}

export type Compare =
  | { key: string; target: 'MOD'; result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL'; modRevision: number }
  | { key: string; target: 'VERSION'; result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL'; version: number }
  | { key: string; target: 'VALUE'; result: 'EQUAL' | 'GREATER' | 'LESS' | 'NOT_EQUAL'; value: string };

export type TxnOp =
  | { put: { key: string; value: string; lease?: string } }
  | { deleteRange: { key: string; prefix?: boolean } };

export interface TxnRequest {
  compare?: Compare[];
  success: TxnOp[];
  failure?: TxnOp[];
}

export interface Lease {
  id: string;
  ttl: number;
}

/** Raw JSON of a response header as the gateway sends it. */
export interface RawHeader {
  cluster_id?: string;
  member_id?: string;
  revision?: string;
  raft_term?: string;
}
export interface RawKeyValue {
  key?: string;
  value?: string;
  create_revision?: string;
  mod_revision?: string;
  version?: string;
  lease?: string;
}

const DEFAULT_TIMEOUT_S = 5;

export function encodeKey(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64');
}
export function decodeKey(b64: string | undefined): string {
  return b64 ? Buffer.from(b64, 'base64').toString('utf8') : '';
}

/** The exclusive end of the range holding every key that starts with `prefix`, base64. */
export function prefixRangeEnd(prefix: string): string {
  const bytes = Buffer.from(prefix, 'utf8');
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i]! < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]! += 1;
      return end.toString('base64');
    }
  }
  // prefix of only 0xff bytes (or empty): the range goes to the end of the keyspace
  return Buffer.from([0]).toString('base64');
}

export function parseHeader(h: RawHeader | undefined): ResponseHeader {
  return {
    clusterId: h?.cluster_id ?? '',
    memberId: h?.member_id ?? '',
    revision: Number(h?.revision ?? 0),
    raftTerm: Number(h?.raft_term ?? 0),
  };
}

/** Options of rangePrefix / rangePages. */
export interface PageOptions {
  /** keys per page, fixed (default: pages sized by bytes, see rangePages) */
  pageSize?: number;
  /** bytes per page (of keys and values, as UTF-16 code units: bytes for ASCII) when pageSize is not set (default PAGE_BYTES) */
  pageBytes?: number;
  /** pin the requests to one endpoint (no failover) */
  endpoint?: string;
  signal?: AbortSignal;
  /** start at this key (>= prefix) instead of at the prefix; the range still ends where the prefix ends */
  from?: string;
}

/** keys in the first page of a paged range (its size is not known yet) */
const FIRST_PAGE = 1000;
/** keys per page at most, however small they are */
const MAX_PAGE = 10_000;
/** bytes per page aimed at (keys and values) */
const PAGE_BYTES = 4 * 1024 * 1024;

/** How many keys the next page asks for: as many as fit in `pageBytes` at this page's mean size. */
function nextPageSize(page: readonly KeyValue[], pageBytes: number): number {
  let bytes = 0;
  for (const kv of page) bytes += kv.key.length + kv.value.length;
  const mean = Math.max(1, bytes / Math.max(1, page.length));
  return Math.max(1, Math.min(MAX_PAGE, Math.floor(pageBytes / mean)));
}

export function parseKeyValue(kv: RawKeyValue): KeyValue {
  const out: KeyValue = {
    key: decodeKey(kv.key),
    value: decodeKey(kv.value),
    createRevision: Number(kv.create_revision ?? 0),
    modRevision: Number(kv.mod_revision ?? 0),
    version: Number(kv.version ?? 0),
  };
  if (kv.lease && kv.lease !== '0') out.lease = kv.lease;
  return out;
}

/** Connection-level failures: the request may be retried on another endpoint. */
const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** Errors raised before the request reached etcd: safe to retry even for writes. */
const NOT_SENT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

function errorCodeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; e && depth < 4; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The gateway's error body: `{"error": "...", "message": "...", "code": <grpc code>}`. */
interface GatewayError {
  error?: string;
  message?: string;
  code?: number;
}

/** gRPC status 14 UNAVAILABLE (no leader, member stopping...): another member may answer. */
const GRPC_UNAVAILABLE = 14;

export function isAuthTokenError(message: string): boolean {
  return /invalid auth token|user name is empty|auth token expired/i.test(message);
}

/**
 * An etcd v3 client for one cluster. Requests go to the current endpoint; a connection error moves
 * to the next one (round robin) and retries once per endpoint.
 */
export class EtcdClient {
  readonly endpoints: readonly string[];
  readonly timeoutMs: number;
  /** undici dispatcher shared by unary requests and watches (TLS options live here) */
  readonly dispatcher: Dispatcher;
  private current = 0;
  private readonly user?: string;
  private readonly password?: string;
  private token?: string;
  private authenticating?: Promise<string>;
  private closed = false;
  /** the listing's transport (grpc.ts) */
  private readonly grpc: GrpcKv;
  /** endpoints that answered a gRPC call as no gRPC server does, then answered over JSON */
  private readonly jsonOnly = new Set<string>();

  constructor(opts: EtcdClientOptions) {
    if (!Array.isArray(opts.endpoints) || opts.endpoints.length === 0) {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, 'etcd: at least one endpoint is required');
    }
    this.endpoints = opts.endpoints.map((e) => {
      const url = new URL(e.includes('://') ? e : `http://${e}`);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new PorticoError(ErrorCode.CONFIG_INVALID, `etcd: endpoint ${e}: only http and https are supported`);
      }
      return url.origin;
    });
    this.timeoutMs = Math.round((opts.timeout ?? DEFAULT_TIMEOUT_S) * 1000);
    if (!(this.timeoutMs > 0)) throw new PorticoError(ErrorCode.CONFIG_INVALID, 'etcd: timeout must be > 0');
    if ((opts.user === undefined) !== (opts.password === undefined)) {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, 'etcd: user and password go together');
    }
    this.user = opts.user;
    this.password = opts.password;
    const tls = opts.tls ?? {};
    const files = {
      ...(tls.ca ? { ca: readFileSync(tls.ca) } : {}),
      ...(tls.cert ? { cert: readFileSync(tls.cert) } : {}),
      ...(tls.key ? { key: readFileSync(tls.key) } : {}),
    };
    this.grpc = new GrpcKv(files);
    this.dispatcher = new undici.Agent({
      connectTimeout: this.timeoutMs,
      keepAliveTimeout: 30_000,
      connect: {
        // TCP keep-alive helps the kernel notice a peer that vanished without a FIN.
        keepAlive: true,
        keepAliveInitialDelay: 10_000,
        ...files,
      },
    });
  }

  /** The endpoint requests currently go to. */
  get endpoint(): string {
    return this.endpoints[this.current]!;
  }

  /** Move to the next endpoint (after a failure on the current one). */
  rotate(from?: string): string {
    // Only rotate if nobody rotated away from `from` already (concurrent failures).
    if (from === undefined || from === this.endpoint) this.current = (this.current + 1) % this.endpoints.length;
    return this.endpoint;
  }

  /** Headers carrying the auth token (authenticating first when needed). */
  async authHeaders(signal?: AbortSignal): Promise<Record<string, string>> {
    if (this.user === undefined) return {};
    const token = this.token ?? (await this.authenticate(signal));
    return { authorization: token };
  }

  /** Forget the token so the next request authenticates again (expired or revoked token). */
  invalidateToken(token?: string): void {
    if (token === undefined || token === this.token) this.token = undefined;
  }

  get hasAuth(): boolean {
    return this.user !== undefined;
  }

  /** user/password → token; concurrent callers share one authentication. */
  authenticate(signal?: AbortSignal): Promise<string> {
    if (this.user === undefined) return Promise.resolve('');
    this.authenticating ??= (async () => {
      try {
        const res = await this.call<{ token?: string }>(
          '/v3/auth/authenticate',
          { name: this.user, password: this.password },
          { auth: false, signal, idempotent: true },
        );
        if (!res.token) throw new PorticoError(ErrorCode.ETCD_AUTH, 'etcd: authenticate returned no token');
        this.token = res.token;
        return res.token;
      } finally {
        this.authenticating = undefined;
      }
    })();
    return this.authenticating;
  }

  async range(key: string, opts: RangeOptions = {}): Promise<RangeResult> {
    const body: Record<string, unknown> = { key: encodeKey(key) };
    if (opts.rangeEnd !== undefined) body.range_end = encodeKey(opts.rangeEnd);
    else if (opts.prefix) body.range_end = prefixRangeEnd(key);
    if (opts.limit) body.limit = opts.limit;
    if (opts.revision) body.revision = opts.revision;
    if (opts.serializable) body.serializable = true;
    if (opts.keysOnly) body.keys_only = true;
    if (opts.countOnly) body.count_only = true;
    const res = await this.call<{ header?: RawHeader; kvs?: RawKeyValue[]; more?: boolean; count?: string }>(
      '/v3/kv/range',
      body,
      { endpoint: opts.endpoint, signal: opts.signal, idempotent: true },
    );
    return {
      header: parseHeader(res.header),
      kvs: (res.kvs ?? []).map(parseKeyValue),
      more: res.more === true,
      count: Number(res.count ?? 0),
    };
  }

  /**
   * Every key under `prefix` at one revision, read in pages (see rangePages). All pages are read at
   * the revision of the first one, so the result is a consistent snapshot even while keys change.
   */
  async rangePrefix(prefix: string, opts: PageOptions = {}): Promise<{ header: ResponseHeader; revision: number; kvs: KeyValue[] }> {
    const kvs: KeyValue[] = [];
    const { header, revision } = await this.rangePages(prefix, opts, (page) => {
      for (const kv of page) kvs.push(kv);
    });
    return { header, revision, kvs };
  }

  /**
   * rangePrefix page by page: `onPage` gets each page while the next one is already being fetched,
   * so a caller that works on a page (parsing, validating) overlaps its work with etcd's. A caller
   * that returns a promise is awaited before the next page is taken; one that yields to the event
   * loop while it works lets the next page's bytes be read meanwhile (etcd stops writing a page
   * the client does not read).
   *
   * Pages are sized by bytes unless `pageSize` fixes their key count: the first page has
   * FIRST_PAGE keys, each next one as many as fit in PAGE_BYTES at the previous page's mean key +
   * value size (at most MAX_PAGE keys, at least 1). etcd 3.4 walks its index from a page's first key
   * to the end of the range for every page: few large pages cost it less than many small ones (over
   * the JSON gateway, at 50,000 routes, pages of 2,000 cost etcd ~0.95 s of CPU, of 10,000 ~0.6 s;
   * over gRPC the whole listing ~0.1 s); sizing by bytes keeps a page of large objects
   * (certificates, plugin configs) from holding a hundred megabytes.
   */
  async rangePages(prefix: string, opts: PageOptions, onPage: (kvs: KeyValue[]) => void | Promise<void>): Promise<{ header: ResponseHeader; revision: number }> {
    const rangeEnd = Buffer.from(prefixRangeEnd(prefix), 'base64');
    const fetchPage = (key: Buffer, revision: number, limit: number) =>
      this.withFailover({ endpoint: opts.endpoint, signal: opts.signal, idempotent: true }, (endpoint, headers) =>
        this.rangePage(endpoint, { key, rangeEnd, limit, revision }, headers, opts.signal),
      );
    const pageBytes = opts.pageBytes ?? PAGE_BYTES;
    let res = await fetchPage(Buffer.from(opts.from ?? prefix, 'utf8'), 0, opts.pageSize ?? FIRST_PAGE);
    const header = res.header;
    const revision = header.revision;
    for (;;) {
      const page = res.kvs;
      let next: Promise<RangePage> | undefined;
      if (res.more && res.lastKey !== undefined) {
        // The next page starts right after the last key: the key plus a zero byte.
        next = fetchPage(Buffer.concat([res.lastKey, Buffer.from([0])]), revision, opts.pageSize ?? nextPageSize(page, pageBytes));
        // a failure surfaces at the await below; until then it must not count as unhandled
        next.catch(() => undefined);
      }
      await onPage(page);
      if (next === undefined) break;
      res = await next;
    }
    return { header, revision };
  }

  /**
   * One page of a listing: over gRPC (grpc.ts: a fraction of etcd's CPU for the same answer), or
   * over the JSON gateway on an endpoint that answered the gRPC call as something else than a gRPC
   * server (an HTTP/1.1 proxy in front of etcd) and the JSON call right after it: that endpoint's
   * pages then all go through the gateway.
   */
  private async rangePage(endpoint: string, req: GrpcRange, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<RangePage> {
    if (this.jsonOnly.has(endpoint)) return this.rangePageJson(endpoint, req, headers, signal);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    try {
      return await this.grpc.range(endpoint, req, headers.authorization, signal ? AbortSignal.any([signal, timeout]) : timeout);
    } catch (err) {
      // an answer in another protocol (ERR_HTTP2_ERROR: the peer does not speak HTTP/2), or none
      const unclear = err instanceof NotGrpcError && err.unclear;
      if (!(err instanceof NotGrpcError) && errorCodeOf(err) !== 'ERR_HTTP2_ERROR') throw err;
      const page = await this.rangePageJson(endpoint, req, headers, signal);
      // a stream closed without an answer may also have been a member going down: gRPC is tried
      // again on the next page (an HTTP/1.1 proxy that drops the connection costs a try per page)
      if (!unclear && !this.jsonOnly.has(endpoint)) {
        this.jsonOnly.add(endpoint);
        log.info({ endpoint, reason: (err as Error).message }, 'etcd endpoint does not answer gRPC: listing over the JSON gateway');
      }
      return page;
    }
  }

  private async rangePageJson(endpoint: string, req: GrpcRange, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<RangePage> {
    const body = { key: req.key.toString('base64'), range_end: req.rangeEnd.toString('base64'), limit: req.limit, ...(req.revision ? { revision: req.revision } : {}) };
    const res = await this.post<{ header?: RawHeader; kvs?: RawKeyValue[]; more?: boolean }>(endpoint, '/v3/kv/range', body, headers, signal, false);
    const raw = res.kvs ?? [];
    const kvs = new Array<KeyValue>(raw.length);
    for (let i = 0; i < raw.length; i++) kvs[i] = parseKeyValue(raw[i]!);
    const lastKey = raw.length > 0 ? Buffer.from(raw[raw.length - 1]!.key ?? '', 'base64') : undefined;
    return { header: parseHeader(res.header), kvs, more: res.more === true, lastKey };
  }

  async put(key: string, value: string, opts: PutOptions = {}): Promise<ResponseHeader> {
    const body: Record<string, unknown> = { key: encodeKey(key), value: encodeKey(value) };
    if (opts.lease) body.lease = opts.lease;
    const res = await this.call<{ header?: RawHeader }>('/v3/kv/put', body, { idempotent: true });
    return parseHeader(res.header);
  }

  /** Delete `key` (or every key under it with `prefix`); returns how many keys were deleted. */
  async delete(key: string, opts: { prefix?: boolean } = {}): Promise<{ header: ResponseHeader; deleted: number }> {
    const body: Record<string, unknown> = { key: encodeKey(key) };
    if (opts.prefix) body.range_end = prefixRangeEnd(key);
    const res = await this.call<{ header?: RawHeader; deleted?: string }>('/v3/kv/deleterange', body, {
      idempotent: true,
    });
    return { header: parseHeader(res.header), deleted: Number(res.deleted ?? 0) };
  }

  /** An atomic transaction: every op of the taken branch shares one revision. */
  async txn(req: TxnRequest): Promise<{ header: ResponseHeader; succeeded: boolean }> {
    const op = (o: TxnOp) => {
      if ('put' in o) {
        const p: Record<string, unknown> = { key: encodeKey(o.put.key), value: encodeKey(o.put.value) };
        if (o.put.lease) p.lease = o.put.lease;
        return { request_put: p };
      }
      const d: Record<string, unknown> = { key: encodeKey(o.deleteRange.key) };
      if (o.deleteRange.prefix) d.range_end = prefixRangeEnd(o.deleteRange.key);
      return { request_delete_range: d };
    };
    const compare = (c: Compare) => {
      const base = { key: encodeKey(c.key), target: c.target, result: c.result };
      if (c.target === 'MOD') return { ...base, mod_revision: c.modRevision };
      if (c.target === 'VERSION') return { ...base, version: c.version };
      return { ...base, value: encodeKey(c.value) };
    };
    const res = await this.call<{ header?: RawHeader; succeeded?: boolean }>(
      '/v3/kv/txn',
      { compare: (req.compare ?? []).map(compare), success: req.success.map(op), failure: (req.failure ?? []).map(op) },
      // a txn is only retried when it surely never reached etcd
      { idempotent: false },
    );
    return { header: parseHeader(res.header), succeeded: res.succeeded === true };
  }

  async grantLease(ttl: number): Promise<Lease> {
    const res = await this.call<{ ID?: string; TTL?: string; error?: string }>('/v3/lease/grant', { TTL: ttl }, {
      idempotent: false,
    });
    if (!res.ID) throw new PorticoError(ErrorCode.ETCD_UNAVAILABLE, `etcd: lease grant failed: ${res.error ?? 'no id'}`);
    return { id: res.ID, ttl: Number(res.TTL ?? ttl) };
  }

  /** Refresh a lease once; returns the new TTL in seconds (0: the lease no longer exists). */
  async keepAliveOnce(leaseId: string): Promise<number> {
    const res = await this.call<{ result?: { TTL?: string } }>('/v3/lease/keepalive', { ID: leaseId }, {
      idempotent: true,
      stream: true,
    });
    return Number(res.result?.TTL ?? 0);
  }

  async revokeLease(leaseId: string): Promise<void> {
    await this.call('/v3/lease/revoke', { ID: leaseId }, { idempotent: true });
  }

  async status(opts: { endpoint?: string; signal?: AbortSignal } = {}): Promise<{
    header: ResponseHeader;
    version: string;
    leader: string;
  }> {
    const res = await this.call<{ header?: RawHeader; version?: string; leader?: string }>(
      '/v3/maintenance/status',
      {},
      { endpoint: opts.endpoint, signal: opts.signal, idempotent: true },
    );
    return { header: parseHeader(res.header), version: res.version ?? '', leader: res.leader ?? '' };
  }

  /**
   * POST `body` to `path` and return the decoded JSON. Without a pinned endpoint, connection errors
   * fail over to the next endpoint (each endpoint tried once). An invalid/expired auth token
   * triggers one re-authentication and retry.
   */
  call<T>(
    path: string,
    body: unknown,
    opts: { endpoint?: string; signal?: AbortSignal; idempotent: boolean; auth?: boolean; stream?: boolean },
  ): Promise<T> {
    return this.withFailover(opts, (endpoint, headers) => this.post<T>(endpoint, path, body, headers, opts.signal, opts.stream === true));
  }

  /** `send` on the current endpoint, moving to the next on a connection error (see call). */
  private async withFailover<T>(
    opts: { endpoint?: string; signal?: AbortSignal; idempotent: boolean; auth?: boolean },
    send: (endpoint: string, headers: Record<string, string>) => Promise<T>,
  ): Promise<T> {
    if (this.closed) throw new PorticoError(ErrorCode.ETCD_UNAVAILABLE, 'etcd: client closed');
    const attempts = opts.endpoint ? 1 : this.endpoints.length;
    let reauthenticated = false;
    let lastErr: unknown;
    for (let i = 0; i < attempts; ) {
      const endpoint = opts.endpoint ?? this.endpoint;
      let headers: Record<string, string> = {};
      if (opts.auth !== false) headers = await this.authHeaders(opts.signal);
      try {
        return await send(endpoint, headers);
      } catch (err) {
        lastErr = err;
        if (opts.signal?.aborted) throw err;
        if (err instanceof EtcdResponseError) {
          if (opts.auth !== false && this.hasAuth && !reauthenticated && isAuthTokenError(err.message)) {
            reauthenticated = true;
            this.invalidateToken(headers.authorization);
            continue;
          }
          if (err.grpcCode !== GRPC_UNAVAILABLE || !opts.idempotent) throw err;
        } else {
          // our own per-request deadline fired: the member is not answering, try the next one
          const code = (err as Error)?.name === 'TimeoutError' ? 'ETIMEDOUT' : errorCodeOf(err);
          const retryable = opts.idempotent ? code !== undefined && CONNECTION_ERRORS.has(code) : NOT_SENT_ERRORS.has(code ?? '');
          if (!retryable) throw toPorticoError(err, endpoint);
        }
        if (!opts.endpoint) this.rotate(endpoint);
        i++;
      }
    }
    throw toPorticoError(lastErr, opts.endpoint ?? this.endpoint);
  }

  private async post<T>(
    endpoint: string,
    path: string,
    body: unknown,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    stream: boolean,
  ): Promise<T> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const res = await undici.request(endpoint + path, {
      method: 'POST',
      dispatcher: this.dispatcher,
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
    let text: string;
    if (stream) {
      // Streaming endpoints (lease keepalive) answer with one JSON line per message and keep the
      // response open; read the first message, then drop the stream.
      text = await readFirstJsonLine(res.body);
    } else {
      text = await res.body.text();
    }
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new EtcdResponseError(`etcd ${endpoint}${path}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`, res.statusCode);
    }
    const gwErr = (json as { error?: unknown }).error;
    if (res.statusCode !== 200 || gwErr !== undefined) {
      const e = (typeof gwErr === 'object' && gwErr ? gwErr : json) as GatewayError & { grpc_code?: number };
      const message = e.message ?? (typeof gwErr === 'string' ? gwErr : `HTTP ${res.statusCode}`);
      throw new EtcdResponseError(`etcd ${endpoint}${path}: ${message}`, res.statusCode, e.code ?? e.grpc_code);
    }
    return json as T;
  }

  /** Release all sockets. Further requests fail. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.grpc.close();
    await this.dispatcher.destroy();
  }
}

async function readFirstJsonLine(body: Dispatcher.ResponseData['body']): Promise<string> {
  let buf = '';
  try {
    for await (const chunk of body) {
      buf += (chunk as Buffer).toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl >= 0) return buf.slice(0, nl);
    }
    return buf;
  } finally {
    body.destroy();
  }
}

/** etcd answered, with an error. `grpcCode` is the gRPC status code etcd reported. */
export class EtcdResponseError extends PorticoError {
  readonly statusCode: number;
  readonly grpcCode?: number;
  constructor(message: string, statusCode: number, grpcCode?: number) {
    const auth = /authentication failed|permission denied|invalid user|user name is empty|invalid auth token/i.test(message);
    super(auth ? ErrorCode.ETCD_AUTH : ErrorCode.ETCD_UNAVAILABLE, message);
    this.name = 'EtcdResponseError';
    this.statusCode = statusCode;
    this.grpcCode = grpcCode;
  }
}

export function toPorticoError(err: unknown, endpoint: string): PorticoError {
  if (err instanceof PorticoError) return err;
  const code = errorCodeOf(err);
  const msg = err instanceof Error ? err.message : String(err);
  return new PorticoError(ErrorCode.ETCD_UNAVAILABLE, `etcd ${endpoint}: ${code ? `${code}: ` : ''}${msg}`, {
    cause: err,
  });
}
