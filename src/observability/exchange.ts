/**
 * What one request through the gateway was, once it is over: the record both transports fill in
 * (proxy/http1 for the socket transport, proxy/http.ts for node:http, server/http2-front.ts for
 * HTTP/2) and hand to the observers — the access log, the traffic statistics behind /metrics and
 * the dashboard, and the tracer. One plain object per request; observers must not keep it.
 */
export interface ExchangeRecord {
  /** wall clock when the request head was read (ms since the epoch) */
  time: number;
  /** performance.now() when the request head was read */
  start: number;
  /** seconds from the request head read to the response's last byte written (or the client gone) */
  duration: number;
  clientAddress: string;
  clientPort: number;
  method: string;
  /** the Host the request named ('' when none) */
  host: string;
  /** the request target as the client sent it (path and query) */
  uri: string;
  /** 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0' */
  protocol: string;
  /** the status sent to the client; 0 when no response head was sent (the client left first) */
  status: number;
  /** request bytes read from the client for this request: head and body as received */
  bytesIn: number;
  /** response bytes written to the client for this request: head and body */
  bytesOut: number;
  /** the client went away before the response was complete */
  aborted: boolean;
  /** the matched route's id ('' when no route matched) */
  routeId: string;
  /** the route's service id ('' when none) */
  serviceId: string;
  /** the upstream: 'upstreams/<id>', or 'routes/<id>' / 'services/<id>' when inline ('' when none) */
  upstream: string;
  /** 'host:port' of the last node tried ('' when none was) */
  upstreamAddr: string;
  /** that node's response status (0: none, e.g. it failed or timed out) */
  upstreamStatus: number;
  /**
   * attempts before the last one that failed (retries): node and status (0: no response); undefined
   * when the first attempt was the last
   */
  failedAttempts: Array<{ addr: string; status: number }> | undefined;
  /** seconds from the first attempt's start to the upstream response's end (-1: no upstream was tried) */
  upstreamDuration: number;
  /** the authenticated consumer's username ('' when none) */
  consumer: string;
  /** X-Request-Id as sent upstream (request-id plugin) or received ('' when none) */
  requestId: string;
  /** the W3C trace id of the request ('' when tracing is off) */
  traceId: string;
  /** Referer and User-Agent as the client sent them ('' when absent; filled only when an access log is written) */
  referer: string;
  userAgent: string;
}

/** Something that wants each finished request. */
export interface ExchangeObserver {
  finished(record: ExchangeRecord): void;
}

/** Status class label of a status: '2xx' ... '5xx', and '000' for no response sent. */
export function statusClass(status: number): string {
  if (status < 100 || status > 599) return '000';
  return STATUS_CLASSES[(status / 100) | 0]!;
}
const STATUS_CLASSES = ['000', '1xx', '2xx', '3xx', '4xx', '5xx'];

/**
 * Request traffic as plain JSON: what a process counted since it started. Workers send theirs to the
 * primary, which merges them (mergeTraffic in traffic.ts) for /metrics, /status/traffic and the
 * dashboard. Counters only grow; rates are differences between two snapshots.
 */
export interface TrafficSnapshot {
  /** Date.now() when taken */
  at: number;
  /** upper bounds (seconds) of the duration histograms' buckets; a last +Inf bucket is implicit */
  buckets: number[];
  routes: RouteTraffic[];
  upstreams: NodeTraffic[];
  /** client connections open now (HTTP listeners) */
  connections: number;
}

export interface DurationHistogram {
  /** per bucket, not cumulative: counts[i] = observations in (buckets[i-1], buckets[i]]; length buckets.length + 1 */
  counts: number[];
  /** sum of the observations, seconds */
  sum: number;
  count: number;
}

export interface RouteTraffic {
  /** route id, '' for requests no route matched */
  route: string;
  service: string;
  /** requests by status class ('1xx' ... '5xx', '000': no response sent) */
  codes: Record<string, number>;
  duration: DurationHistogram;
  /** only requests that reached an upstream */
  upstreamDuration: DurationHistogram;
  bytesIn: number;
  bytesOut: number;
}

export interface NodeTraffic {
  /** 'upstreams/<id>', or 'routes/<id>' / 'services/<id>' for an inline upstream (ExchangeRecord.upstream) */
  upstream: string;
  /** 'host:port' */
  node: string;
  /** upstream responses by status class; '000': the attempt failed without a response */
  codes: Record<string, number>;
  /** the last failed attempt or 5xx answer of this node: when (ms since epoch) and what */
  lastError?: { at: number; status: number; route: string };
}
