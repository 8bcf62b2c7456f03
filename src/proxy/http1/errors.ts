/**
 * Why the HTTP/1.1 codec refused a message. Every code is stable (scripts and metrics match on it),
 * and a request-side error carries the status to answer the client with; the connection then
 * closes, because after a framing error nobody knows where the next request would start.
 *
 * A response-side error (the upstream's bytes) always maps to 502: the client is owed a gateway
 * error, and the upstream connection is unusable.
 */
export const Http1ErrorCode = {
  /** a bare CR or a bare LF where a line ends (RFC 9112 §2.2): the one byte two parsers may read differently */
  INVALID_LINE_ENDING: 'PORTICO_ERR_HTTP_INVALID_LINE_ENDING',
  /** the method is not a token, or the request line does not start with one */
  INVALID_METHOD: 'PORTICO_ERR_HTTP_INVALID_METHOD',
  /** a well-formed method that llhttp (and so node:http) does not know: 501 as RFC 9110 §9.1 says */
  UNKNOWN_METHOD: 'PORTICO_ERR_HTTP_UNKNOWN_METHOD',
  /** the request-target has a byte or a shape that is not origin-, absolute-, authority- or asterisk-form */
  INVALID_TARGET: 'PORTICO_ERR_HTTP_INVALID_TARGET',
  /** the request-target is longer than `maxTargetSize` */
  TARGET_TOO_LONG: 'PORTICO_ERR_HTTP_TARGET_TOO_LONG',
  /** the request or status line is not `... HTTP/x.y`, or has a space too many or too few */
  INVALID_VERSION: 'PORTICO_ERR_HTTP_INVALID_VERSION',
  /** a well-formed HTTP version other than 1.0 and 1.1 (0.9, 1.2, 2.0, ...) */
  UNSUPPORTED_VERSION: 'PORTICO_ERR_HTTP_UNSUPPORTED_VERSION',
  /** a header name with a byte outside tchar, an empty name, or whitespace before the colon */
  INVALID_HEADER_NAME: 'PORTICO_ERR_HTTP_INVALID_HEADER_NAME',
  /** a header value with a control byte (NUL, DEL, ...) */
  INVALID_HEADER_VALUE: 'PORTICO_ERR_HTTP_INVALID_HEADER_VALUE',
  /** a header line starting with whitespace: obs-fold, or whitespace before the first header (RFC 9112 §5.2, §2.2) */
  OBS_FOLD: 'PORTICO_ERR_HTTP_OBS_FOLD',
  /** the head is over `maxHeaderSize` (counted as node:http counts) or over `maxHeadBytes` raw */
  HEADERS_TOO_LARGE: 'PORTICO_ERR_HTTP_HEADERS_TOO_LARGE',
  /** more header lines than `maxHeaderCount` */
  TOO_MANY_HEADERS: 'PORTICO_ERR_HTTP_TOO_MANY_HEADERS',
  /** Content-Length is not 1*DIGIT (optionally followed by spaces), or beyond 2^53-1 */
  INVALID_CONTENT_LENGTH: 'PORTICO_ERR_HTTP_INVALID_CONTENT_LENGTH',
  /** Content-Length more than once, even with the same value (as llhttp) */
  DUPLICATE_CONTENT_LENGTH: 'PORTICO_ERR_HTTP_DUPLICATE_CONTENT_LENGTH',
  /** both Content-Length and Transfer-Encoding: the classic request smuggling vector (RFC 9112 §6.1) */
  CONTENT_LENGTH_WITH_TRANSFER_ENCODING: 'PORTICO_ERR_HTTP_CONTENT_LENGTH_WITH_TRANSFER_ENCODING',
  /** Transfer-Encoding empty, repeated, or `chunked` twice */
  INVALID_TRANSFER_ENCODING: 'PORTICO_ERR_HTTP_INVALID_TRANSFER_ENCODING',
  /** a request Transfer-Encoding other than exactly `chunked` (nginx answers 501 too) */
  UNSUPPORTED_TRANSFER_ENCODING: 'PORTICO_ERR_HTTP_UNSUPPORTED_TRANSFER_ENCODING',
  /** a chunk-size line that is not 1*HEXDIG [extensions] CRLF */
  INVALID_CHUNK_SIZE: 'PORTICO_ERR_HTTP_INVALID_CHUNK_SIZE',
  /** a chunk size beyond 2^53-1 */
  CHUNK_SIZE_OVERFLOW: 'PORTICO_ERR_HTTP_CHUNK_SIZE_OVERFLOW',
  /** a malformed chunk extension */
  INVALID_CHUNK_EXTENSION: 'PORTICO_ERR_HTTP_INVALID_CHUNK_EXTENSION',
  /** chunk extensions over `maxChunkExtensionSize` on one chunk (node answers 413 too) */
  CHUNK_EXTENSIONS_TOO_LARGE: 'PORTICO_ERR_HTTP_CHUNK_EXTENSIONS_TOO_LARGE',
  /** chunk data not followed by CRLF: the data is longer than its size says */
  INVALID_CHUNK_END: 'PORTICO_ERR_HTTP_INVALID_CHUNK_END',
  /** a trailer field that would change framing (Content-Length, Transfer-Encoding), as llhttp refuses */
  INVALID_TRAILER: 'PORTICO_ERR_HTTP_INVALID_TRAILER',
  /** the peer closed the connection in the middle of a message */
  PREMATURE_EOF: 'PORTICO_ERR_HTTP_PREMATURE_EOF',
  /** the status line is not `HTTP/1.x SP 3DIGIT [SP reason] CRLF`, or the status is outside 100-599 */
  INVALID_STATUS_LINE: 'PORTICO_ERR_HTTP_INVALID_STATUS_LINE',
  /** the upstream sent bytes while no response was expected from it */
  UNEXPECTED_DATA: 'PORTICO_ERR_HTTP_UNEXPECTED_DATA',
} as const;
export type Http1ErrorCode = (typeof Http1ErrorCode)[keyof typeof Http1ErrorCode];

const REQUEST_STATUS: Partial<Record<Http1ErrorCode, number>> = {
  [Http1ErrorCode.UNKNOWN_METHOD]: 501,
  [Http1ErrorCode.TARGET_TOO_LONG]: 414,
  [Http1ErrorCode.UNSUPPORTED_VERSION]: 505,
  [Http1ErrorCode.HEADERS_TOO_LARGE]: 431,
  [Http1ErrorCode.TOO_MANY_HEADERS]: 431,
  [Http1ErrorCode.UNSUPPORTED_TRANSFER_ENCODING]: 501,
  [Http1ErrorCode.CHUNK_EXTENSIONS_TOO_LARGE]: 413,
};

export class Http1ParseError extends Error {
  readonly code: Http1ErrorCode;
  /** what to answer: the client's error status for a request, 502 for an upstream response */
  readonly status: number;
  /** offset of the offending byte in the chunk being parsed when the error was found */
  readonly offset: number;

  constructor(code: Http1ErrorCode, side: 'request' | 'response', offset: number, detail?: string) {
    super(detail === undefined ? code : `${code}: ${detail}`);
    this.name = 'Http1ParseError';
    this.code = code;
    this.status = side === 'response' ? 502 : (REQUEST_STATUS[code] ?? 400);
    this.offset = offset;
  }
}
