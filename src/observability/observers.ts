import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { AccessLog } from './access-log.ts';
import type { ExchangeRecord } from './exchange.ts';
import type { TrafficStats } from './traffic.ts';
import type { RequestTrace, Tracer } from './tracing.ts';
import type { PluginRun } from '../plugins/run.ts';
import type { UpstreamNode, UpstreamTarget } from '../upstream/types.ts';

/** The plugins' request id (request-id plugin) is kept under this var for the access log. */
export const REQUEST_ID_VAR = 'request_id';

/**
 * A request being observed: the record the observers get, filled in by the transport as the
 * request goes (the route when matched, the node on each attempt, the status when the head is
 * written), plus its trace. One object per request, allocated at the head.
 */
export interface ObservedRequest extends ExchangeRecord {
  trace: RequestTrace | undefined;
  /** the trace context to send upstream (tracing.propagate; undefined: the client's headers go as they are) */
  upstreamTrace: RequestTrace | undefined;
  /** the plugin run, read at the end for the consumer and the request id */
  run: PluginRun | undefined;
  /** the client sent a traceparent or tracestate (replaced by the gateway's when it propagates) */
  clientTrace: boolean;
  /** the client's header list (the access log reads Referer and User-Agent from it at the end) */
  rawHeaders: readonly string[];
  /** performance.now() when the first attempt on a node started (0: none yet) */
  upstreamStart: number;
  /** the observers already have it (finish is called once) */
  reported: boolean;
}

/**
 * Everything that watches requests in this process: the traffic statistics (always: /metrics and
 * the dashboard read them), the access log and the tracer (when configured). The transports call
 * begin() at each request head and finish() once, when the response is complete or the client gone.
 */
export class RequestObservers {
  constructor(
    readonly traffic: TrafficStats | undefined,
    readonly accessLog: AccessLog | undefined,
    readonly tracer: Tracer | undefined,
  ) {}

  begin(method: string, uri: string, host: string | undefined, httpVersion: string, clientAddress: string, clientPort: number, rawHeaders: readonly string[]): ObservedRequest {
    const start = performance.now();
    const tracer = this.tracer;
    let trace: RequestTrace | undefined;
    let clientTrace = false;
    if (tracer !== undefined) {
      const traceparent = headerValue(rawHeaders, 'traceparent');
      const tracestate = headerValue(rawHeaders, 'tracestate');
      clientTrace = traceparent !== undefined || tracestate !== undefined;
      trace = tracer.begin(traceparent, tracestate, start);
    }
    return {
      time: Date.now(),
      start,
      duration: 0,
      clientAddress,
      clientPort,
      method,
      host: host ?? '',
      uri,
      protocol: httpVersion === '1.1' ? 'HTTP/1.1' : 'HTTP/' + httpVersion,
      status: 0,
      bytesIn: 0,
      bytesOut: 0,
      aborted: false,
      routeId: '',
      serviceId: '',
      upstream: '',
      upstreamAddr: '',
      upstreamStatus: 0,
      upstreamDuration: -1,
      failedAttempts: undefined,
      consumer: '',
      requestId: '',
      traceId: trace === undefined ? '' : trace.traceId,
      referer: '',
      userAgent: '',
      rawHeaders,
      trace,
      upstreamTrace: trace !== undefined && tracer!.propagate ? trace : undefined,
      clientTrace,
      run: undefined,
      upstreamStart: 0,
      reported: false,
    };
  }

  /** The request is over (`aborted`: the client left before its response was complete). */
  finish(rec: ObservedRequest, aborted: boolean): void {
    if (rec.reported) return;
    rec.reported = true;
    rec.aborted = aborted;
    rec.duration = (performance.now() - rec.start) / 1000;
    upstreamEnded(rec);
    const run = rec.run;
    if (run !== undefined) {
      if (run.consumer !== undefined) rec.consumer = run.consumer.username;
      const id = run.vars.get(REQUEST_ID_VAR);
      if (typeof id === 'string') rec.requestId = id;
      rec.run = undefined;
    }
    this.traffic?.finished(rec);
    const accessLog = this.accessLog;
    if (accessLog !== undefined) {
      rec.referer = headerValue(rec.rawHeaders, 'referer') ?? '';
      rec.userAgent = headerValue(rec.rawHeaders, 'user-agent') ?? '';
      accessLog.finished(rec);
    }
    if (rec.trace !== undefined) this.tracer!.end(rec.trace, rec);
  }
}

/**
 * Bytes written to a socket so far, in O(1): what it sent plus what waits in its buffer. Not
 * `socket.bytesWritten`: that getter walks every buffered chunk, so a client that pipelines
 * requests and reads no answers (thousands of buffered responses) made each request cost more than
 * the last (found by the send-timeout test: the gateway was too busy to cut the client in time).
 */
export function bytesWrittenOf(socket: Socket): number {
  return ((socket as unknown as { _bytesDispatched?: number })._bytesDispatched ?? 0) + socket.writableLength;
}

/** A header's value, repeated fields joined with ',' (`lower`: its name in lower case). */
function headerValue(raw: readonly string[], lower: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === lower.length && raw[i]!.toLowerCase() === lower) value = value === undefined ? raw[i + 1] : value + ',' + raw[i + 1];
  }
  return value;
}

/** An attempt on a node starts: the last node tried is the one the record names. */
export function attemptStarted(rec: ObservedRequest, upstream: UpstreamTarget, node: UpstreamNode): void {
  if (rec.upstreamStart === 0) rec.upstreamStart = performance.now();
  else if (rec.upstreamAddr !== '') (rec.failedAttempts ??= []).push({ addr: rec.upstreamAddr, status: rec.upstreamStatus });
  rec.upstream = upstream.key;
  rec.upstreamAddr = node.key;
  rec.upstreamStatus = 0;
}

/** The upstream's part is over (its response ended, or the last attempt failed): seconds since the first attempt. */
export function upstreamEnded(rec: ObservedRequest): void {
  if (rec.upstreamStart !== 0 && rec.upstreamDuration < 0) rec.upstreamDuration = (performance.now() - rec.upstreamStart) / 1000;
}
