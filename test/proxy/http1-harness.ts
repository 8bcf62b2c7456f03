/**
 * Drives the HTTP/1.1 codec the way a connection would, under different splits of the same bytes,
 * and reduces what it saw to a comparable outcome. Shared by the differential, fuzz and response
 * tests.
 */
import { RequestParser, type RequestHead } from '../../src/proxy/http1/request-parser.ts';
import { ResponseParser, type ResponseHead } from '../../src/proxy/http1/response-parser.ts';
import type { Http1Limits } from '../../src/proxy/http1/message-parser.ts';

export interface SeenRequest {
  method: string;
  target: string;
  httpVersion: string;
  rawHeaders: string[];
  /** body bytes as latin1 */
  body: string;
  /** the whole body (and trailers) arrived */
  complete: boolean;
  keepAlive: boolean;
  upgrade: boolean;
}

export interface RequestOutcome {
  requests: SeenRequest[];
  /** error code, if the parser refused the bytes (or they ended mid-message) */
  error?: string;
  status?: number;
}

/** a seeded PRNG (mulberry32): the same seed gives the same splits on every run */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Split = 'whole' | 'bytes' | { seed: number };

/** Cuts bytes into chunks: whole, one byte each, or at random points (1 to 40 bytes, seeded). */
export function splitBytes(bytes: Buffer, split: Split): Buffer[] {
  if (split === 'whole') return [bytes];
  const out: Buffer[] = [];
  if (split === 'bytes') {
    for (let i = 0; i < bytes.length; i++) out.push(bytes.subarray(i, i + 1));
    return out;
  }
  const rnd = prng(split.seed);
  for (let i = 0; i < bytes.length; ) {
    const n = 1 + Math.floor(rnd() * 40);
    // copies, not views: a chunk must not be readable past its end through its parent buffer
    out.push(Buffer.from(bytes.subarray(i, i + n)));
    i += n;
  }
  return out;
}

/**
 * Parses a client's bytes as the connection layer would: every request in order, each body, then
 * the peer's close (finish()). An upgrade request stops HTTP (the outcome is its head, as node's
 * 'upgrade' event); so does CONNECT.
 */
export function parseRequests(
  bytes: Buffer,
  split: Split,
  limits?: Partial<Http1Limits> & { maxTargetSize?: number },
  /** pause on every event and resume right away, as a connection waiting on its upstream would */
  pauseEverywhere = false,
): RequestOutcome {
  const requests: SeenRequest[] = [];
  let current: SeenRequest | undefined;
  let stopped = false;
  const parser = new RequestParser(
    {
      onHead(head: RequestHead) {
        current = {
          method: head.method,
          target: head.target,
          httpVersion: head.httpVersion,
          rawHeaders: head.rawHeaders,
          body: '',
          complete: false,
          keepAlive: head.keepAlive,
          upgrade: head.upgrade,
        };
        requests.push(current);
        if (head.upgrade) {
          stopped = true;
          return true;
        }
        return pauseEverywhere;
      },
      onBody(chunk: Buffer) {
        current!.body += chunk.toString('latin1');
        return pauseEverywhere;
      },
      onEnd() {
        current!.complete = true;
        return pauseEverywhere;
      },
    },
    limits,
  );
  for (const chunk of splitBytes(bytes, split)) {
    let error = parser.execute(chunk);
    while (error === undefined && parser.isPaused && !stopped) error = parser.resume();
    if (error) return { requests, error: error.code, status: error.status };
    if (stopped) return { requests };
  }
  const error = parser.finish();
  if (error) return { requests, error: error.code, status: error.status };
  return { requests };
}

export interface SeenResponse {
  status: number;
  reason: string;
  httpVersion: string;
  rawHeaders: string[];
  framing: string;
  body: string;
  complete: boolean;
  keepAlive: boolean;
  interim: number[];
}

export interface ResponseOutcome {
  responses: SeenResponse[];
  error?: string;
  /** bytes left for another protocol after a 101 / CONNECT 2xx */
  detached?: string;
}

/**
 * Parses an upstream's bytes as answers to `methods` (one expected response per method, asked for
 * as the previous one ends), then the upstream's close.
 */
export function parseResponses(bytes: Buffer, methods: string[], split: Split, limits?: Partial<Http1Limits>): ResponseOutcome {
  const responses: SeenResponse[] = [];
  let current: SeenResponse | undefined;
  let interim: number[] = [];
  let next = 0;
  let detach = false;
  const parser: ResponseParser = new ResponseParser(
    {
      onInterim(head: ResponseHead) {
        interim.push(head.status);
      },
      onHead(head: ResponseHead) {
        current = {
          status: head.status,
          reason: head.reason,
          httpVersion: head.httpVersion,
          rawHeaders: head.rawHeaders,
          framing: head.framing,
          body: '',
          complete: false,
          keepAlive: head.keepAlive,
          interim,
        };
        interim = [];
        responses.push(current);
        if (head.upgrade || (methods[next - 1] === 'CONNECT' && head.status < 300)) detach = true;
      },
      onBody(chunk: Buffer) {
        current!.body += chunk.toString('latin1');
      },
      onEnd() {
        current!.complete = true;
        // the next request goes out once this response is complete, as a pool would do
        if (next < methods.length && parser.isIdle) parser.expectResponse(methods[next++]!);
      },
    },
    limits,
  );
  parser.expectResponse(methods[next++]!);
  const chunks = splitBytes(bytes, split);
  for (let k = 0; k < chunks.length; k++) {
    const error = parser.execute(chunks[k]!);
    if (error) return { responses, error: error.code };
    if (detach) {
      // what the parser held plus the chunks after: the tunnel's bytes
      const held = parser.detach();
      const rest = [...(held ? [held] : []), ...chunks.slice(k + 1)];
      return { responses, detached: Buffer.concat(rest).toString('latin1') };
    }
  }
  const error = parser.finish();
  if (error) return { responses, error: error.code };
  return { responses };
}
