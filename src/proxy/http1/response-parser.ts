import { CR, FIELD_VALUE, LF, SP } from './chars.ts';
import { Http1ErrorCode as E } from './errors.ts';
import {
  MessageParser,
  S_DETACHED,
  S_FIELD_START,
  S_IDLE,
  S_LINE_1,
  S_LINE_2,
  S_LINE_3,
  S_LINE_LF,
  S_START,
  type BodyFraming,
  type Http1Limits,
  type MessageHandler,
} from './message-parser.ts';


/** An upstream response's head. */
export class ResponseHead {
  constructor(
    readonly status: number,
    /** the reason phrase as sent (may be empty) */
    readonly reason: string,
    readonly httpVersion: '1.0' | '1.1',
    /** [name, value, ...] in arrival order, latin1, names as sent, values without surrounding whitespace */
    readonly rawHeaders: string[],
    /**
     * how the body is delimited: 'none' for HEAD, 1xx, 204, 304 (whatever the headers say), 'close'
     * when neither chunked nor Content-Length frames it (read until the upstream closes)
     */
    readonly framing: BodyFraming,
    /** the Content-Length when framing is 'length', else -1 */
    readonly contentLength: number,
    /** whether the upstream connection can carry another request after this response */
    readonly keepAlive: boolean,
  ) {}

  /** 101 Switching Protocols: HTTP ends on this connection after the head */
  get upgrade(): boolean {
    return this.status === 101;
  }
}

export interface ResponseHandler extends MessageHandler<ResponseHead> {
  /**
   * A 1xx other than 101 (100 Continue, 102 Processing, 103 Early Hints): no body; the final
   * response to the same request follows.
   */
  onInterim(head: ResponseHead): boolean | void;
}

const HTTP_SLASH = [0x48, 0x54, 0x54, 0x50, 0x2f]; // "HTTP/"

/**
 * Incremental, strict parser of the responses an upstream sends on one connection. The owner says
 * which request a response answers with expectResponse(method) before it sends the request; a byte
 * that arrives while no response is expected is an error (UNEXPECTED_DATA), which is also how a
 * response that overruns its framing (a 204 followed by body bytes, a Content-Length too short) is
 * caught. Errors map to 502 and make the connection unusable.
 */
export class ResponseParser extends MessageParser<ResponseHead> {
  declare handler: ResponseHandler;
  private headRequest = false;
  private connectRequest = false;
  private versionPos = 0;
  private versionMinor = 0;
  private versionMajor = 0;
  private status = 0;
  private statusDigits = 0;
  private reasonStart = 0;
  private reasonEnd = 0;

  constructor(handler: ResponseHandler, limits?: Partial<Http1Limits>) {
    super(handler, limits, 'response');
    this.state = S_IDLE;
  }

  /**
   * The next bytes are the response to a `method` request (HEAD responses have no body; a 2xx to
   * CONNECT is a tunnel). Call before sending the request, on an idle parser.
   */
  expectResponse(method: string): void {
    if (this.state !== S_IDLE) throw new Error('ResponseParser.expectResponse() while a response is still being parsed');
    this.headRequest = method === 'HEAD';
    this.connectRequest = method === 'CONNECT';
    this.state = S_START;
  }

  protected override nextMessageState(): number {
    return S_IDLE;
  }

