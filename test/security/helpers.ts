/**
 * Raw-socket tools for attacking the gateway as a hostile client would: send exact bytes, read every
 * byte that comes back, split it into HTTP/1.1 responses, and see on the upstream side exactly what
 * the gateway forwarded. node:http's client cannot send malformed requests nor tell how many
 * responses came back on one connection, hence these.
 */
import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';

// --- raw exchange -------------------------------------------------------------------------------

export interface RawExchangeOptions {
  /** give up (and destroy the socket) after this long; default 2000 ms */
  timeoutMs?: number;
  /**
   * stop early once this holds for what was received so far (for example "two responses parsed"),
   * then wait `settleMs` more for anything extra (a smuggled response, a late close)
   */
  until?: (received: Buffer) => boolean;
  /** default 100 ms */
  settleMs?: number;
  /** pause between the chunks of `bytes` when it is an array (partial writes); default 0 */
  writeDelayMs?: number;
  /** half-close our side after writing (the gateway sees EOF); default false */
  endAfterWrite?: boolean;
  /** reset the connection right after writing (a client that vanishes mid-request) */
  destroyAfterWrite?: boolean;
}

export interface RawExchangeResult {
  /** every byte the gateway sent */
  received: Buffer;
  /** `received` as latin1, for regex assertions */
  text: string;
  /**
   * how the connection ended: `end` the gateway closed it (FIN), `reset` it was reset (RST/EPIPE),
   * `open` it was still open when we stopped waiting (timeout or `until`+settle), `destroyed` we
   * reset it ourselves (destroyAfterWrite)
   */
  closed: 'end' | 'reset' | 'open' | 'destroyed';
  /** ms from connect to the end of the exchange */
  ms: number;
  /** the gateway closed (FIN or reset) within `timeoutMs` */
  closedByGateway: boolean;
}

/**
 * Opens a connection to 127.0.0.1:port, writes `bytes` (an array is written chunk by chunk with
 * `writeDelayMs` between), and collects what the gateway sends until it closes, `until` holds (plus
 * `settleMs`), or `timeoutMs` passes. Never rejects: a reset is an outcome, not an error.
 */
export function rawExchange(
  port: number,
  bytes: string | Buffer | readonly (string | Buffer)[],
  options: RawExchangeOptions = {},
): Promise<RawExchangeResult> {
  const { timeoutMs = 2000, until, settleMs = 100, writeDelayMs = 0 } = options;
  const chunks = (Array.isArray(bytes) ? bytes : [bytes]).map((c: string | Buffer) => (typeof c === 'string' ? Buffer.from(c, 'latin1') : c));
  return new Promise((resolve) => {
    const started = Date.now();
    const received: Buffer[] = [];
    let finished = false;
    let settleTimer: NodeJS.Timeout | undefined;
    const socket = connect(port, '127.0.0.1');
    const finish = (closed: RawExchangeResult['closed']) => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      clearTimeout(settleTimer);
      if (!socket.destroyed) socket.destroy();
      const all = Buffer.concat(received);
      resolve({ received: all, text: all.toString('latin1'), closed, ms: Date.now() - started, closedByGateway: closed === 'end' || closed === 'reset' });
    };
    const deadline = setTimeout(() => finish('open'), timeoutMs);
    socket.on('data', (d: Buffer) => {
      received.push(d);
      if (until && settleTimer === undefined && until(Buffer.concat(received))) settleTimer = setTimeout(() => finish('open'), settleMs);
    });
    // our side may still be open when the gateway ends: answer FIN with FIN, like a client would
    socket.on('end', () => finish('end'));
    socket.on('error', () => finish('reset'));
    socket.on('close', () => finish(options.destroyAfterWrite ? 'destroyed' : 'end'));
    socket.once('connect', async () => {
      for (let i = 0; i < chunks.length; i++) {
        if (finished || socket.destroyed) return;
        if (i > 0 && writeDelayMs > 0) await new Promise((r) => setTimeout(r, writeDelayMs));
        if (finished || socket.destroyed) return;
        socket.write(chunks[i]!);
      }
      if (options.destroyAfterWrite) {
        // let the bytes leave before the reset, or the gateway may see only the RST
        setTimeout(() => {
          socket.resetAndDestroy();
          finish('destroyed');
        }, 20);
      } else if (options.endAfterWrite) socket.end();
    });
  });
}

// --- response stream parser ---------------------------------------------------------------------

export interface ParsedResponse {
  version: string;
  status: number;
  reason: string;
  /** header lines as received, in order, names as sent */
  headers: [name: string, value: string][];
  body: Buffer;
  /** how the body was delimited */
  framing: 'none' | 'content-length' | 'chunked' | 'close';
}

