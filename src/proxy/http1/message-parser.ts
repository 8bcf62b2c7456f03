import {
  BACKSLASH,
  COLON,
  COMMA,
  CR,
  DQUOTE,
  EQUALS,
  FIELD_VALUE,
  HEX,
  HTAB,
  LF,
  QDTEXT,
  QUOTED_PAIR,
  SEMICOLON,
  SP,
  TOKEN,
} from './chars.ts';
import { Http1ErrorCode as E, Http1ParseError } from './errors.ts';

/**
 * How the body of a message is delimited: absent, by Content-Length, by chunked coding, or (a
 * response only) by the upstream closing the connection.
 */
export type BodyFraming = 'none' | 'length' | 'chunked' | 'close';

/** Bounds on what a peer may make the parser hold or scan (every one answered 431/413/414 when crossed). */
export interface Http1Limits {
  /**
   * node:http's `maxHeaderSize`, counted the way node counts it so both parsers cut at the same byte:
   * request-target (or reason phrase) + every header name + every header value (without its leading
   * whitespace). Reaching it → 431. Trailers have their own budget of the same size.
   */
  maxHeaderSize: number;
  /**
   * Raw bytes of a head, from the first byte of the start line to the blank line. node:http does not
   * count separators and whitespace padding (a header of 1 MB of spaces passes it); this bounds them.
   */
  maxHeadBytes: number;
  /** header lines per head (and per trailer section); one more → 431 */
  maxHeaderCount: number;
  /** bytes of chunk extensions on one chunk-size line (node's limit: 16 KiB → 413) */
  maxChunkExtensionSize: number;
}

export const DEFAULT_LIMITS: Readonly<Http1Limits> = {
  maxHeaderSize: 16 * 1024,
  maxHeadBytes: 32 * 1024,
  maxHeaderCount: 100,
  maxChunkExtensionSize: 16 * 1024,
};

/**
 * What a parser tells its owner (the connection). A callback that returns `true` pauses the parser
 * right after that event: the bytes not parsed yet are kept (a zero-copy slice of the chunk) until
 * `resume()` or `detach()`. This is how the connection answers pipelined requests one at a time and
 * holds an Upgrade request's following bytes until the upstream has said 101 or not.
 */
export interface MessageHandler<Head> {
  onHead(head: Head): boolean | void;
  /** a slice of the chunk given to execute() (chunked coding removed): valid while the chunk is */
  onBody(chunk: Buffer): boolean | void;
  /** the message is complete (its trailers, if any, were parsed and dropped) */
  onEnd(): boolean | void;
}

// Parser states. The head states (START_LINE_* .. HEAD_LF) are the only ones that need their
// bytes contiguous; everything else parses byte by byte and resumes anywhere.
export const S_START = 0; // before a message: empty lines (CRLF) are skipped (RFC 9112 §2.2)
const S_START_LF = 1;
export const S_LINE_1 = 2; // start-line sub-states, parsed by the subclass
export const S_LINE_2 = 3;
export const S_LINE_3 = 4;
export const S_LINE_LF = 5;
export const S_FIELD_START = 6;
const S_FIELD_NAME = 7;
const S_FIELD_OWS = 8;
const S_FIELD_VALUE = 9;
const S_FIELD_LF = 10;
const S_HEAD_LF = 11;
const S_BODY_LENGTH = 12;
const S_CHUNK_SIZE = 13;
const S_CHUNK_EXT_START = 14;
const S_CHUNK_EXT_NAME = 15;
const S_CHUNK_EXT_VALUE = 16;
const S_CHUNK_EXT_QUOTED = 17;
const S_CHUNK_EXT_QPAIR = 18;
const S_CHUNK_EXT_QDONE = 19;
const S_CHUNK_SIZE_LF = 20;
const S_CHUNK_DATA = 21;
const S_CHUNK_DATA_CR = 22;
const S_CHUNK_DATA_LF = 23;
const S_BODY_EOF = 24;
/** after a message that does not keep the connection alive: further bytes are ignored, never parsed */
export const S_CLOSED = 25;
/** after CONNECT, a 101, or detach(): the bytes belong to another protocol */
export const S_DETACHED = 26;
const S_FAILED = 27;
/** response parser between responses: a byte now is one nobody asked for */
export const S_IDLE = 28;
/** the message is complete, onEnd not called yet (it comes after a pause on the head or the last body bytes) */
export const S_MESSAGE_DONE = 29;

/**
 * How far past maxHeadBytes a state may read before the limit check at the next state (the longest
 * is a method: 12 bytes). The copy of a straddling head may hold this much more, so that a split
 * stream reaches the same check, at the same byte, as a whole one.
 */
const HEAD_SLOP = 64;

