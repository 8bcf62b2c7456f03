/**
 * etcd's KV.Range over its native gRPC API (HTTP/2, protobuf), for the one request whose size grows
 * with the config: the listing of the whole prefix.
 *
 * etcd serves gRPC and its HTTP/JSON gateway on the same client port. The gateway answers a range
 * by calling the gRPC service over loopback and re-encoding the answer as JSON with every key and
 * value in base64, and that re-encoding is most of what a large listing costs etcd: 50,000 routes
 * (11 MB of JSON) cost an etcd 3.4 member ~770 ms of CPU through the gateway, ~90 ms over gRPC
 * (5.9 MB of protobuf; measured on the 2-core machine of bench:scale). Every other request (watch,
 * txn, lease, auth, status) stays on the gateway: they are small, and the watch's JSON stream is the
 * one path APISIX's users know.
 *
 * Only what a Range needs is here: a unary gRPC call on one HTTP/2 session per endpoint, the
 * RangeRequest encoder and the RangeResponse decoder (field numbers from etcd's rpc.proto and
 * kv.proto). Errors keep the gateway's shape: an answer with a gRPC status other than OK becomes an
 * EtcdResponseError with that status and etcd's message; a failed connection keeps its errno.
 */
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type SecureClientSessionOptions } from 'node:http2';
import { EtcdResponseError, type KeyValue, type ResponseHeader } from './client.ts';

export interface GrpcRange {
  key: Buffer;
  rangeEnd: Buffer;
  limit: number;
  revision: number;
}

/** A page of a range, over either transport. */
export interface RangePage {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  /** the last key's bytes as etcd holds them (its text may not be valid UTF-8): where the next page starts */
  lastKey: Buffer | undefined;
}

/**
 * The endpoint did not answer as a gRPC server: it answered something else (an HTTP/1.1 proxy in
 * front of etcd, a server without HTTP/2), or `unclear`: it closed the stream without any answer,
 * as such a proxy may, and as a member that crashed would. The caller may use the JSON gateway.
 */
export class NotGrpcError extends Error {
  override readonly name = 'NotGrpcError';
  constructor(
    message: string,
    readonly unclear = false,
  ) {
    super(message);
  }
}

/** A connection error as the JSON client's are: its errno code, so that the caller fails over. */
function connectionError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** How long an idle session stays open for a next listing (a relist after a watch failure). */
const IDLE_MS = 30_000;
/** HTTP/2 flow-control window: a page of a few MB flows without a window update per 64 KB. */
const WINDOW_BYTES = 8 * 1024 * 1024;

export class GrpcKv {
  private readonly sessions = new Map<string, ClientHttp2Session>();
  /** requests in flight per session: it keeps the process alive only while it has some */
  private readonly inFlight = new Map<ClientHttp2Session, number>();