export interface ParsedStream {
  responses: ParsedResponse[];
  /** bytes after the last complete response (a partial response, or a tunnel after a 101) */
  rest: Buffer;
  /** the stream is not valid HTTP/1.1 from this point on: a desync or a gateway bug */
  error?: string;
}

/** First value of a header (case-insensitive), or undefined. */
export function headerValue(response: ParsedResponse, name: string): string | undefined {
  const lower = name.toLowerCase();
  return response.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

/** Responses that end an exchange (not 1xx interim ones). */
export function finalResponses(stream: ParsedStream): ParsedResponse[] {
  return stream.responses.filter((r) => r.status >= 200 || r.status === 101);
}

const STATUS_LINE = /^HTTP\/(\d\.\d) (\d{3})(?: ([^\r\n]*))?$/;

/**
 * Splits the bytes of one connection into HTTP/1.1 responses, strictly (CRLF line endings, one
 * Content-Length, valid chunk sizes), so that a test can count responses and notice garbage.
 * `requestMethods[i]` is the method of the i-th request (a HEAD response has no body); `ended` says
 * the connection closed, so a response without length runs to the end of the bytes.
 */
export function parseResponses(data: Buffer, options: { requestMethods?: readonly string[]; ended?: boolean } = {}): ParsedStream {
  const responses: ParsedResponse[] = [];
  let pos = 0;
  let finalIndex = 0;
  const stop = (error?: string): ParsedStream => ({ responses, rest: data.subarray(pos), ...(error ? { error } : {}) });
  while (pos < data.length) {
    const headEnd = data.indexOf('\r\n\r\n', pos, 'latin1');
    if (headEnd < 0) {
      if (!'HTTP/'.startsWith(data.subarray(pos, pos + 5).toString('latin1')))
        return stop(`not a status line at byte ${pos}: ${JSON.stringify(data.subarray(pos, pos + 40).toString('latin1'))}`);
      return stop(options.ended ? `truncated response head at byte ${pos}` : undefined);
    }
    const head = data.subarray(pos, headEnd).toString('latin1');
    const lines = head.split('\r\n');
    if (lines.some((l) => l.includes('\n') || l.includes('\r'))) return stop(`bare CR or LF in response head at byte ${pos}`);
    const statusMatch = STATUS_LINE.exec(lines[0]!);
    if (!statusMatch) return stop(`not a status line at byte ${pos}: ${JSON.stringify(lines[0])}`);
    const headers: [string, string][] = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0 || /[\s]/.test(line.slice(0, colon))) return stop(`bad header line ${JSON.stringify(line)} at byte ${pos}`);
      headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
    const status = Number(statusMatch[2]);
    const response: ParsedResponse = { version: statusMatch[1]!, status, reason: statusMatch[3] ?? '', headers, body: Buffer.alloc(0), framing: 'none' };
    let bodyStart = headEnd + 4;
    if (status === 101) {
      responses.push(response);
      pos = bodyStart;
      return stop(); // what follows is the tunnel, not HTTP
    }
    const interim = status < 200;
    const method = options.requestMethods?.[finalIndex];
    const te = headerValue(response, 'transfer-encoding');
    const lengths = headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v);
    if (interim || method === 'HEAD' || status === 204 || status === 304) {
      // no body whatever the headers say
    } else if (te !== undefined) {
      if (!/(^|,)\s*chunked\s*$/i.test(te)) return stop(`response Transfer-Encoding without final chunked: ${te}`);
      if (lengths.length > 0) return stop('response with both Transfer-Encoding and Content-Length');
      const body: Buffer[] = [];
      let p = bodyStart;
      for (;;) {
        const lineEnd = data.indexOf('\r\n', p, 'latin1');
        if (lineEnd < 0) return options.ended ? stop(`truncated chunked body at byte ${p}`) : stop();
        const sizeText = data.subarray(p, lineEnd).toString('latin1').split(';')[0]!.trim();
        if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return stop(`bad chunk size ${JSON.stringify(sizeText)} at byte ${p}`);
        const size = parseInt(sizeText, 16);
        p = lineEnd + 2;
        if (size === 0) {
          // trailers, then an empty line
          const trailerEnd = data.subarray(p, p + 2).toString('latin1') === '\r\n' ? p : data.indexOf('\r\n\r\n', p, 'latin1');
          if (trailerEnd < 0) return options.ended ? stop(`truncated trailers at byte ${p}`) : stop();
          p = trailerEnd === p ? p + 2 : trailerEnd + 4;
          break;
        }
        if (p + size + 2 > data.length) return options.ended ? stop(`truncated chunk at byte ${p}`) : stop();
        body.push(data.subarray(p, p + size));
        if (data.subarray(p + size, p + size + 2).toString('latin1') !== '\r\n') return stop(`chunk not followed by CRLF at byte ${p + size}`);
        p += size + 2;
      }
      response.body = Buffer.concat(body);
      response.framing = 'chunked';
      bodyStart = p;
    } else if (lengths.length > 0) {
      if (new Set(lengths).size > 1 || !/^\d+$/.test(lengths[0]!)) return stop(`bad response Content-Length: ${lengths.join(', ')}`);
      const length = Number(lengths[0]);
      if (bodyStart + length > data.length) return options.ended ? stop(`truncated body at byte ${bodyStart}`) : stop();
      response.body = data.subarray(bodyStart, bodyStart + length);
      response.framing = 'content-length';
      bodyStart += length;
    } else {
      if (!options.ended) return stop(); // body runs to the close, which has not come yet
      response.body = data.subarray(bodyStart);
      response.framing = 'close';
      bodyStart = data.length;
    }
    responses.push(response);
    if (!interim) finalIndex++;
    pos = bodyStart;
  }
  return stop();
}