/** 2^53 - 1: Content-Length and chunk sizes beyond it are refused (a JS number must hold them exactly) */
const MAX_LENGTH = Number.MAX_SAFE_INTEGER;

// lowercased names of the headers that steer framing and connection handling
const bytes = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const N_HOST = bytes('host');
const N_EXPECT = bytes('expect');
const N_UPGRADE = bytes('upgrade');
const N_CONNECTION = bytes('connection');
const N_CONTENT_LENGTH = bytes('content-length');
const N_PROXY_CONNECTION = bytes('proxy-connection');
const N_TRANSFER_ENCODING = bytes('transfer-encoding');
const V_CLOSE = bytes('close');
const V_KEEP_ALIVE = bytes('keep-alive');
const V_CHUNKED = bytes('chunked');
const V_100_CONTINUE = bytes('100-continue');

/** case-insensitive compare of buf[s, s+name.length) with a lowercase name (callers know the length matches) */
function equalsLower(buf: Buffer, s: number, name: Uint8Array): boolean {
  for (let k = 0; k < name.length; k++) {
    // | 0x20 lowercases letters; for the other bytes of these names ('-', digits) it is a no-op, and
    // no other byte a field may hold turns into one of them
    if ((buf[s + k]! | 0x20) !== name[k]) return false;
  }
  return true;
}

/** Expect header: 0 absent, 1 `100-continue`, 2 anything else (node answers that 417) */
export const EXPECT_NONE = 0;
export const EXPECT_CONTINUE = 1;
export const EXPECT_OTHER = 2;

type Latin1Slicer = { latin1Slice(start: number, end: number): string };
/**
 * Buffer#latin1Slice is what toString('latin1') calls after its argument checks (present in Node
 * 18-24 but undocumented): a third cheaper on the hot path. Fallback if a Node ever drops it.
 */
const latin1Slice: (buf: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as unknown as Partial<Latin1Slicer>).latin1Slice === 'function'
    ? (buf, start, end) => (buf as unknown as Latin1Slicer).latin1Slice(start, end)
    : (buf, start, end) => buf.toString('latin1', start, end);

const EMPTY = Buffer.alloc(0);

/**
 * The HTTP/1.1 message machine shared by the request and the response parser: header section,
 * framing headers, Content-Length / chunked / until-close bodies, trailers, pipelining, pause.
 *
 * Shape, and why:
 * - One resumable state machine over bytes, with a tight loop per token (name, value, target) so the
 *   state switch runs a few times per line, not per byte; every byte is still checked against its
 *   class table, which is what makes it strict.
 * - A head is parsed in place in the chunk it arrived in. Offsets are kept relative to the head's
 *   start, and only when a head straddles chunks are its bytes copied (once, into `copy`), so the
 *   strings are built at the end from one contiguous buffer: one latin1 decode of the whole head,
 *   then substrings (a C++ call per header would cost more than the parse).
 * - Bodies are never copied: onBody gets slices of the caller's chunk.
 */
export abstract class MessageParser<Head> {
  handler: MessageHandler<Head>;
  protected readonly limits: Http1Limits;
  protected readonly side: 'request' | 'response';

  protected state = S_START;
  protected error: Http1ParseError | undefined = undefined;
  private paused = false;
  private buffered: Buffer | undefined = undefined;
  private running = false;
  private detached = false;

  // --- the head being parsed; every offset below is relative to headStart
  /** absolute offset of the head's first byte in the buffer being scanned */
  protected headStart = 0;
  protected lineStart = 0;
  private nameEnd = 0;
  private valueStart = 0;
  /** per header: name start, name end, value start, value end (trimmed); grows up to maxHeaderCount */
  protected fieldMarks = new Int32Array(4 * 16);
  protected fieldCount = 0;
  /** node:http's header byte count (see Http1Limits.maxHeaderSize) */
  protected headerSize = 0;
  private copy: Buffer | undefined = undefined;
  private copyLen = 0;
  private copyScan = 0;
  private stopAfterHead = false;

  // --- framing and connection facts of the current message, gathered from its headers
  protected contentLength = -1;
  protected teCount = 0;
  /** the (single) Transfer-Encoding value is exactly `chunked` [SP*] */
  protected teExactChunked = false;
  /** the last coding of the last Transfer-Encoding header is chunked */
  protected teLastChunked = false;
  protected teEmpty = false;
  protected connClose = false;
  protected connKeepAlive = false;
  protected connUpgrade = false;
  protected upgradeHeader = false;
  protected expect = EXPECT_NONE;
  /** index (in fields) of the first Host header, -1 if none */
  protected hostField = -1;
  protected trailing = false;
  /** whether the connection carries another message after this one */
  protected keepAlive = true;

  // --- body
  private remaining = 0;
  private chunkDigits = 0;
  private extBytes = 0;