  protected scanStartLine(buf: Buffer, i: number, end: number): number {
    const base = this.headStart;
    while (i < end) {
      if (this.overHeadLimit(i)) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
      switch (this.state) {
        case S_LINE_1: {
          // the usual `HTTP/1.1 ` in one compare; anything else byte by byte below
          if (
            this.versionPos === 0 && i + 9 <= end &&
            buf[i] === 0x48 && buf[i + 1] === 0x54 && buf[i + 2] === 0x54 && buf[i + 3] === 0x50 && buf[i + 4] === 0x2f &&
            buf[i + 5] === 0x31 && buf[i + 6] === 0x2e && (buf[i + 7] === 0x31 || buf[i + 7] === 0x30) && buf[i + 8] === SP
          ) {
            this.versionMajor = 1;
            this.versionMinor = buf[i + 7]! - 0x30;
            this.status = 0;
            this.statusDigits = 0;
            this.state = S_LINE_2;
            i += 9;
            continue;
          }
          // HTTP/d.d SP
          for (; i < end; i++) {
            const c = buf[i]!;
            const p = this.versionPos++;
            if (p < 5) {
              if (c !== HTTP_SLASH[p]) return this.failAt(E.INVALID_STATUS_LINE, i, 'response does not start with HTTP/');
            } else if (p === 5 || p === 7) {
              if (c < 0x30 || c > 0x39) return this.failAt(E.INVALID_VERSION, i, 'malformed HTTP version');
              if (p === 5) this.versionMajor = c - 0x30;
              else this.versionMinor = c - 0x30;
            } else if (p === 6) {
              if (c !== 0x2e) return this.failAt(E.INVALID_VERSION, i, 'malformed HTTP version');
            } else {
              if (c !== SP) return this.failAt(E.INVALID_STATUS_LINE, i, 'no space after the HTTP version');
              if (this.versionMajor !== 1 || this.versionMinor > 1) return this.failAt(E.UNSUPPORTED_VERSION, i, `HTTP/${this.versionMajor}.${this.versionMinor}`);
              this.status = 0;
              this.statusDigits = 0;
              this.state = S_LINE_2;
              i++;
              break;
            }
          }
          continue;
        }
        case S_LINE_2: {
          const c = buf[i]!;
          if (this.statusDigits < 3) {
            if (c < 0x30 || c > 0x39) return this.failAt(E.INVALID_STATUS_LINE, i, 'status code is not 3 digits');
            this.status = this.status * 10 + (c - 0x30);
            this.statusDigits++;
            i++;
            continue;
          }
          // RFC 9110 §15: 100..599; llhttp takes any 3 digits
          if (this.status < 100 || this.status > 599) return this.failAt(E.INVALID_STATUS_LINE, i, `status ${this.status} outside 100-599`);
          if (c === SP) {
            this.reasonStart = i + 1 - base;
            this.state = S_LINE_3;
            i++;
          } else if (c === CR) {
            this.reasonStart = this.reasonEnd = i - base;
            this.state = S_LINE_LF;
            i++;
          } else {
            return this.failAt(c === LF ? E.INVALID_LINE_ENDING : E.INVALID_STATUS_LINE, i, 'status code is not 3 digits followed by a space');
          }
          continue;
        }
        case S_LINE_3: {
          const stop = this.scanLimit(end);
          while (i < stop && FIELD_VALUE[buf[i]!] === 1) i++;
          if (i >= stop) {
            if (stop < end) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
            return i;
          }
          const c = buf[i]!;
          if (c !== CR) {
            return this.failAt(c === LF ? E.INVALID_LINE_ENDING : E.INVALID_STATUS_LINE, i, 'control byte in the reason phrase');
          }
          this.reasonEnd = i - base;
          // as node: the reason phrase counts toward maxHeaderSize
          this.headerSize = this.reasonEnd - this.reasonStart;
          this.state = S_LINE_LF;
          i++;
          continue;
        }
        case S_LINE_LF: {
          if (buf[i] !== LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare CR in the status line');
          this.state = S_FIELD_START;
          return i + 1;
        }
        default:
          return i;
      }
    }
    return i;
  }

  protected override beginHead(i: number, state: number): void {
    super.beginHead(i, state);
    this.versionPos = 0;
  }

  protected completeHead(buf: Buffer, headEnd: number): boolean | -1 {
    const status = this.status;
    const http11 = this.versionMinor === 1;
    const text = this.headText(buf, headEnd);
    const reason = text.substring(this.reasonStart, this.reasonEnd);
    const rawHeaders = this.rawHeaders(text);
    const version = http11 ? '1.1' : '1.0';

    if (status < 200 && status !== 101) {
      // interim: the final response to the same request comes next
      this.state = S_START;
      return this.handler.onInterim(new ResponseHead(status, reason, version, rawHeaders, 'none', -1, true)) === true;
    }
    const tunnel = status === 101 || (this.connectRequest && status < 300);
    let framing: BodyFraming;
    if (tunnel || this.headRequest || status === 204 || status === 304) framing = 'none';
    else if (this.teCount > 0 && !(this.teCount === 1 && this.teEmpty)) framing = this.teLastChunked ? 'chunked' : 'close';
    else if (this.contentLength >= 0) framing = 'length';
    else framing = 'close';
    const keepAlive = !tunnel && framing !== 'close' && !this.connClose && (http11 || this.connKeepAlive);
    this.keepAlive = keepAlive;
    const head = new ResponseHead(status, reason, version, rawHeaders, framing, framing === 'length' ? this.contentLength : -1, keepAlive);
    if (tunnel) {
      // the bytes after a 101 (or a CONNECT's 2xx) are another protocol's: detach() has them
      this.state = S_DETACHED;
      this.handler.onHead(head);
      return true;
    }
    this.startBody(framing, this.contentLength);
    return this.handler.onHead(head) === true;
  }
}
