import type { Socket } from 'node:net';
import { Readable, Writable } from 'node:stream';

/*
 * undici (7.x) destroys an upstream connection that answers `100 Continue` to a request that did
 * not send `Expect: 100-continue` ("bad response"), and the proxy never sends it: node:http already
 * answered the client's Expect. RFC 9110 §15.2 says a client MUST be able to parse 1xx responses it
 * did not expect, and some servers (IIS among them) send 100 before every POST's final response —
 * through Portico they all became 502. The other 1xx (102, 103) undici already skips.
 *
 * So the pools' sockets drop `100` response heads before undici's parser sees them. The filter only
 * looks where a response can begin: at the first byte received after a request head was written, and
 * right after a head it removed. Everywhere else bytes pass untouched (one state check per chunk): it
 * never inspects a response body.
 *
 * A request head is recognised by how undici writes it: one latin1 string that starts with the method
 * (A-Z). Request bodies reach the socket as Buffers, chunked framing as strings that start with CR or a
 * digit. If a later undici wrote heads differently, the filter would stay in "pass" and an unexpected
 * 100 would again be a 502: it cannot start altering bytes.
 */

const enum State {
  /** inside a response (or nothing asked): bytes go through */
  Pass,
  /** a response may begin here: hold up to STATUS_PREFIX bytes to see whether it is a 100 */
  Start,
  /** inside a 100 head: drop bytes up to and including the blank line that ends it */
  SkipHead,
}

/** "HTTP/1.1 100 " — the version, the status and the byte after it */
const STATUS_PREFIX = 13;
const LF = 10;
const CR = 13;

class ContinueFilter {
  state = State.Pass;
  /** bytes of a possible status line that are too few to decide on yet */
  held: Buffer | null = null;
  /** SkipHead: only CR seen since the last LF (a LF now ends the head) */
  lineEmpty = false;

  /** The bytes of `chunk` that undici may see (null: none yet). */
  filter(chunk: Buffer): Buffer | null {
    let data = chunk;
    for (;;) {
      if (this.state === State.Pass) return data;
      if (this.state === State.Start) {
        if (this.held !== null) {
          data = Buffer.concat([this.held, data]);
          this.held = null;
        }
        const verdict = continueStatus(data);
        if (verdict === undefined) {
          this.held = data;
          return null;
        }
        if (!verdict) {
          this.state = State.Pass;
          return data;
        }
        this.state = State.SkipHead;
        this.lineEmpty = false;
        data = data.subarray(STATUS_PREFIX - 1);
      }
      const end = this.headEnd(data);
      if (end === -1) return null;
      // the final response (or another 1xx) may follow in the same chunk
      this.state = State.Start;
      data = data.subarray(end + 1);
      if (data.length === 0) return null;
    }
  }

  /** Index of the LF that ends the head (a blank line, CRLF or bare LF), or -1 when not in `data`. */
  private headEnd(data: Buffer): number {
    let lineEmpty = this.lineEmpty;
    for (let i = 0; i < data.length; i++) {
      const byte = data[i]!;
      if (byte === LF) {
        if (lineEmpty) return i;
        lineEmpty = true;
      } else if (byte !== CR) {
        lineEmpty = false;
      }
    }
    this.lineEmpty = lineEmpty;
    return -1;
  }
}

/** true: a `100` status line; false: anything else; undefined: too few bytes to say. */
function continueStatus(data: Buffer): boolean | undefined {
  const expected = 'HTTP/1.';
  const n = Math.min(data.length, STATUS_PREFIX);
  for (let i = 0; i < n; i++) {
    const byte = data[i]!;
    let ok: boolean;
    if (i < 7) ok = byte === expected.charCodeAt(i);
    else if (i === 7) ok = byte >= 48 && byte <= 57;
    else if (i === 8) ok = byte === 32;
    else if (i === 9) ok = byte === 49; // 1
    else if (i === 10 || i === 11) ok = byte === 48; // 0
    else ok = byte === 32 || byte === CR || byte === LF; // the reason phrase, or none
    if (!ok) return false;
  }
  return n === STATUS_PREFIX ? true : undefined;
}

const kFilter = Symbol('continueFilter');

interface FilteredSocket extends Socket {
  [kFilter]: ContinueFilter;
}

// net and TLS sockets inherit both unchanged from the stream classes
const streamWrite = Writable.prototype.write;
const streamPush = Readable.prototype.push;

/**
 * Makes `socket` drop unexpected `100 Continue` heads (see the comment at the top). The overrides
 * are two shared functions, not closures per socket: `push` is called from node's one read
 * callback for every socket in the process, and must stay a call site with few targets.
 */
export function skipContinueResponses(socket: Socket, reads: 'stream' | 'callback' = 'stream', heads: 'seen' | 'announced' = 'seen'): void {
  const filtered = socket as FilteredSocket;
  filtered[kFilter] = new ContinueFilter();
  // 'announced': the socket's owner writes request heads itself and says so (responseMayBegin): no
  // write override, no look at each written string (a head built by concatenation would be
  // flattened by that look, a copy the socket's own write does not need)
  if (heads === 'seen') filtered.write = filteredWrite as Socket['write'];
  // a socket read through net's `onread` callback (the pool's plain-TCP sockets) pushes no data:
  // its callback passes each read through continueFiltered() instead
  if (reads === 'stream') filtered.push = filteredPush;
}

/**
 * For a socket of skipContinueResponses(socket, 'callback'): the bytes of one read the parser may
 * see (null: none yet). The result may be a view of `chunk`, and the filter may keep `chunk` itself
 * (see continueHeld).
 */
export function continueFiltered(socket: Socket, chunk: Buffer): Buffer | null {
  const filter = (socket as FilteredSocket)[kFilter];
  return filter.state === State.Pass ? chunk : filter.filter(chunk);
}

/** Bytes the filter holds back (too few to decide on): a view of a read, or a copy. */
export function continueHeld(socket: Socket): boolean {
  return (socket as FilteredSocket)[kFilter].held !== null;
}

/** At the upstream's end: what the filter held back, for the parser to see before the end. */
export function takeContinueHeld(socket: Socket): Buffer | null {
  const filter = (socket as FilteredSocket)[kFilter];
  const held = filter.held;
  filter.held = null;
  filter.state = State.Pass;
  return held;
}

/** For a socket of skipContinueResponses(socket, _, 'announced'): a request head is being written. */
export function responseMayBegin(socket: Socket): void {
  const filter = (socket as FilteredSocket)[kFilter];
  filter.state = State.Start;
  filter.held = null;
}

/** Notes a request head (the response may begin with a 100), then writes as usual. */
function filteredWrite(this: FilteredSocket, chunk: unknown, encoding?: unknown, callback?: unknown): boolean {
  if (typeof chunk === 'string') {
    const first = chunk.charCodeAt(0);
    if (first >= 65 && first <= 90) responseMayBegin(this);
  }
  return streamWrite.call(this, chunk, encoding as BufferEncoding, callback as (error: Error | null | undefined) => void);
}

/** A stream's readable side is fed through push() (net and TLS sockets alike): undici reads what it lets through. */
function filteredPush(this: FilteredSocket, chunk: unknown, encoding?: BufferEncoding): boolean {
  if (chunk === null) {
    // the upstream closed (mid-decision, maybe): undici sees what was held, then the end
    const held = takeContinueHeld(this);
    if (held !== null) streamPush.call(this, held);
    return streamPush.call(this, null);
  }
  const passed = continueFiltered(this, chunk as Buffer);
  // nothing for undici yet: ask for more (true keeps the socket reading)
  return passed === null ? true : streamPush.call(this, passed, encoding);
}
