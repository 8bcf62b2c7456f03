import { STATUS_CODES } from 'node:http';
import { FIELD_VALUE, TOKEN } from './chars.ts';

/*
 * Writing HTTP/1.1 heads and chunked bodies. A head is built as one latin1 string and handed to
 * socket.write(head, 'latin1') in one call: latin1 maps each char to its byte, so header values the
 * parser produced go back out byte for byte, and one write is one syscall (or one writev entry).
 *
 * The writers trust their input: what the parser produced is valid by construction, and header
 * names/values that come from config or plugins are checked where they enter (isValidHeaderName /
 * isValidHeaderValue below), once, not per request. A CR or LF reaching these functions would be
 * header injection.
 */

/** `METHOD target HTTP/1.1` + headers + blank line, from a flat [name, value, ...] list */
export function requestHead(method: string, target: string, rawHeaders: readonly string[]): string {
  let head = method + ' ' + target + ' HTTP/1.1\r\n';
  for (let i = 0; i < rawHeaders.length; i += 2) head += rawHeaders[i] + ': ' + rawHeaders[i + 1] + '\r\n';
  return head + '\r\n';
}

/** `HTTP/1.1 status reason` + headers + blank line; the reason defaults to the standard phrase */
export function responseHead(status: number, rawHeaders: readonly string[], reason?: string): string {
  let head = 'HTTP/1.1 ' + status + ' ' + (reason ?? STATUS_CODES[status] ?? '') + '\r\n';
  for (let i = 0; i < rawHeaders.length; i += 2) head += rawHeaders[i] + ': ' + rawHeaders[i + 1] + '\r\n';
  return head + '\r\n';
}

/** Appends headers to a head under construction (the proxy's own: X-Forwarded-*, Via, ...). */
export function headerLines(rawHeaders: readonly string[]): string {
  let lines = '';
  for (let i = 0; i < rawHeaders.length; i += 2) lines += rawHeaders[i] + ': ' + rawHeaders[i + 1] + '\r\n';
  return lines;
}

export const CRLF = '\r\n';
/** the last chunk and an empty trailer section */
export const LAST_CHUNK = '0\r\n\r\n';

/** `<size in hex>\r\n`, what precedes a chunk's data */
export function chunkHeader(size: number): string {
  return size.toString(16) + '\r\n';
}

/**
 * One chunk as one buffer (size line, data, CRLF): a copy, worth it for small chunks (one write
 * instead of three); for large ones write chunkHeader(n), the data and CRLF under socket.cork().
 */
export function encodeChunk(data: Uint8Array): Buffer {
  const header = chunkHeader(data.length);
  const out = Buffer.allocUnsafe(header.length + data.length + 2);
  out.write(header, 0, 'latin1');
  out.set(data, header.length);
  out[out.length - 2] = 13;
  out[out.length - 1] = 10;
  return out;
}

/** A header name a message may carry: a non-empty token. */
export function isValidHeaderName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c > 0xff || TOKEN[c] !== 1) return false;
  }
  return true;
}

/**
 * A header value a message may carry: field-vchar, SP, HTAB (latin1), no leading/trailing whitespace
 * (a parser would strip it, so the value would not round-trip). Never CR, LF or NUL.
 */
export function isValidHeaderValue(value: string): boolean {
  const n = value.length;
  if (n > 0) {
    const first = value.charCodeAt(0);
    const last = value.charCodeAt(n - 1);
    if (first === 32 || first === 9 || last === 32 || last === 9) return false;
  }
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c > 0xff || FIELD_VALUE[c] !== 1) return false;
  }
  return true;
}
