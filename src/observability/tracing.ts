import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Context, Span, SpanContext, TraceState } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import type { BasicTracerProvider, IdGenerator, ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ErrorCode, PorticoError } from '../errors.ts';
import type { ExchangeRecord } from './exchange.ts';
import { log } from './log.ts';

/**
 * W3C Trace Context for every request, and OpenTelemetry export of one SERVER span per request.
 *
 * Two modes, chosen once when the gateway starts:
 * - propagate-only (no `otlp`): the gateway reads the client's traceparent, continues its trace (or
 *   starts one) and hands the upstream a traceparent whose parent id is a fresh span id of the
 *   gateway's own. No OpenTelemetry code is loaded and nothing is recorded: ids come from a pool of
 *   crypto-random bytes, so a request costs a header parse, two short hex strings and one object.
 * - exporting (`otlp` set): the OpenTelemetry SDK is imported on demand (a gateway without tracing
 *   never loads it). Each request gets a SERVER span, parented on the client's span when the client
 *   sent a valid traceparent; the traceparent sent upstream carries the span's own id, so the
 *   upstream's spans hang under the gateway's. Spans go through a bounded BatchSpanProcessor (full
 *   queue: spans are dropped, the request is never held) to an OTLP/HTTP JSON exporter.
 *
 * Sampled flag (trace-flags bit 0, "the caller may have recorded trace data"):
 * - a valid client traceparent: exporting → the SDK's ParentBased sampler follows the client's flag
 *   and the upstream gets the gateway's decision (01 recorded, 00 not); propagate-only → the client's
 *   sampled and random bits are passed on unchanged (the gateway does not record, so it must not
 *   overrule whoever decided), the reserved bits are zeroed as the spec requires of a sender.
 * - no or an invalid traceparent: exporting → a new trace sampled by `sample_ratio`;
 *   propagate-only → a new trace with flags 00: the gateway recorded nothing, and 01 would make
 *   every ParentBased upstream record 100 % of gateway-started traces with a parent no backend has.
 *   An upstream that wants its own share of those uses a root sampler for unsampled remote parents.
 */

export interface TracingOptions {
  /** send a traceparent upstream on every request (the client's trace continued, or a new one) */
  propagate: boolean;
  otlp?: {
    /** full URL, e.g. http://127.0.0.1:4318/v1/traces */
    endpoint: string;
    headers?: Record<string, string>;
    service_name: string;
    /** share of new traces (no or invalid client traceparent) that are recorded, 0..1 */
    sample_ratio: number;
    /** bound of one export request, and of shutdown's flush (default 10 s) */
    timeout_ms?: number;
  };
}

export interface RequestTrace {
  /** 32 lowercase hex */
  traceId: string;
  /** the traceparent header value to send upstream: version 00, this trace id, the gateway's span id, flags */
  traceparent: string;
  /** tracestate to pass upstream unchanged (undefined: none) */
  tracestate: string | undefined;
}

/** A request's trace while it is exporting: the open span rides along until end(). */
interface ExportedRequestTrace extends RequestTrace {
  span: Span;
}

/** The parts of a valid traceparent that the gateway uses. */
export interface ParsedTraceparent {
  traceId: string;
  /** the client's span id: the parent of the gateway's span */
  parentId: string;
  /** trace-flags as a number (bit 0: sampled) */
  flags: number;
}

/**
 * Parses a traceparent header value per W3C Trace Context level 1; undefined when it is absent or
 * invalid (then the caller starts a new trace and drops tracestate). Version 00 must be exactly 55
 * characters; a later version is read by its first four fields and may go on after a '-'.
 */
export function parseTraceparent(value: string | undefined): ParsedTraceparent | undefined {
  if (value === undefined) return undefined;
  const length = value.length;
  if (length < 55) return undefined;
  const v0 = hexValue(value.charCodeAt(0));
  const v1 = hexValue(value.charCodeAt(1));
  if (v0 < 0 || v1 < 0) return undefined;
  const version = (v0 << 4) | v1;
  if (version === 0xff) return undefined;
  if (version === 0 ? length !== 55 : length > 55 && value.charCodeAt(55) !== DASH) return undefined;
  if (value.charCodeAt(2) !== DASH || value.charCodeAt(35) !== DASH || value.charCodeAt(52) !== DASH) return undefined;
  // one pass over both ids: every character lowercase hex, and at least one non-zero in each
  let traceNonZero = 0;
  for (let i = 3; i < 35; i++) {
    const h = hexValue(value.charCodeAt(i));
    if (h < 0) return undefined;
    traceNonZero |= h;
  }
  let parentNonZero = 0;
  for (let i = 36; i < 52; i++) {
    const h = hexValue(value.charCodeAt(i));
    if (h < 0) return undefined;
    parentNonZero |= h;
  }
  if (traceNonZero === 0 || parentNonZero === 0) return undefined;
  const f0 = hexValue(value.charCodeAt(53));
  const f1 = hexValue(value.charCodeAt(54));
  if (f0 < 0 || f1 < 0) return undefined;
  return { traceId: value.slice(3, 35), parentId: value.slice(36, 52), flags: (f0 << 4) | f1 };
}