/** `until` for rawExchange: at least `n` final responses parsed. */
export function responsesReceived(n: number, requestMethods?: readonly string[]): (received: Buffer) => boolean {
  return (received) => finalResponses(parseResponses(received, { requestMethods })).length >= n;
}

// --- recording upstream -------------------------------------------------------------------------

export interface RecordedRequest {
  method: string;
  url: string;
  httpVersion: string;
  /** header names and values as the gateway sent them, in order */
  rawHeaders: string[];
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** the whole body arrived (false: the gateway cut it, or it is still arriving) */
  complete: boolean;
}

export interface RecordingUpstream extends TestUpstream {
  /** every request the gateway sent, in arrival order, recorded as soon as its head arrives */
  seen: RecordedRequest[];
  /** requests from the gateway that node:http could not parse (the gateway sent bad HTTP); not resets or truncation */
  parseErrors: string[];
  /** connections the gateway opened */
  connections: number;
  /** forget what was recorded (between cases) */
  reset(): void;
}

/**
 * An echo upstream that records every request it receives, body included. It answers 200 with a
 * Content-Length, `X-Echo: <method> <url>`, the request's `X-Test-Id` if any, and JSON
 * `{upstream, method, url, headers, body}` (body as latin1), so both sides of the gateway can be
 * checked: what the upstream got, and that the client got exactly that answer.
 */
export async function startRecordingUpstream(name = 'echo'): Promise<RecordingUpstream> {
  const seen: RecordedRequest[] = [];
  const parseErrors: string[] = [];
  const upstream = await startUpstream(name, (req, res) => {
    const record: RecordedRequest = {
      method: req.method!,
      url: req.url!,
      httpVersion: req.httpVersion,
      rawHeaders: req.rawHeaders,
      headers: req.headers,
      body: Buffer.alloc(0),
      complete: false,
    };
    seen.push(record);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      record.body = Buffer.concat(chunks);
      record.complete = true;
      const payload = JSON.stringify({ upstream: name, method: req.method, url: req.url, headers: req.headers, body: record.body.toString('latin1') });
      // x-echo names the request even on a HEAD response (no body): lets a test pair answers with requests
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), 'x-upstream': name, 'x-echo': `${req.method} ${req.url}` };
      const testId = req.headers['x-test-id'];
      if (typeof testId === 'string') headers['x-test-id'] = testId;
      res.writeHead(200, headers);
      res.end(payload);
    });
    req.on('close', () => {
      if (!record.complete) record.body = Buffer.concat(chunks);
    });
  });
  const recording: RecordingUpstream = Object.assign(upstream, {
    seen,
    parseErrors,
    connections: 0,
    reset() {
      seen.length = 0;
      parseErrors.length = 0;
      upstream.requests.length = 0;
    },
  });
  upstream.server.on('connection', () => recording.connections++);
  upstream.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // a reset, or a request cut short (the gateway gave up on it), is not bad HTTP
    if (err.code?.startsWith('HPE_') && err.code !== 'HPE_INVALID_EOF_STATE') parseErrors.push(`${err.code} ${err.message}`);
    socket.destroy();
  });
  return recording;
}

/** routes.yaml content sending every path to one upstream (a catch-all route). */
export function catchAllRoutes(upstream: { address: string }): Record<string, unknown> {
  return { routes: [{ id: 'all', uri: '/*', upstream: { nodes: { [upstream.address]: 1 } } }] };
}
