import { ALPHA, AUTHORITY, CR, LF, SP, TARGET, TOKEN } from './chars.ts';
import { Http1ErrorCode as E } from './errors.ts';
import {
  EXPECT_CONTINUE,
  EXPECT_OTHER,
  MessageParser,
  S_DETACHED,
  S_FIELD_START,
  S_LINE_1,
  S_LINE_2,
  S_LINE_3,
  S_LINE_LF,
  type Http1Limits,
  type MessageHandler,
} from './message-parser.ts';

/**
 * A client request's head as the data plane sees it: plain strings and the raw header list, no
 * transport object. Built once per request with a fixed shape.
 */
export class RequestHead {
  constructor(
    /** one of the methods llhttp knows (the same string object every time) */
    readonly method: string,
    /** the request-target exactly as sent (origin-form `/p?q`, absolute-form, authority-form for CONNECT, or `*`) */
    readonly target: string,
    readonly httpVersion: '1.0' | '1.1',
    /** [name, value, ...] in arrival order, latin1, names as sent, values without surrounding whitespace */
    readonly rawHeaders: string[],
    /** how the body is delimited; a Content-Length of 0 is 'length' with contentLength 0 */
    readonly framing: 'none' | 'length' | 'chunked',
    /** the Content-Length when framing is 'length', else -1 */
    readonly contentLength: number,
    /**
     * whether the connection may carry another request after this one: HTTP/1.1 unless
     * `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`; never after a request whose
     * framing RFC 9112 §6.1 calls faulty (Transfer-Encoding in HTTP/1.0) or a CONNECT
     */
    readonly keepAlive: boolean,
    /**
     * `Connection: upgrade` with an `Upgrade` header, or CONNECT. The body framing still holds for an
     * upgrade request: the connection pauses on it, then detach()es after a 101 or resume()s.
     */
    readonly upgrade: boolean,
    /** `Expect: 100-continue` */
    readonly expectContinue: boolean,
    /** an Expect header with any other value (node:http answers those 417) */
    readonly expectOther: boolean,
    /** the first Host header's value, undefined without one (duplicates are left to the request policy) */
    readonly host: string | undefined,
  ) {}

  get hasBody(): boolean {
    return this.framing === 'chunked' || this.contentLength > 0;
  }
}

export type RequestHandler = MessageHandler<RequestHead>;

export interface RequestLimits extends Http1Limits {
  /** request-target bytes; longer → 414 (default: maxHeaderSize, where node:http would answer 431) */
  maxTargetSize: number;
}

/*
 * The methods llhttp accepts with HTTP/1.x (METHODS_HTTP1 of llhttp 9), the same set node:http serves.
 * A method outside it is answered 501 even if it is a valid token: node:http answers 400 to it today,
 * so nothing that worked stops working, and a gateway that forwards unknown methods would be the one
 * component of the chain that does.
 */
const METHODS = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'COPY', 'LOCK', 'MKCOL', 'MOVE', 'PROPFIND', 'PROPPATCH', 'SEARCH', 'UNLOCK', 'BIND', 'REBIND', 'UNBIND', 'ACL',
  'REPORT', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'M-SEARCH', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE',
  'PURGE', 'MKCALENDAR', 'LINK', 'UNLINK', 'SOURCE', 'QUERY',
];
const METHOD_BY_NAME = new Map(METHODS.map((m) => [m, m]));
const MAX_METHOD_LENGTH = Math.max(...METHODS.map((m) => m.length));

/** The method's interned string, or undefined when llhttp does not know it. */
function knownMethod(buf: Buffer, s: number, len: number): string | undefined {
  const c0 = buf[s]!;
  // the everyday ones without building a string
  if (len === 3) {
    if (c0 === 0x47 && buf[s + 1] === 0x45 && buf[s + 2] === 0x54) return 'GET';
    if (c0 === 0x50 && buf[s + 1] === 0x55 && buf[s + 2] === 0x54) return 'PUT';
  } else if (len === 4) {
    if (c0 === 0x50 && buf[s + 1] === 0x4f && buf[s + 2] === 0x53 && buf[s + 3] === 0x54) return 'POST';
    if (c0 === 0x48 && buf[s + 1] === 0x45 && buf[s + 2] === 0x41 && buf[s + 3] === 0x44) return 'HEAD';
  }
  if (len > MAX_METHOD_LENGTH) return undefined;
  return METHOD_BY_NAME.get(buf.toString('latin1', s, s + len));
}

const HTTP_SLASH = [0x48, 0x54, 0x54, 0x50, 0x2f]; // "HTTP/"
const SLASH = 0x2f;
const STAR = 0x2a;
const QUESTION = 0x3f;
const AT = 0x40;