const DASH = 0x2d;

/** 0..15 for '0'-'9' and 'a'-'f'; -1 for anything else (upper case included: the spec says lowercase) */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** flags sent upstream in propagate-only mode, by (client flags & 0x03): sampled and random kept */
const FLAGS_HEX = ['00', '01', '02', '03'];
const ZERO_TRACE_ID = '00000000000000000000000000000000';
const ZERO_SPAN_ID = '0000000000000000';

/**
 * Trace and span ids from crypto-random bytes: a 4 KiB pool refilled by one randomFillSync call and
 * hex-encoded whole (8 KiB of hex, about 170 requests' worth); an id is then a substring. Measured
 * on Node 20: ~20 ns for a span id against ~70 ns for Buffer#toString('hex') of 8 bytes per id
 * and far more for randomBytes() per request (a Buffer and a syscall each time).
 */
class RandomIds implements IdGenerator {
  private readonly bytes = Buffer.allocUnsafeSlow(4096);
  private hexPool = '';
  private offset = 8192;

  private hex(chars: number): string {
    if (this.offset + chars > 8192) {
      randomFillSync(this.bytes);
      this.hexPool = this.bytes.toString('hex');
      this.offset = 0;
    }
    const start = this.offset;
    this.offset = start + chars;
    return this.hexPool.slice(start, start + chars);
  }

  generateTraceId(): string {
    let id = this.hex(32);
    while (id === ZERO_TRACE_ID) id = this.hex(32); // invalid per the spec; 2^-128, but free to check
    return id;
  }

  generateSpanId(): string {
    let id = this.hex(16);
    while (id === ZERO_SPAN_ID) id = this.hex(16);
    return id;
  }
}

/**
 * The gateway's tracer: one per process. `begin()` at the request head, `end()` when the exchange
 * record is complete. Tracer.create picks the mode; this base class is propagate-only.
 */
export class Tracer {
  /** whether the transports send `traceparent` (and `tracestate`) upstream */
  readonly propagate: boolean;
  protected readonly ids = new RandomIds();

  protected constructor(options: TracingOptions) {
    this.propagate = options.propagate;
  }

  static async create(options: TracingOptions, resource?: { instanceId?: string }): Promise<Tracer> {
    if (!options.otlp) return new Tracer(options);
    return ExportingTracer.start(options, options.otlp, resource);
  }

  /** per request, at the head: the client's traceparent/tracestate header values (undefined when absent) */
  begin(traceparent: string | undefined, tracestate: string | undefined, _startTime: number): RequestTrace {
    const spanId = this.ids.generateSpanId();
    const parent = parseTraceparent(traceparent);
    if (parent === undefined) {
      const traceId = this.ids.generateTraceId();
      return { traceId, traceparent: '00-' + traceId + '-' + spanId + '-00', tracestate: undefined };
    }
    return {
      traceId: parent.traceId,
      traceparent: '00-' + parent.traceId + '-' + spanId + '-' + FLAGS_HEX[parent.flags & 0x03],
      tracestate: tracestate || undefined,
    };
  }

  /** per request, when it is over: ends the span (when exporting) with attributes from the record */
  end(_trace: RequestTrace, _record: ExchangeRecord): void {}

  /** flush pending spans and stop the exporter */
  async shutdown(): Promise<void> {}
}

type OtlpOptions = NonNullable<TracingOptions['otlp']>;
type ApiModule = typeof import('@opentelemetry/api');
type CoreModule = typeof import('@opentelemetry/core');

/** How often at most an export failure is logged (the collector being down fails every batch). */
const EXPORT_WARN_INTERVAL_MS = 30_000;

class ExportingTracer extends Tracer {
  private readonly api: ApiModule;
  private readonly core: CoreModule;
  private readonly provider: BasicTracerProvider;
  private readonly tracer: ReturnType<BasicTracerProvider['getTracer']>;
  private readonly timeoutMs: number;
  private shutdownPromise: Promise<void> | undefined;

  private constructor(
    options: TracingOptions,
    api: ApiModule,
    core: CoreModule,
    provider: BasicTracerProvider,
    timeoutMs: number,
  ) {
    super(options);
    this.api = api;
    this.core = core;
    this.provider = provider;
    this.tracer = provider.getTracer('portico');
    this.timeoutMs = timeoutMs;
  }