  constructor(private readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer }) {}

  /** KV.Range on `endpoint`; `token`: etcd's auth token, when auth is on. */
  range(endpoint: string, req: GrpcRange, token: string | undefined, signal: AbortSignal): Promise<RangePage> {
    return new Promise<RangePage>((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const headers: Record<string, string> = {
        ':method': 'POST',
        ':path': '/etcdserverpb.KV/Range',
        'content-type': 'application/grpc',
        te: 'trailers',
      };
      if (token) headers.token = token;
      let session: ClientHttp2Session;
      let stream: ClientHttp2Stream;
      try {
        session = this.session(endpoint);
        stream = session.request(headers, { endStream: false });
      } catch (err) {
        return reject(err);
      }
      this.hold(session);
      const chunks: Buffer[] = [];
      let status: number | undefined;
      let grpcStatus: string | undefined;
      let grpcMessage: string | undefined;
      let settled = false;
      const finish = (err: unknown, result?: RangePage) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        this.release(session);
        if (err !== undefined) reject(err);
        else resolve(result!);
      };
      const onAbort = () => {
        stream.close(constants.NGHTTP2_CANCEL);
        finish(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.on('response', (h) => {
        status = Number(h[':status']);
        const type = String(h['content-type'] ?? '');
        if (status !== 200 || !type.startsWith('application/grpc')) {
          stream.close(constants.NGHTTP2_CANCEL);
          finish(new NotGrpcError(`etcd ${endpoint}: no gRPC answer (HTTP ${status}, content-type ${type || 'none'})`));
          return;
        }
        // a trailers-only answer (an error before any message) carries its status here
        if (h['grpc-status'] !== undefined) {
          grpcStatus = String(h['grpc-status']);
          grpcMessage = h['grpc-message'] === undefined ? undefined : String(h['grpc-message']);
        }
      });
      stream.on('trailers', (t) => {
        if (t['grpc-status'] !== undefined) grpcStatus = String(t['grpc-status']);
        if (t['grpc-message'] !== undefined) grpcMessage = String(t['grpc-message']);
      });
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', (err: NodeJS.ErrnoException) => {
        // a stream the session's failure canceled: that failure (ECONNREFUSED, ECONNRESET, ...)
        finish(err.code === 'ERR_HTTP2_STREAM_CANCEL' && err.cause !== undefined ? err.cause : err);
      });
      stream.on('close', () => {
        if (settled) return;
        if (status === undefined) {
          return finish(new NotGrpcError(`etcd ${endpoint}: HTTP/2 stream closed without an answer (code ${stream.rstCode})`, true));
        }
        if (grpcStatus === undefined) {
          // cut off after the answer began: the connection, not etcd, failed
          return finish(connectionError(`etcd ${endpoint}: HTTP/2 stream closed before its gRPC status (code ${stream.rstCode})`, 'ECONNRESET'));
        }
        if (grpcStatus !== '0') {
          const message = grpcMessage === undefined ? `gRPC status ${grpcStatus}` : decodeGrpcMessage(grpcMessage);
          return finish(new EtcdResponseError(`etcd ${endpoint}/etcdserverpb.KV/Range: ${message}`, 200, Number(grpcStatus) || undefined));
        }
        try {
          finish(undefined, decodeRangeResponse(unframe(Buffer.concat(chunks), endpoint)));
        } catch (err) {
          finish(err);
        }
      });
      stream.end(frame(encodeRangeRequest(req)));
    });
  }

  /** Close every session (the client is closing). */
  close(): void {
    for (const session of this.sessions.values()) session.destroy();
    this.sessions.clear();
  }

  private session(endpoint: string): ClientHttp2Session {
    const open = this.sessions.get(endpoint);
    if (open !== undefined && !open.closed && !open.destroyed) return open;
    const options: SecureClientSessionOptions = {
      settings: { initialWindowSize: WINDOW_BYTES, enablePush: false },
      ...(this.tls.ca ? { ca: this.tls.ca } : {}),
      ...(this.tls.cert ? { cert: this.tls.cert } : {}),
      ...(this.tls.key ? { key: this.tls.key } : {}),
    };
    const session = connect(endpoint, options);
    session.on('connect', () => session.setLocalWindowSize(WINDOW_BYTES));
    // errors reach the streams that are open; one without streams only goes away
    session.on('error', () => undefined);
    const forget = () => {
      if (this.sessions.get(endpoint) === session) this.sessions.delete(endpoint);
    };
    session.on('close', forget);
    session.on('goaway', forget);
    session.setTimeout(IDLE_MS, () => session.close());
    // a session keeps the process alive only while a request is on it
    session.unref();
    this.sessions.set(endpoint, session);
    return session;
  }

  private hold(session: ClientHttp2Session): void {
    this.inFlight.set(session, (this.inFlight.get(session) ?? 0) + 1);
    session.ref();
  }

  private release(session: ClientHttp2Session): void {
    const left = (this.inFlight.get(session) ?? 1) - 1;
    if (left > 0) return void this.inFlight.set(session, left);
    this.inFlight.delete(session);
    session.unref();
  }
}

/** grpc-message is percent-encoded (gRPC over HTTP/2, "Responses"). */
function decodeGrpcMessage(m: string): string {
  try {
    return decodeURIComponent(m);
  } catch {
    return m;
  }
}

/** A gRPC message on the wire: uncompressed flag, 4-byte big-endian length, the message. */
function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** The one message of a unary answer. */
function unframe(body: Buffer, endpoint: string): Buffer {
  if (body.length < 5) throw new EtcdResponseError(`etcd ${endpoint}/etcdserverpb.KV/Range: answer of ${body.length} bytes`, 200);
  if (body[0] !== 0) throw new EtcdResponseError(`etcd ${endpoint}/etcdserverpb.KV/Range: compressed answer (not asked for)`, 200);
  const length = body.readUInt32BE(1);
  if (body.length !== 5 + length) throw new EtcdResponseError(`etcd ${endpoint}/etcdserverpb.KV/Range: answer of ${body.length} bytes for a message of ${length}`, 200);
  return body.subarray(5);
}

// ---- protobuf: the few shapes a Range uses ----