/**
 * Whether a request-target (all its bytes already in the TARGET class) has a shape llhttp accepts:
 * origin-form, absolute-form (letters, `://`, an authority with at most one `@`), the authority-form
 * of CONNECT. Stricter than llhttp on one point: `*` must be alone (llhttp takes `*anything`).
 */
function isValidTarget(buf: Buffer, s: number, e: number, connect: boolean): boolean {
  if (connect) return isAuthorityThenRest(buf, s, e);
  const c0 = buf[s]!;
  if (c0 === SLASH) return true;
  if (c0 === STAR) return e - s === 1;
  if (ALPHA[c0] !== 1) return false;
  let i = s + 1;
  while (i < e && ALPHA[buf[i]!] === 1) i++;
  if (e - i < 3 || buf[i] !== 0x3a || buf[i + 1] !== SLASH || buf[i + 2] !== SLASH) return false;
  return isAuthorityThenRest(buf, i + 3, e);
}

function isAuthorityThenRest(buf: Buffer, s: number, e: number): boolean {
  let ats = 0;
  for (let i = s; i < e; i++) {
    const c = buf[i]!;
    if (c === SLASH || c === QUESTION) return true;
    if (c === AT && ++ats > 1) return false;
    if (AUTHORITY[c] !== 1) return false;
  }
  return true;
}

/**
 * Incremental, strict parser of the requests a client sends on one connection (keep-alive,
 * pipelining). Feed it the socket's chunks with execute(); it calls the handler with each request's
 * head, its body chunks (chunked coding removed) and its end. Strict the way llhttp is in node's
 * default mode, stricter where test/proxy/http1-differential.test.ts lists it; any error closes the
 * connection after its answer (`error.status`).
 */
export class RequestParser extends MessageParser<RequestHead> {
  private readonly maxTargetSize: number;
  private method = '';
  private targetStart = 0;
  private targetEnd = 0;
  private versionPos = 0;
  private versionMajor = 0;
  private versionMinor = 0;

  constructor(handler: RequestHandler, limits?: Partial<RequestLimits>) {
    super(handler, limits, 'request');
    this.maxTargetSize = limits?.maxTargetSize ?? this.limits.maxHeaderSize;
  }

