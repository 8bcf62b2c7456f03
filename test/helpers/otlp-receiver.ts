import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as a test wants to read it: ids in hex, attributes as a plain object. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' when the span is a root */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind number (2: SERVER) */
  kind: number;
  attributes: Record<string, unknown>;
  /** the resource's attributes (service.name, ...) */
  resource: Record<string, unknown>;
  /** nanoseconds since the epoch, as a decimal string (exact: beyond Number's precision) */
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** OTLP status code: 0 unset, 1 ok, 2 error */
  status: { code: number; message?: string };
  traceState: string;
}

export interface OtlpReceiver {
  /** http://127.0.0.1:<port>/v1/traces */
  url: string;
  spans: ReceivedSpan[];
  /** export requests received (each may carry many spans) */
  requests: number;
  /** resolves with the spans once at least n arrived; rejects after timeoutMs */
  waitForSpans(n: number, timeoutMs: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

/**
 * A real OTLP/HTTP trace receiver on loopback, JSON encoding (what @opentelemetry/exporter-trace-otlp-http
 * sends): POST /v1/traces with Content-Type application/json. Answers 200 `{}` (a full success) the
 * way a collector does; anything else gets 404/415.
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const waiters = new Set<() => void>();
  let requests = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      if (!String(req.headers['content-type']).startsWith('application/json')) {
        res.writeHead(415).end();
        return;
      }
      let body: ExportTraceServiceRequest;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExportTraceServiceRequest;
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"message":"bad json"}');
        return;
      }
      requests++;
      for (const rs of body.resourceSpans ?? []) {
        const resource = flattenAttributes(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const s of ss.spans ?? []) spans.push(toReceivedSpan(s, resource));
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      for (const wake of waiters) wake();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    get requests() {
      return requests;
    },
    waitForSpans(n: number, timeoutMs: number): Promise<ReceivedSpan[]> {
      if (spans.length >= n) return Promise.resolve(spans);
      return new Promise((resolve, reject) => {
        const check = () => {
          if (spans.length < n) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(spans);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`OTLP receiver: ${spans.length} of ${n} spans after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// The OTLP JSON shapes read here (opentelemetry-proto, JSON mapping: ids are hex, 64-bit ints may be strings).
interface ExportTraceServiceRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
  }>;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  traceState?: string;
  name: string;
  kind?: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: KeyValue[];
  status?: { code?: number; message?: string };
}
interface KeyValue {
  key: string;
  value?: AnyValue;
}
interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string | number;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
  kvlistValue?: { values?: KeyValue[] };
  bytesValue?: string;
}

function toReceivedSpan(s: OtlpSpan, resource: Record<string, unknown>): ReceivedSpan {
  return {
    traceId: idHex(s.traceId),
    spanId: idHex(s.spanId),
    parentSpanId: s.parentSpanId ? idHex(s.parentSpanId) : '',
    name: s.name,
    kind: s.kind ?? 0,
    attributes: flattenAttributes(s.attributes),
    resource,
    startTimeUnixNano: String(s.startTimeUnixNano),
    endTimeUnixNano: String(s.endTimeUnixNano),
    status: { code: s.status?.code ?? 0, ...(s.status?.message ? { message: s.status.message } : {}) },
    traceState: s.traceState ?? '',
  };
}

/** OTLP JSON carries ids as hex; the protobuf JSON mapping would use base64: accept both. */
function idHex(id: string): string {
  if (/^[0-9a-f]+$/i.test(id) && (id.length === 32 || id.length === 16)) return id.toLowerCase();
  return Buffer.from(id, 'base64').toString('hex');
}

function flattenAttributes(list: KeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of list ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

function anyValue(v: AnyValue | undefined): unknown {
  if (v === undefined) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(anyValue);
  if (v.kvlistValue !== undefined) return flattenAttributes(v.kvlistValue.values);
  if (v.bytesValue !== undefined) return v.bytesValue;
  return undefined;
}