  static async start(options: TracingOptions, otlp: OtlpOptions, resource?: { instanceId?: string }): Promise<Tracer> {
    const ratio = otlp.sample_ratio;
    if (typeof ratio !== 'number' || !(ratio >= 0 && ratio <= 1)) {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, `tracing.otlp.sample_ratio: must be a number from 0 to 1 (got ${String(ratio)})`);
    }
    let url: URL;
    try {
      url = new URL(otlp.endpoint);
    } catch {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, `tracing.otlp.endpoint: not a URL: ${JSON.stringify(otlp.endpoint)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, `tracing.otlp.endpoint: must be http or https (got ${url.protocol})`);
    }
    const timeoutMs = otlp.timeout_ms ?? 10_000;

    // Loaded here, not at the top of the file: only a gateway that exports pays for the SDK.
    const [api, core, sdk, exporterModule, resources, semconv] = await Promise.all([
      import('@opentelemetry/api'),
      import('@opentelemetry/core'),
      import('@opentelemetry/sdk-trace-base'),
      import('@opentelemetry/exporter-trace-otlp-http'),
      import('@opentelemetry/resources'),
      import('@opentelemetry/semantic-conventions'),
    ]);

    const exporter = new exporterModule.OTLPTraceExporter({
      url: otlp.endpoint,
      ...(otlp.headers ? { headers: { ...otlp.headers } } : {}),
      timeoutMillis: timeoutMs,
    });
    const attributes: Record<string, string> = { [semconv.ATTR_SERVICE_NAME]: otlp.service_name };
    if (resource?.instanceId) attributes['service.instance.id'] = resource.instanceId;
    const provider = new sdk.BasicTracerProvider({
      resource: resources.defaultResource().merge(resources.resourceFromAttributes(attributes)),
      // a client's sampled flag is followed; ratio applies to traces the gateway starts
      sampler: new sdk.ParentBasedSampler({ root: new sdk.TraceIdRatioBasedSampler(ratio) }),
      idGenerator: new RandomIds(),
      spanProcessors: [
        new sdk.BatchSpanProcessor(reportingExporter(exporter, otlp.endpoint, core), {
          // bounded: at 40k req/s a collector that cannot keep up costs dropped spans, not memory
          maxQueueSize: 8192,
          maxExportBatchSize: 512,
          scheduledDelayMillis: 1000,
          exportTimeoutMillis: timeoutMs,
        }),
      ],
    });
    return new ExportingTracer(options, api, core, provider, timeoutMs);
  }

  override begin(traceparent: string | undefined, tracestate: string | undefined, startTime: number): RequestTrace {
    const parent = parseTraceparent(traceparent);
    const api = this.api;
    let context: Context = api.ROOT_CONTEXT;
    if (parent !== undefined) {
      const spanContext: SpanContext = {
        traceId: parent.traceId,
        spanId: parent.parentId,
        traceFlags: parent.flags & api.TraceFlags.SAMPLED,
        isRemote: true,
      };
      if (tracestate) spanContext.traceState = parseTraceState(this.core, tracestate);
      context = api.trace.setSpanContext(context, spanContext);
    }
    // The name is settled at end(): at the head neither the method nor the route is known here.
    // Times go in as epoch ms (timeOrigin + performance.now()), start and end alike: the SDK tells a
    // raw performance.now() value from epoch ms by comparing it with its own now(), and an end of
    // start + duration that rounds past that would be read as epoch ms, in 1970.
    const span = this.tracer.startSpan('HTTP', { kind: api.SpanKind.SERVER, startTime: TIME_ORIGIN + startTime }, context);
    const own = span.spanContext();
    const trace: ExportedRequestTrace = {
      traceId: own.traceId,
      traceparent: '00-' + own.traceId + '-' + own.spanId + (own.traceFlags & 1 ? '-01' : '-00'),
      tracestate: parent !== undefined ? tracestate || undefined : undefined,
      span,
    };
    return trace;
  }

  override end(trace: RequestTrace, record: ExchangeRecord): void {
    const span = (trace as ExportedRequestTrace).span;
    if (span === undefined || !span.isRecording()) return;
    try {
      setSpanAttributes(span, record);
      const method = KNOWN_METHODS.has(record.method) ? record.method : 'HTTP';
      span.updateName(record.routeId ? method + ' ' + record.routeId : method);
      const status = record.status;
      if (status >= 500 || status === 0) {
        span.setStatus({ code: this.api.SpanStatusCode.ERROR });
        span.setAttribute('error.type', status === 0 ? (record.aborted ? 'client_aborted' : '_OTHER') : String(status));
      }
      span.end(TIME_ORIGIN + record.start + record.duration * 1000);
    } catch (err) {
      // tracing must never fail a request
      warnLimited(err, 'tracing: could not end a span');
    }
  }

  override shutdown(): Promise<void> {
    this.shutdownPromise ??= this.stop();
    return this.shutdownPromise;
  }

  private async stop(): Promise<void> {
    // The processor's flush is bounded by exportTimeoutMillis, the exporter's requests by
    // timeoutMillis; the race is a last bound for anything in between (retries, a stuck socket).
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.timeoutMs + 1000);
      timer.unref();
    });
    try {
      // a rejection here is the last flush's export failing, which reportingExporter already counted
      // and logged (rate-limited): nothing more to say, and shutdown must not throw
      await Promise.race([this.provider.shutdown().catch(() => undefined), bound]);
    } finally {
      clearTimeout(timer);
    }
  }
}

const TIME_ORIGIN = performance.timeOrigin;
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

/**
 * Stable HTTP semantic-convention names where one exists; gateway facts under `portico.*`.
 * `network.peer.address` is not used for the upstream node: on a SERVER span it names the client's
 * side of the connection. `http.route` is not used for the route id: it is a path template.
 */
function setSpanAttributes(span: Span, r: ExchangeRecord): void {
  if (KNOWN_METHODS.has(r.method)) {
    span.setAttribute('http.request.method', r.method);
  } else {
    span.setAttribute('http.request.method', '_OTHER');
    span.setAttribute('http.request.method_original', r.method);
  }
  const q = r.uri.indexOf('?');
  span.setAttribute('url.path', q < 0 ? r.uri : r.uri.slice(0, q));
  if (r.host) span.setAttribute('server.address', hostName(r.host));
  if (r.clientAddress) span.setAttribute('client.address', r.clientAddress);
  const version = PROTOCOL_VERSIONS[r.protocol];
  if (version) span.setAttribute('network.protocol.version', version);
  if (r.status > 0) span.setAttribute('http.response.status_code', r.status);
  // http.request.size / http.response.size (semconv, development): head and body, as counted here
  span.setAttribute('http.request.size', r.bytesIn);
  span.setAttribute('http.response.size', r.bytesOut);
  if (r.routeId) span.setAttribute('portico.route.id', r.routeId);
  if (r.serviceId) span.setAttribute('portico.service.id', r.serviceId);
  if (r.upstream) span.setAttribute('portico.upstream', r.upstream);
  if (r.upstreamAddr) span.setAttribute('portico.upstream.address', r.upstreamAddr);
  if (r.upstreamDuration >= 0) {
    span.setAttribute('portico.upstream.status', r.upstreamStatus);
    span.setAttribute('portico.upstream.duration', r.upstreamDuration);
  }
  if (r.failedAttempts !== undefined) span.setAttribute('portico.upstream.attempts', r.failedAttempts.length + 1);
  if (r.consumer) span.setAttribute('portico.consumer', r.consumer);
  if (r.requestId) span.setAttribute('portico.request_id', r.requestId);
  if (r.aborted) span.setAttribute('portico.client_aborted', true);
}

const PROTOCOL_VERSIONS: Record<string, string> = { 'HTTP/1.1': '1.1', 'HTTP/1.0': '1.0', 'HTTP/2.0': '2', 'HTTP/2': '2' };

/** the Host without its port; an IPv6 literal without its brackets (semconv server.address) */
function hostName(host: string): string {
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    return close > 0 ? host.slice(1, close) : host;
  }
  const colon = host.indexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}

function parseTraceState(core: CoreModule, value: string): TraceState | undefined {
  try {
    return new core.TraceState(value);
  } catch {
    return undefined;
  }
}

/**
 * The OTLP exporter, with failures logged (rate-limited) instead of going to the SDK's global error
 * handler: a collector that is down fails every batch, and the gateway should say so once in a
 * while, with how many spans were lost, not per batch nor never.
 */
function reportingExporter(exporter: SpanExporter, endpoint: string, core: CoreModule): SpanExporter {
  let lastWarn = -Infinity;
  let lostSinceWarn = 0;
  return {
    export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
      exporter.export(spans, (result) => {
        if (result.code !== core.ExportResultCode.SUCCESS) {
          lostSinceWarn += spans.length;
          const now = Date.now();
          if (now - lastWarn >= EXPORT_WARN_INTERVAL_MS) {
            lastWarn = now;
            log.warn(
              { endpoint, lostSpans: lostSinceWarn, err: describe(result.error) },
              'tracing: OTLP export failed (logged at most every 30 s)',
            );
            lostSinceWarn = 0;
          }
        }
        done(result);
      });
    },
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}

let lastInternalWarn = -Infinity;
function warnLimited(err: unknown, message: string): void {
  const now = Date.now();
  if (now - lastInternalWarn < EXPORT_WARN_INTERVAL_MS) return;
  lastInternalWarn = now;
  log.warn({ err: describe(err) }, message);
}

function describe(err: unknown): string | undefined {
  if (err === undefined) return undefined;
  return err instanceof Error ? err.message : String(err);
}