function pushVarint(out: number[], n: number): void {
  while (n > 0x7f) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

/** RangeRequest: key = 1, range_end = 2, limit = 3, revision = 4. */
export function encodeRangeRequest(req: GrpcRange): Buffer {
  const out: number[] = [];
  for (const [field, bytes] of [[1, req.key], [2, req.rangeEnd]] as const) {
    pushVarint(out, (field << 3) | 2);
    pushVarint(out, bytes.length);
    for (const b of bytes) out.push(b);
  }
  if (req.limit > 0) {
    out.push(3 << 3);
    pushVarint(out, req.limit);
  }
  if (req.revision > 0) {
    out.push(4 << 3);
    pushVarint(out, req.revision);
  }
  return Buffer.from(out);
}

/** A reader over one protobuf message. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint as a number: exact up to 2^53, which revisions and versions stay far below. */
  varint(): number {
    const buf = this.buf;
    if (this.pos >= this.end) throw new Error('protobuf: varint past the end');
    let b = buf[this.pos++]!;
    if (b < 0x80) return b;
    let n = b & 0x7f;
    let scale = 0x80;
    for (let i = 1; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('protobuf: varint past the end');
      b = buf[this.pos++]!;
      n += (b & 0x7f) * scale;
      if (b < 0x80) return n;
      scale *= 0x80;
    }
    throw new Error('protobuf: varint longer than 10 bytes');
  }

  /** A varint as the decimal text of a 64-bit id, `signed` for an int64 (a lease), else a uint64 (cluster, member). */
  varintText(signed: boolean): string {
    let n = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('protobuf: varint past the end');
      const b = this.buf[this.pos++]!;
      n |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return (signed ? BigInt.asIntN(64, n) : BigInt.asUintN(64, n)).toString();
      shift += 7n;
    }
    throw new Error('protobuf: varint longer than 10 bytes');
  }

  /** A length-delimited field: its end (the reader is at its start). */
  delimited(): number {
    const length = this.varint();
    const end = this.pos + length;
    if (end > this.end) throw new Error('protobuf: field past the end of its message');
    return end;
  }

  /** Skip a field of wire type `wire` (one this decoder does not use). */
  skipField(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.pos = this.delimited();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`protobuf: wire type ${wire}`);
    if (this.pos > this.end) throw new Error('protobuf: field past the end of its message');
  }
}

/** RangeResponse: header = 1, kvs = 2 (repeated), more = 3, count = 4. */
export function decodeRangeResponse(buf: Buffer): RangePage {
  const r = new Reader(buf, 0, buf.length);
  let header: ResponseHeader = { clusterId: '', memberId: '', revision: 0, raftTerm: 0 };
  const kvs: KeyValue[] = [];
  let more = false;
  // where the last KeyValue's key lies in buf
  const key = { start: -1, end: -1 };
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 2) {
      const end = r.delimited();
      header = decodeHeader(new Reader(buf, r.pos, end));
      r.pos = end;
    } else if (field === 2 && wire === 2) {
      const end = r.delimited();
      kvs.push(decodeKeyValue(new Reader(buf, r.pos, end), key));
      r.pos = end;
    } else if (field === 3 && wire === 0) {
      more = r.varint() !== 0;
    } else {
      r.skipField(wire);
    }
  }
  // a copy: the page's buffer is not kept
  return { header, kvs, more, lastKey: key.start < 0 ? undefined : Buffer.from(buf.subarray(key.start, key.end)) };
}

/** ResponseHeader: cluster_id = 1, member_id = 2, revision = 3, raft_term = 4. */
function decodeHeader(r: Reader): ResponseHeader {
  const h: ResponseHeader = { clusterId: '', memberId: '', revision: 0, raftTerm: 0 };
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire !== 0) r.skipField(wire);
    else if (field === 1) h.clusterId = r.varintText(false);
    else if (field === 2) h.memberId = r.varintText(false);
    else if (field === 3) h.revision = r.varint();
    else if (field === 4) h.raftTerm = r.varint();
    else r.skipField(wire);
  }
  return h;
}

/**
 * mvccpb.KeyValue: key = 1, create_revision = 2, mod_revision = 3, version = 4, value = 5, lease = 6.
 * `key`: set to where the key's bytes lie in the buffer.
 */
function decodeKeyValue(r: Reader, key: { start: number; end: number }): KeyValue {
  const buf = r.buf;
  const kv: KeyValue = { key: '', value: '', createRevision: 0, modRevision: 0, version: 0 };
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case (1 << 3) | 2: {
        const end = r.delimited();
        kv.key = buf.toString('utf8', r.pos, end);
        key.start = r.pos;
        key.end = end;
        r.pos = end;
        break;
      }
      case (2 << 3) | 0:
        kv.createRevision = r.varint();
        break;
      case (3 << 3) | 0:
        kv.modRevision = r.varint();
        break;
      case (4 << 3) | 0:
        kv.version = r.varint();
        break;
      case (5 << 3) | 2: {
        const end = r.delimited();
        kv.value = buf.toString('utf8', r.pos, end);
        r.pos = end;
        break;
      }
      case (6 << 3) | 0: {
        const lease = r.varintText(true);
        if (lease !== '0') kv.lease = lease;
        break;
      }
      default:
        r.skipField(tag & 7);
    }
  }
  return kv;
}
