import { ProxyError } from '../errors.ts';
import type { Outcome } from '../upstream/health/checks.ts';
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
  /**
   * the upstream answered something that is not HTTP/1.1: a malformed head or chunk, a body longer
   * or shorter than its Content-Length (a 204 with a body), a 101 nobody asked for. It did answer,
   * so the request is not retried.
   */
  Protocol: 6,
  /** the node was at proxy.upstream_max_connections_per_node for the whole connect timeout */
  NodeBusy: 7,
} as const;
export type Failure = (typeof Failure)[keyof typeof Failure];

/** Reported (as the error of an attempt) when no connection slot freed up within timeout.connect. */
export const nodeBusy = Object.assign(new Error('node at its connection cap for the whole connect timeout'), {
  code: 'PORTICO_NODE_BUSY',
});

export function classifyFailure(err: unknown): Failure {
  const code = (err as { code?: unknown } | null)?.code;
  // undici's parser errors carry no usable code (its HPE_ lookup yields undefined): by name
  if ((err as { name?: unknown } | null)?.name === 'HTTPParserError') return Failure.Protocol;
  switch (code) {
    case 'PORTICO_NODE_BUSY':
      return Failure.NodeBusy;
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
      return Failure.Protocol;
    case 'UND_ERR_SOCKET': {
      // undici's words for a 1xx/101 it refuses; every other socket error is a broken connection
      const message = (err as Error).message;
      return message === 'bad upgrade' || message === 'bad response' ? Failure.Protocol : Failure.Broken;
    }
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return Failure.ConnectTimeout;
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return Failure.ReadTimeout;
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

/**
 * The status a client sees when this was the last failure: nginx answers 504 for timeouts, 502
 * otherwise; 503 when every node tried was at its connection cap.
 */
export function failureResponse(failure: Failure): ProxyErrorKind {
  switch (failure) {
    case Failure.NodeBusy:
      return ProxyError.NO_HEALTHY_NODE;
    case Failure.ConnectTimeout:
    case Failure.ReadTimeout:
      return ProxyError.UPSTREAM_TIMEOUT;
    case Failure.BadRequest:
      return ProxyError.BAD_REQUEST;
    default:
      return ProxyError.UPSTREAM_UNAVAILABLE;
  }
}

/**
 * What a failed attempt counts as for the upstream's passive health check: connections that could
 * not be made or broke are TCP failures, timeouts are timeouts, an answer that is not HTTP is an
 * HTTP failure. A node at the gateway's own connection cap, or a request the gateway could not
 * send, says nothing about the node.
 */
export function failureOutcome(failure: Failure): Outcome | undefined {
  switch (failure) {
    case Failure.Connect:
    case Failure.Broken:
      return 'tcp_failure';
    case Failure.ConnectTimeout:
    case Failure.ReadTimeout:
      return 'timeout';
    case Failure.Protocol:
      return 'http_failure';
    default:
      return undefined;
  }
}