  protected scanStartLine(buf: Buffer, i: number, end: number): number {
    const base = this.headStart;
    while (i < end) {
      if (this.overHeadLimit(i)) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
      switch (this.state) {
        case S_LINE_1: {
          const start = base;
          while (i < end && TOKEN[buf[i]!] === 1) i++;
          // before looking at what ends it, so that the verdict does not depend on where the chunk ends
          if (i - start > MAX_METHOD_LENGTH) return this.failAt(E.UNKNOWN_METHOD, start, 'unknown method');
          if (i === end) return i;
          if (buf[i] !== SP || i === start) return this.failAt(E.INVALID_METHOD, i, 'the request line does not start with a method and a space');
          const method = knownMethod(buf, start, i - start);
          if (method === undefined) return this.failAt(E.UNKNOWN_METHOD, start, 'unknown method');
          this.method = method;
          i++;
          this.targetStart = i - base;
          this.state = S_LINE_2;
          continue;
        }
        case S_LINE_2: {
          const stop = this.scanLimit(end);
          const target = TARGET;
          while (i + 4 <= stop && target[buf[i]!]! + target[buf[i + 1]!]! + target[buf[i + 2]!]! + target[buf[i + 3]!]! === 4) i += 4;
          while (i < stop && target[buf[i]!] === 1) i++;
          if (i - base - this.targetStart > this.maxTargetSize) return this.failAt(E.TARGET_TOO_LONG, i, `request-target over ${this.maxTargetSize} bytes`);
          if (i >= stop) {
            if (stop < end) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
            return i;
          }
          const c = buf[i]!;
          const ts = base + this.targetStart;
          if (c === SP && i > ts) {
            if (!isValidTarget(buf, ts, i, this.method === 'CONNECT')) return this.failAt(E.INVALID_TARGET, ts, 'malformed request-target');
            // as node: the target counts toward maxHeaderSize (reaching it alone → 414 here, 431 there)
            this.headerSize = i - ts;
            if (this.headerSize >= this.limits.maxHeaderSize) return this.failAt(E.TARGET_TOO_LONG, i, 'request-target reaches maxHeaderSize');
            this.targetEnd = i - base;
            this.versionPos = 0;
            this.state = S_LINE_3;
            i++;
            continue;
          }
          // `GET /\r\n` is HTTP/0.9, which llhttp takes; nothing here speaks it
          if ((c === CR || c === LF) && i > ts) return this.failAt(E.INVALID_VERSION, i, 'request line without an HTTP version');
          return this.failAt(E.INVALID_TARGET, i, i === ts ? 'empty request-target (two spaces?)' : `byte 0x${c.toString(16).padStart(2, '0')} in the request-target`);
        }
        case S_LINE_3: {
          // the usual `HTTP/1.1\r\n` in one compare; anything else byte by byte below
          if (
            this.versionPos === 0 && i + 10 <= end &&
            buf[i] === 0x48 && buf[i + 1] === 0x54 && buf[i + 2] === 0x54 && buf[i + 3] === 0x50 && buf[i + 4] === 0x2f &&
            buf[i + 5] === 0x31 && buf[i + 6] === 0x2e && (buf[i + 7] === 0x31 || buf[i + 7] === 0x30) && buf[i + 8] === CR && buf[i + 9] === LF
          ) {
            this.versionMajor = 1;
            this.versionMinor = buf[i + 7]! - 0x30;
            this.state = S_FIELD_START;
            return i + 10;
          }
          for (; i < end; i++) {
            const c = buf[i]!;
            const p = this.versionPos++;
            if (p < 5) {
              if (c !== HTTP_SLASH[p]) return this.failAt(E.INVALID_VERSION, i, 'no `HTTP/` version after the request-target');
            } else if (p === 5 || p === 7) {
              if (c < 0x30 || c > 0x39) return this.failAt(E.INVALID_VERSION, i, 'malformed HTTP version');
              if (p === 5) this.versionMajor = c - 0x30;
              else this.versionMinor = c - 0x30;
            } else if (p === 6) {
              if (c !== 0x2e) return this.failAt(E.INVALID_VERSION, i, 'malformed HTTP version');
            } else {
              if (c === LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'request line ends with a bare LF');
              if (c !== CR) return this.failAt(E.INVALID_VERSION, i, 'bytes after the HTTP version');
              this.state = S_LINE_LF;
              i++;
              break;
            }
          }
          continue;
        }
        case S_LINE_LF: {
          if (buf[i] !== LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare CR in the request line');
          if (this.versionMajor !== 1 || this.versionMinor > 1) {
            return this.failAt(E.UNSUPPORTED_VERSION, i, `HTTP/${this.versionMajor}.${this.versionMinor}`);
          }
          this.state = S_FIELD_START;
          return i + 1;
        }
        default:
          return i;
      }
    }
    return i;
  }

  protected completeHead(buf: Buffer, headEnd: number): boolean | -1 {
    let framing: 'none' | 'length' | 'chunked' = 'none';
    if (this.teCount > 0) {
      // RFC 9112 §6.3: a request whose Transfer-Encoding does not end in chunked cannot be framed.
      // Stricter than llhttp: only `chunked` alone (a gateway cannot decode gzip,chunked for the upstream)
      if (this.teCount > 1 || this.teEmpty) return this.failAt(E.INVALID_TRANSFER_ENCODING, headEnd, 'Transfer-Encoding empty or repeated');
      if (!this.teExactChunked) return this.failAt(E.UNSUPPORTED_TRANSFER_ENCODING, headEnd, 'Transfer-Encoding other than chunked');
      framing = 'chunked';
    } else if (this.contentLength >= 0) {
      framing = 'length';
    }
    const http11 = this.versionMinor === 1;
    const connect = this.method === 'CONNECT';
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing: close after it
    const keepAlive = !connect && !this.connClose && (http11 ? true : this.connKeepAlive && this.teCount === 0);
    this.keepAlive = keepAlive;
    const text = this.headText(buf, headEnd);
    const rawHeaders = this.rawHeaders(text);
    const head = new RequestHead(
      this.method,
      text.substring(this.targetStart, this.targetEnd),
      http11 ? '1.1' : '1.0',
      rawHeaders,
      framing,
      framing === 'length' ? this.contentLength : -1,
      keepAlive,
      connect || (this.connUpgrade && this.upgradeHeader),
      this.expect === EXPECT_CONTINUE,
      this.expect === EXPECT_OTHER,
      this.hostField < 0 ? undefined : rawHeaders[2 * this.hostField + 1],
    );
    if (connect) {
      // what follows a CONNECT is a tunnel's bytes, never a request: stop here, detach() has them
      this.state = S_DETACHED;
      this.handler.onHead(head);
      return true;
    }
    this.startBody(framing, this.contentLength);
    return this.handler.onHead(head) === true;
  }
}
