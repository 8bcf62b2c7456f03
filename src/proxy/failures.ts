import { ProxyError } from '../errors.ts';
import type { ProxyErrorKind } from './responses.ts';

/** How an upstream attempt failed, which decides whether another node may be tried and the status. */
export const Failure = {
  /** the connection could not be made (refused, DNS, TLS handshake, unreachable, pool closed) */
  Connect: 0,
  /** connecting took longer than timeout.connect */
  ConnectTimeout: 1,
  /** the connection broke (reset, closed by the upstream) */
  Broken: 2,
  /** no response headers (or body bytes) within timeout.read */
  ReadTimeout: 3,
  /** the request itself is invalid for the upstream client (bad header value, ...) */
  BadRequest: 4,
  Other: 5,
} as const;
export type Failure = (typeof Failure)[keyof typeof Failure];

export function classifyFailure(err: unknown): Failure {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return Failure.ConnectTimeout;
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return Failure.ReadTimeout;
    case 'UND_ERR_SOCKET':
    case 'ECONNRESET':
    case 'EPIPE':
      return Failure.Broken;
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EHOSTDOWN':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
    case 'UND_ERR_CLOSED':
    case 'UND_ERR_DESTROYED':
      return Failure.Connect;
    case 'UND_ERR_INVALID_ARG':
    case 'UND_ERR_NOT_SUPPORTED':
      return Failure.BadRequest;
    default:
      // TLS handshake errors carry OpenSSL codes (ERR_SSL_*, CERT_*, ...)
      return typeof code === 'string' && (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS'))
        ? Failure.Connect
        : Failure.Other;
  }
}

/** The status a client sees when this was the last failure: nginx answers 504 for timeouts, 502 otherwise. */
export function failureResponse(failure: Failure): ProxyErrorKind {
  switch (failure) {
    case Failure.ConnectTimeout:
    case Failure.ReadTimeout:
      return ProxyError.UPSTREAM_TIMEOUT;
    case Failure.BadRequest:
      return ProxyError.BAD_REQUEST;
    default:
      return ProxyError.UPSTREAM_UNAVAILABLE;
  }
}