  constructor(handler: MessageHandler<Head>, limits: Partial<Http1Limits> | undefined, side: 'request' | 'response') {
    this.handler = handler;
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.side = side;
  }

  /** The subclass's start-line scanner: from state S_LINE_1..S_LINE_LF to S_FIELD_START. Returns the new position, -1 on error. */
  protected abstract scanStartLine(buf: Buffer, i: number, end: number): number;
  /**
   * The head is complete (buf[headStart, headEnd) holds it): build it, decide framing, call onHead and
   * set the next state. Returns true when the handler asked to pause, -1 → see `error`.
   */
  protected abstract completeHead(buf: Buffer, headEnd: number): boolean | -1;

  /** Parses a chunk. Returns the error that ends the connection, if any (then and ever after). */
  execute(chunk: Buffer): Http1ParseError | undefined {
    if (this.error !== undefined) return this.error;
    if (this.running) throw new Error('MessageParser.execute() called from one of its own callbacks');
    if (this.detached) throw new Error('MessageParser.execute() after detach(): the bytes belong to another protocol');
    if (this.paused) {
      this.buffered = this.buffered === undefined ? chunk : Buffer.concat([this.buffered, chunk]);
      return undefined;
    }
    this.running = true;
    try {
      return this.feed(chunk);
    } finally {
      this.running = false;
    }
  }

  /** Continues after a callback returned true, with the bytes kept since. */
  resume(): Http1ParseError | undefined {
    if (!this.paused || this.state === S_DETACHED) return this.error;
    this.paused = false;
    const rest = this.buffered;
    this.buffered = undefined;
    // even without bytes: a message that ended while paused still owes its onEnd
    return this.execute(rest ?? EMPTY);
  }

