/**
 * Every error Portico reports to a user carries a stable code (like undici's UND_ERR_*), so scripts
 * and dashboards can match on it instead of on message text.
 */
export const ErrorCode = {
  /** the portico.yaml gateway config is unreadable or invalid */
  CONFIG_INVALID: 'PORTICO_ERR_CONFIG_INVALID',
  /** a config object (route, upstream, ...) failed its JSON schema */
  SCHEMA: 'PORTICO_ERR_SCHEMA',
  /** a config object's value is not parseable JSON / YAML */
  PARSE: 'PORTICO_ERR_PARSE',
  /** a config object names an upstream_id / service_id that does not exist */
  REFERENCE: 'PORTICO_ERR_REFERENCE',
  /** a config object is semantically wrong (bad regex, bad CIDR, unknown var operator, ...) */
  SEMANTIC: 'PORTICO_ERR_SEMANTIC',
  /** a config object is over the size or nesting-depth limit (src/security/limits.ts); it was not parsed further */
  LIMIT: 'PORTICO_ERR_LIMIT',
  /**
   * a config object passed validation but the runtime could not compile it. The validator runs the
   * runtime's compile, so this is a Portico bug: the object is taken out of service, the rest applies.
   */
  COMPILE: 'PORTICO_ERR_COMPILE',
  /** the etcd config center could not be reached or answered with an error */
  ETCD_UNAVAILABLE: 'PORTICO_ERR_ETCD_UNAVAILABLE',
  ETCD_AUTH: 'PORTICO_ERR_ETCD_AUTH',
  ETCD_COMPACTED: 'PORTICO_ERR_ETCD_COMPACTED',
  /** the on-disk snapshot is missing or unreadable */
  SNAPSHOT: 'PORTICO_ERR_SNAPSHOT',
  /** DNS discovery: the name has no records (NXDOMAIN, or no A/AAAA/SRV) */
  DNS_NO_RECORDS: 'PORTICO_ERR_DNS_NO_RECORDS',
  /** DNS discovery: the server failed (SERVFAIL, REFUSED, timeout, unreachable, bad answer) */
  DNS_FAILED: 'PORTICO_ERR_DNS_FAILED',
  /** DNS discovery: no first answer within the bound */
  DNS_NOT_READY: 'PORTICO_ERR_DNS_NOT_READY',
  /** an Admin API write (apply, rollback) lost to a concurrent change of the config: nothing written, retry */
  CONFLICT: 'PORTICO_ERR_CONFLICT',
  /** a revision asked for does not exist (yet): newer than etcd's current one, or not a revision */
  REVISION: 'PORTICO_ERR_REVISION',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class PorticoError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PorticoError';
    this.code = code;
  }
}

/**
 * Errors returned to HTTP clients by the data plane. Status codes and messages follow APISIX so
 * existing clients and monitors keep working: body is always `{"error_msg": "..."}`.
 */
export const ProxyError = {
  ROUTE_NOT_FOUND: { status: 404, message: '404 Route Not Found' },
  BAD_REQUEST: { status: 400, message: 'Bad Request' },
  /** TRACE while `proxy.allow_trace` is false (nginx answers TRACE with 405 too) */
  METHOD_NOT_ALLOWED: { status: 405, message: '405 Not Allowed' },
  /** the client took longer than `proxy.timeouts.header` / `request_body` to send its request */
  REQUEST_TIMEOUT: { status: 408, message: '408 Request Timeout' },
  /** an `Expect` other than `100-continue` (RFC 9110 §10.1.1; node:http answers 417 too) */
  EXPECTATION_FAILED: { status: 417, message: '417 Expectation Failed' },
  /** request head over node's size limit, or more header lines than `proxy.max_header_count` */
  HEADERS_TOO_LARGE: { status: 431, message: '431 Request Header Fields Too Large' },
  /** a request Transfer-Encoding other than a single final `chunked` (RFC 9112 §6.1; nginx answers 501 too) */
  NOT_IMPLEMENTED: { status: 501, message: '501 Not Implemented' },
  UPSTREAM_UNAVAILABLE: { status: 502, message: '502 Bad Gateway' },
  NO_HEALTHY_NODE: { status: 503, message: '503 Service Unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, message: '504 Gateway Timeout' },
} as const;