  /**
   * Hands the connection over to another protocol (a 101, a tunnel): returns the bytes received but
   * not parsed, and parses nothing ever after.
   */
  detach(): Buffer | undefined {
    const rest = this.buffered;
    this.buffered = undefined;
    this.state = S_DETACHED;
    this.paused = true;
    this.detached = true;
    return rest;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /**
   * The bytes kept while paused become a copy of their own (they were a view of a read buffer that
   * is about to be read into again).
   */
  copyBuffered(): void {
    if (this.buffered !== undefined) this.buffered = Buffer.from(this.buffered);
  }

  /** Bytes received and kept while paused. */
  get bufferedBytes(): number {
    return this.buffered === undefined ? 0 : this.buffered.length;
  }

  /**
   * Between two messages of a keep-alive connection, nothing of the next one received: the
   * connection can carry another exchange (a pooled upstream connection can be reused).
   */
  get isIdle(): boolean {
    return (this.state === S_START || this.state === S_IDLE) && this.buffered === undefined;
  }

  /** The last message said the connection ends after it: whatever else arrives is ignored. */
  get isClosed(): boolean {
    return this.state === S_CLOSED;
  }

  /**
   * The peer closed its side. Ends a body delimited by the close; anything else cut short is an
   * error (PREMATURE_EOF) that the owner reports (a client gone mid-request, an upstream gone
   * mid-response → 502).
   */
  finish(): Http1ParseError | undefined {
    if (this.error !== undefined) return this.error;
    if (this.paused) return undefined;
    switch (this.state) {
      case S_BODY_EOF:
        this.state = S_CLOSED;
        this.handler.onEnd();
        return undefined;
      case S_START:
      case S_START_LF:
      case S_IDLE:
      case S_CLOSED:
      case S_DETACHED:
        return undefined;
      default:
        return this.fail(E.PREMATURE_EOF, 0, 'connection closed in the middle of a message');
    }
  }

  protected fail(code: (typeof E)[keyof typeof E], offset: number, detail?: string): Http1ParseError {
    this.state = S_FAILED;
    this.error = new Http1ParseError(code, this.side, offset, detail);
    return this.error;
  }

  private feed(chunk: Buffer): Http1ParseError | undefined {
    const end = chunk.length;
    let i = 0;
    if (this.copyLen > 0) {
      // a head straddles chunks: append no more than the head may still grow (plus what one state
      // consumes before the limit check), parse it there
      const before = this.copyLen;
      const n = Math.min(end, this.limits.maxHeadBytes + HEAD_SLOP - before);
      this.copy = ensureCapacity(this.copy!, before, before + n);
      chunk.copy(this.copy, before, 0, n);
      this.copyLen = before + n;
      this.stopAfterHead = true;
      const p = this.run(this.copy, this.copyScan, this.copyLen);
      this.stopAfterHead = false;
      if (p < 0) return this.error;
      if (this.inHead()) {
        this.copyScan = p;
        // run() refuses a head at its limit byte; this only guards the copy's growth
        if (this.copyLen >= this.limits.maxHeadBytes + HEAD_SLOP) return this.fail(E.HEADERS_TOO_LARGE, end, 'head over maxHeadBytes');
        return undefined;
      }
      this.copyLen = 0;
      // an idle connection keeps no large buffer (10,000 of them must stay cheap)
      if (this.copy!.length > 4096) this.copy = undefined;
      i = p - before;
      if (this.paused) {
        if (i < end) this.buffered = chunk.subarray(i);
        return undefined;
      }
      if (this.state === S_DETACHED) return undefined;
    }
    const p = this.run(chunk, i, end);
    if (p < 0) return this.error;
    if (this.paused) {
      if (p < end) this.buffered = chunk.subarray(p);
      return undefined;
    }
    if (this.inHead()) {
      // keep the partial head; offsets are relative to headStart, so they stay valid in the copy
      const len = end - this.headStart;
      this.copy = ensureCapacity(this.copy, 0, Math.max(len, 1024));
      chunk.copy(this.copy, 0, this.headStart, end);
      this.copyLen = len;
      this.copyScan = len;
      this.headStart = 0;
    }
    return undefined;
  }

  private inHead(): boolean {
    return this.state >= S_LINE_1 && this.state <= S_HEAD_LF;
  }

  protected pause(): void {
    this.paused = true;
  }

  /** Starts the head of a new message at absolute offset i. */
  protected beginHead(i: number, state: number): void {
    this.headStart = i;
    this.lineStart = 0;
    this.fieldCount = 0;
    this.headerSize = 0;
    this.state = state;
  }

  private resetMessage(): void {
    this.contentLength = -1;
    this.teCount = 0;
    this.teExactChunked = false;
    this.teLastChunked = false;
    this.teEmpty = false;
    this.connClose = false;
    this.connKeepAlive = false;
    this.connUpgrade = false;
    this.upgradeHeader = false;
    this.expect = EXPECT_NONE;
    this.hostField = -1;
    this.trailing = false;
  }

  /** Sets the state that follows a head (called by completeHead, before onHead). */
  protected startBody(framing: BodyFraming, length: number): void {
    if (framing === 'length' && length > 0) {
      this.remaining = length;
      this.state = S_BODY_LENGTH;
    } else if (framing === 'chunked') {
      this.state = S_CHUNK_SIZE;
      this.remaining = 0;
      this.chunkDigits = 0;
    } else if (framing === 'close') {
      this.state = S_BODY_EOF;
    } else {
      this.state = S_MESSAGE_DONE;
    }
  }

  /** Ends the current message. Returns true if the handler paused. */
  private endMessage(): boolean {
    this.state = this.keepAlive ? this.nextMessageState() : S_CLOSED;
    this.resetMessage();
    return this.handler.onEnd() === true;
  }

  /** where the parser goes after a keep-alive message: requests wait for the next; responses for expectResponse() */
  protected nextMessageState(): number {
    return S_START;
  }

  /**
   * The machine. Returns the position where it stopped: end, or earlier when paused, detached or
   * (parsing a copied head) right after the head; -1 on error.
   */
  protected run(buf: Buffer, i: number, end: number): number {
    const limits = this.limits;
    // locals: a module binding is a memory load per byte in the loops below, a local is a register
    const token = TOKEN;
    const fieldValue = FIELD_VALUE;
    while (i < end) {
      if (this.state >= S_LINE_1 && this.state <= S_HEAD_LF && i - this.headStart >= limits.maxHeadBytes) {
        return this.failAt(E.HEADERS_TOO_LARGE, i, `head over ${limits.maxHeadBytes} bytes`);
      }
      switch (this.state) {
        case S_START: {
          const c = buf[i]!;
          if (c === CR) {
            this.state = S_START_LF;
            i++;
            continue;
          }
          if (c === LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare LF before the start line');
          this.resetMessage();
          this.beginHead(i, S_LINE_1);
          continue;
        }
        case S_START_LF:
          if (buf[i] !== LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare CR before the start line');
          this.state = S_START;
          i++;
          continue;
        case S_LINE_1:
        case S_LINE_2:
        case S_LINE_3:
        case S_LINE_LF:
          i = this.scanStartLine(buf, i, end);
          if (i < 0) return -1;
          continue;

        // --- header section (and trailer section)
        case S_FIELD_START: {
          const c = buf[i]!;
          if (c === CR) {
            this.state = S_HEAD_LF;
            i++;
            continue;
          }
          if (token[c] !== 1) {
            if (c === SP || c === HTAB) return this.failAt(E.OBS_FOLD, i, 'header line starts with whitespace');
            if (c === LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare LF in the header section');
            return this.failAt(E.INVALID_HEADER_NAME, i, c === COLON ? 'empty header name' : 'invalid byte in a header name');
          }
          if (this.fieldCount >= limits.maxHeaderCount) return this.failAt(E.TOO_MANY_HEADERS, i, `more than ${limits.maxHeaderCount} header lines`);
          // Fast path, the common case: the whole line is in this buffer and valid. Scanned with
          // locals, no state stored between its tokens. Anything else (a line cut by the chunk's
          // end, an invalid byte, the size limit) goes through the token states below from the
          // line's start, which find the same end or the same error at the same byte.
          const stop = this.scanLimit(end);
          let j = i + 1;
          while (j < stop && token[buf[j]!] === 1) j++;
          if (j < stop && buf[j] === COLON) {
            const nameEnd = j++;
            let b = 0;
            while (j < stop && ((b = buf[j]!) === SP || b === HTAB)) j++;
            const valueStart = j;
            // four bytes a step: the table sums to 4 only when all four are field-value bytes
            while (j + 4 <= stop && fieldValue[buf[j]!]! + fieldValue[buf[j + 1]!]! + fieldValue[buf[j + 2]!]! + fieldValue[buf[j + 3]!]! === 4) j += 4;
            while (j < stop && fieldValue[buf[j]!] === 1) j++;
            if (j + 1 < stop && buf[j] === CR && buf[j + 1] === LF) {
              if (!this.completeField(buf, i, nameEnd, valueStart, j)) return -1;
              i = j + 2;
              continue;
            }
          }
          this.lineStart = i - this.headStart;
          this.state = S_FIELD_NAME;
          i++;
          continue;
        }
        case S_FIELD_NAME: {
          const stop = this.scanLimit(end);
          while (i < stop && token[buf[i]!] === 1) i++;
          if (i >= stop) {
            if (stop < end) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
            break;
          }
          if (buf[i] !== COLON) return this.failAt(E.INVALID_HEADER_NAME, i, 'invalid byte in a header name (or whitespace before the colon)');
          this.nameEnd = i - this.headStart;
          this.state = S_FIELD_OWS;
          i++;
          continue;
        }
        case S_FIELD_OWS: {
          const stop = this.scanLimit(end);
          let c = 0;
          while (i < stop && ((c = buf[i]!) === SP || c === HTAB)) i++;
          if (i >= stop) {
            if (stop < end) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
            break;
          }
          this.valueStart = i - this.headStart;
          this.state = S_FIELD_VALUE;
          continue;
        }
        case S_FIELD_VALUE: {
          const stop = this.scanLimit(end);
          while (i < stop && fieldValue[buf[i]!] === 1) i++;
          if (i >= stop) {
            if (stop < end) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
            break;
          }
          const c = buf[i]!;
          if (c !== CR) {
            return c === LF
              ? this.failAt(E.INVALID_LINE_ENDING, i, 'header line ends with a bare LF')
              : this.failAt(E.INVALID_HEADER_VALUE, i, `byte 0x${c.toString(16).padStart(2, '0')} in a header value`);
          }
          this.state = S_FIELD_LF;
          i++;
          continue;
        }
        case S_FIELD_LF: {
          if (buf[i] !== LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare CR in a header line');
          const base = this.headStart;
          if (!this.completeField(buf, base + this.lineStart, base + this.nameEnd, base + this.valueStart, i - 1)) return -1;
          this.state = S_FIELD_START;
          i++;
          continue;
        }
        case S_HEAD_LF: {
          if (buf[i] !== LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare CR ending the header section');
          i++;
          if (i - this.headStart > limits.maxHeadBytes) return this.failAt(E.HEADERS_TOO_LARGE, i, 'head over maxHeadBytes');
          if (this.trailing) {
            this.state = S_MESSAGE_DONE;
          } else {
            const paused = this.completeHead(buf, i);
            if (paused === -1) return -1;
            if (paused) {
              this.pause();
              return i;
            }
          }
          if (this.stopAfterHead) return i;
          continue;
        }
        case S_MESSAGE_DONE:
          if (this.endMessage()) {
            this.pause();
            return i;
          }
          continue;

        // --- bodies
        case S_BODY_LENGTH: {
          const n = Math.min(this.remaining, end - i);
          // a chunk that is all body (the common case for large bodies) goes on as it is
          const body = n === end && i === 0 ? buf : buf.subarray(i, i + n);
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_MESSAGE_DONE;
          if (this.handler.onBody(body) === true) {
            this.pause();
            return i;
          }
          continue;
        }
        case S_CHUNK_SIZE: {
          let c = 0;
          let size = this.remaining;
          let digits = this.chunkDigits;
          while (i < end) {
            const h = HEX[(c = buf[i]!)]!;
            if (h === 0) break;
            if (size > (MAX_LENGTH - (h - 1)) / 16) return this.failAt(E.CHUNK_SIZE_OVERFLOW, i, 'chunk size beyond 2^53-1');
            size = size * 16 + (h - 1);
            digits++;
            i++;
          }
          this.remaining = size;
          this.chunkDigits = digits;
          if (i === end) break;
          if (digits === 0) return this.failAt(E.INVALID_CHUNK_SIZE, i, 'chunk size is not a hex number');
          if (c === CR) {
            this.state = S_CHUNK_SIZE_LF;
          } else if (c === SEMICOLON) {
            this.state = S_CHUNK_EXT_START;
            this.extBytes = 0;
          } else if (c === LF) {
            return this.failAt(E.INVALID_LINE_ENDING, i, 'chunk size line ends with a bare LF');
          } else {
            return this.failAt(E.INVALID_CHUNK_SIZE, i, 'invalid byte after the chunk size');
          }
          i++;
          continue;
        }
        // chunk extensions, exactly as llhttp reads them: `;` name [`=` (token | quoted-string)], no whitespace
        case S_CHUNK_EXT_START: {
          const c = buf[i]!;
          if (c === SP || c === CR || c === HTAB) return this.failAt(E.INVALID_CHUNK_EXTENSION, i, 'whitespace or CR after `;`');
          this.state = S_CHUNK_EXT_NAME;
          continue;
        }
        case S_CHUNK_EXT_NAME:
        case S_CHUNK_EXT_VALUE: {
          const start = i;
          let c = 0;
          while (i < end && TOKEN[(c = buf[i]!)] === 1) i++;
          if (!this.countExtension(i - start, i)) return -1;
          if (i === end) break;
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (c === SEMICOLON) this.state = S_CHUNK_EXT_START;
          else if (c === EQUALS && this.state === S_CHUNK_EXT_NAME) this.state = S_CHUNK_EXT_VALUE;
          else if (c === DQUOTE && this.state === S_CHUNK_EXT_VALUE) this.state = S_CHUNK_EXT_QUOTED;
          else if (c === LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'chunk extension ends with a bare LF');
          else return this.failAt(E.INVALID_CHUNK_EXTENSION, i, 'invalid byte in a chunk extension');
          i++;
          if (!this.countExtension(1, i)) return -1;
          continue;
        }
        case S_CHUNK_EXT_QUOTED: {
          const start = i;
          let c = 0;
          while (i < end && QDTEXT[(c = buf[i]!)] === 1) i++;
          if (!this.countExtension(i - start, i)) return -1;
          if (i === end) break;
          if (c === DQUOTE) this.state = S_CHUNK_EXT_QDONE;
          else if (c === BACKSLASH) this.state = S_CHUNK_EXT_QPAIR;
          else return this.failAt(E.INVALID_CHUNK_EXTENSION, i, 'invalid byte in a quoted chunk extension');
          i++;
          if (!this.countExtension(1, i)) return -1;
          continue;
        }
        case S_CHUNK_EXT_QPAIR:
          if (QUOTED_PAIR[buf[i]!] !== 1) return this.failAt(E.INVALID_CHUNK_EXTENSION, i, 'invalid quoted-pair in a chunk extension');
          this.state = S_CHUNK_EXT_QUOTED;
          i++;
          if (!this.countExtension(1, i)) return -1;
          continue;
        case S_CHUNK_EXT_QDONE: {
          const c = buf[i]!;
          if (c === SEMICOLON) this.state = S_CHUNK_EXT_START;
          else if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else return this.failAt(c === LF ? E.INVALID_LINE_ENDING : E.INVALID_CHUNK_EXTENSION, i, 'invalid byte after a quoted chunk extension');
          i++;
          if (!this.countExtension(1, i)) return -1;
          continue;
        }
        case S_CHUNK_SIZE_LF: {
          if (buf[i] !== LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare CR in a chunk size line');
          i++;
          if (this.remaining === 0) {
            // last chunk: the trailer section, parsed like a head and dropped
            this.trailing = true;
            this.beginHead(i, S_FIELD_START);
          } else {
            this.state = S_CHUNK_DATA;
          }
          continue;
        }
        case S_CHUNK_DATA: {
          const n = Math.min(this.remaining, end - i);
          const body = buf.subarray(i, i + n);
          i += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_CHUNK_DATA_CR;
          if (this.handler.onBody(body) === true) {
            this.pause();
            return i;
          }
          continue;
        }
        case S_CHUNK_DATA_CR:
          if (buf[i] !== CR) return this.failAt(E.INVALID_CHUNK_END, i, 'chunk data longer than its size (no CRLF after it)');
          this.state = S_CHUNK_DATA_LF;
          i++;
          continue;
        case S_CHUNK_DATA_LF:
          if (buf[i] !== LF) return this.failAt(E.INVALID_LINE_ENDING, i, 'bare CR after chunk data');
          this.state = S_CHUNK_SIZE;
          this.remaining = 0;
          this.chunkDigits = 0;
          i++;
          continue;
        case S_BODY_EOF: {
          const body = i === 0 ? buf : buf.subarray(i, end);
          i = end;
          if (this.handler.onBody(body) === true) {
            this.pause();
            return i;
          }
          continue;
        }
        case S_CLOSED:
          // the connection ends after the message it carried: what follows is never a request
          return end;
        case S_DETACHED:
          return i;
        case S_IDLE:
          return this.failAt(E.UNEXPECTED_DATA, i, 'bytes received while no response was expected');
        default:
          return this.failAt(E.PREMATURE_EOF, i, `internal: unknown state ${this.state}`);
      }
      // a token loop reached the end of the buffer
      break;
    }
    // a message that ended exactly at the end of the chunk ends now, not when the next chunk comes
    if (this.state === S_MESSAGE_DONE && !this.paused && this.endMessage()) this.pause();
    return i;
  }

  /**
   * Where a head's scan loops must stop: the end of the buffer, or the first byte beyond
   * maxHeadBytes. Checked at that byte, the limit gives the same verdict whatever the chunk
   * boundaries (the same code as the whole buffer would, never a different error that happened to
   * be found first).
   */
  protected overHeadLimit(i: number): boolean {
    return i - this.headStart >= this.limits.maxHeadBytes;
  }

  protected scanLimit(end: number): number {
    const limit = this.headStart + this.limits.maxHeadBytes;
    return end < limit ? end : limit;
  }

  protected failAt(code: (typeof E)[keyof typeof E], offset: number, detail: string): -1 {
    this.fail(code, offset, detail);
    return -1;
  }

  private countExtension(n: number, i: number): boolean {
    this.extBytes += n;
    if (this.extBytes > this.limits.maxChunkExtensionSize) {
      this.failAt(E.CHUNK_EXTENSIONS_TOO_LARGE, i, `chunk extensions over ${this.limits.maxChunkExtensionSize} bytes`);
      return false;
    }
    return true;
  }

  /**
   * A header line is complete (absolute offsets: name, colon at nameEnd, value from valueStart, CR).
   * Checks the limits, records the offsets and reads the headers that steer framing.
   */
  private completeField(buf: Buffer, nameStart: number, nameEnd: number, valueStart: number, cr: number): boolean {
    const base = this.headStart;
    const lf = cr + 1;
    let valueEnd = cr;
    while (valueEnd > valueStart && ((buf[valueEnd - 1] === SP) || buf[valueEnd - 1] === HTAB)) valueEnd--;
    const limits = this.limits;
    // as node: name + value with its trailing whitespace; reaching the limit is over it
    this.headerSize += nameEnd - nameStart + (cr - valueStart);
    if (this.headerSize >= limits.maxHeaderSize) {
      this.failAt(E.HEADERS_TOO_LARGE, lf, `header section reaches ${limits.maxHeaderSize} bytes`);
      return false;
    }
    if (lf + 1 - base > limits.maxHeadBytes) {
      this.failAt(E.HEADERS_TOO_LARGE, lf, 'head over maxHeadBytes');
      return false;
    }
    const k = this.fieldCount++;
    let marks = this.fieldMarks;
    if (4 * k + 4 > marks.length) {
      const grown = new Int32Array(marks.length * 2);
      grown.set(marks);
      this.fieldMarks = marks = grown;
    }
    marks[4 * k] = nameStart - base;
    marks[4 * k + 1] = nameEnd - base;
    marks[4 * k + 2] = valueStart - base;
    marks[4 * k + 3] = valueEnd - base;

    switch (nameEnd - nameStart) {
      case 4:
        if (this.hostField < 0 && !this.trailing && equalsLower(buf, nameStart, N_HOST)) this.hostField = k;
        return true;
      case 6:
        if (equalsLower(buf, nameStart, N_EXPECT)) {
          this.expect = valueEnd - valueStart === 12 && equalsLower(buf, valueStart, V_100_CONTINUE) ? EXPECT_CONTINUE : valueEnd > valueStart ? EXPECT_OTHER : this.expect;
        }
        return true;
      case 7:
        if (valueEnd > valueStart && equalsLower(buf, nameStart, N_UPGRADE)) this.upgradeHeader = true;
        return true;
      case 10:
        if (equalsLower(buf, nameStart, N_CONNECTION)) this.readConnection(buf, valueStart, valueEnd);
        return true;
      case 16:
        // llhttp reads Proxy-Connection as Connection
        if (equalsLower(buf, nameStart, N_PROXY_CONNECTION)) this.readConnection(buf, valueStart, valueEnd);
        return true;
      case 14:
        if (!equalsLower(buf, nameStart, N_CONTENT_LENGTH)) return true;
        return this.readContentLength(buf, valueStart, cr);
      case 17:
        if (!equalsLower(buf, nameStart, N_TRANSFER_ENCODING)) return true;
        return this.readTransferEncoding(buf, valueStart, valueEnd, cr);
      default:
        return true;
    }
  }

  /** `1*DIGIT *SP` (llhttp: no tab after, no list, no sign), once per message */
  private readContentLength(buf: Buffer, s: number, cr: number): boolean {
    if (this.trailing) return !this.failAt(E.INVALID_TRAILER, s, 'Content-Length in a trailer section');
    if (this.contentLength >= 0) return !this.failAt(E.DUPLICATE_CONTENT_LENGTH, s, 'Content-Length more than once');
    if (this.teCount > 0) return !this.failAt(E.CONTENT_LENGTH_WITH_TRANSFER_ENCODING, s, 'Content-Length with Transfer-Encoding');
    let n = 0;
    let i = s;
    for (; i < cr; i++) {
      const d = buf[i]! - 0x30;
      if (d < 0 || d > 9) break;
      n = n * 10 + d;
      if (n > MAX_LENGTH) return !this.failAt(E.INVALID_CONTENT_LENGTH, i, 'Content-Length beyond 2^53-1');
    }
    if (i === s) return !this.failAt(E.INVALID_CONTENT_LENGTH, i, 'Content-Length is not a number');
    for (; i < cr; i++) if (buf[i] !== SP) return !this.failAt(E.INVALID_CONTENT_LENGTH, i, 'Content-Length is not a number');
    this.contentLength = n;
    return true;
  }

  private readTransferEncoding(buf: Buffer, s: number, e: number, cr: number): boolean {
    if (this.trailing) return !this.failAt(E.INVALID_TRAILER, s, 'Transfer-Encoding in a trailer section');
    if (this.contentLength >= 0) return !this.failAt(E.CONTENT_LENGTH_WITH_TRANSFER_ENCODING, s, 'Transfer-Encoding with Content-Length');
    this.teCount++;
    if (e === s) {
      this.teEmpty = true;
      return true;
    }
    // exactly `chunked` followed by spaces only (llhttp: a tab there makes it another coding)
    let exact = cr - s >= 7 && equalsLower(buf, s, V_CHUNKED);
    if (exact) for (let i = s + 7; i < cr; i++) if (buf[i] !== SP) exact = false;
    this.teExactChunked = exact;
    // the last list element (OWS around it) decides for a response
    let last = e;
    while (last > s && buf[last - 1] !== COMMA) last--;
    while (last < e && (buf[last] === SP || buf[last] === HTAB)) last++;
    this.teLastChunked = e - last === 7 && equalsLower(buf, last, V_CHUNKED);
    return true;
  }

  /** Connection tokens (comma-separated, OWS around): close, keep-alive, upgrade, case-insensitive. */
  private readConnection(buf: Buffer, s: number, e: number): void {
    let i = s;
    while (i < e) {
      while (i < e && (buf[i] === SP || buf[i] === HTAB || buf[i] === COMMA)) i++;
      const t = i;
      while (i < e && buf[i] !== COMMA) i++;
      let te = i;
      while (te > t && (buf[te - 1] === SP || buf[te - 1] === HTAB)) te--;
      const len = te - t;
      if (len === 5 && equalsLower(buf, t, V_CLOSE)) this.connClose = true;
      else if (len === 10 && equalsLower(buf, t, V_KEEP_ALIVE)) this.connKeepAlive = true;
      else if (len === 7 && equalsLower(buf, t, N_UPGRADE)) this.connUpgrade = true;
    }
  }

  /** One latin1 decode of the head; callers take substrings (offsets relative to headStart). */
  protected headText(buf: Buffer, headEnd: number): string {
    return latin1Slice(buf, this.headStart, headEnd);
  }

  /** The flat [name, value, ...] list of the head just parsed. */
  protected rawHeaders(text: string): string[] {
    const marks = this.fieldMarks;
    const n = this.fieldCount;
    const raw: string[] = [];
    for (let k = 0; k < n; k++) {
      const ns = marks[4 * k]!;
      const ne = marks[4 * k + 1]!;
      raw.push(text.substring(ns, ne), text.substring(marks[4 * k + 2]!, marks[4 * k + 3]!));
    }
    return raw;
  }
}

function ensureCapacity(buf: Buffer | undefined, keep: number, size: number): Buffer {
  if (buf !== undefined && buf.length >= size) return buf;
  const grown = Buffer.allocUnsafe(Math.max(size, buf === undefined ? 0 : buf.length * 2));
  if (buf !== undefined && keep > 0) buf.copy(grown, 0, 0, keep);
  return grown;
}
