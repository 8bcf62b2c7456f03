import type { IncomingMessage } from 'node:http';
import { ProxyError } from '../errors.ts';
import { normalizePath } from '../router/path.ts';
import type { MatchRequest, PostArgs } from '../router/types.ts';
import type { ProxyErrorKind } from './responses.ts';

/*
 * Request-level decisions, kept free of node:http types (plain strings and the raw header list) so
 * that any transport parsing client bytes calls the same functions: the head check before routing
 * (header count, Host, TRACE) and the derivation of the routed host, path and query.
 */

/** What portico.yaml lets clients send: `proxy.max_header_count`, `proxy.allow_trace`. */
export interface RequestPolicy {
  /** more header lines than this → 431 */
  maxHeaderCount: number;
  /** false → TRACE is answered 405 */
  allowTrace: boolean;
}

/** The policy portico.yaml's `proxy` section sets (both transports read it from here). */
export function requestPolicy(proxy: { max_header_count: number; allow_trace: boolean }): RequestPolicy {
  return { maxHeaderCount: proxy.max_header_count, allowTrace: proxy.allow_trace };
}

/** Why a request head is refused, and whether the connection can still carry another request. */
export interface HeadRejection {
  error: ProxyErrorKind;
  /**
   * The head itself is suspect (framing or host may mean something else to the next hop), so the
   * connection is closed after the answer, as nginx does after a 400.
   */
  closeConnection: boolean;
}

const TOO_MANY_HEADERS: HeadRejection = { error: ProxyError.HEADERS_TOO_LARGE, closeConnection: true };
const BAD_HOST: HeadRejection = { error: ProxyError.BAD_REQUEST, closeConnection: true };
const BAD_FRAMING: HeadRejection = { error: ProxyError.BAD_REQUEST, closeConnection: true };
const UNKNOWN_CODING: HeadRejection = { error: ProxyError.NOT_IMPLEMENTED, closeConnection: true };
// the request is well-formed, only refused: node:http reads and drops its body, keep-alive goes on
const TRACE_NOT_ALLOWED: HeadRejection = { error: ProxyError.METHOD_NOT_ALLOWED, closeConnection: false };

/**
 * Checks a parsed request head before routing. undefined = acceptable; otherwise the answer.
 * - more than `maxHeaderCount` header lines → 431: never drop lines silently (node:http keeps only
 *   its first `maxHeadersCount`, and a Content-Length beyond that would frame a body the upstream
 *   never hears of);
 * - Host: at most one (RFC 9112 §3.2), a valid `host[:port]` (no `@`, `/`, spaces, control bytes,
 *   empty labels), required in HTTP/1.1 → else 400;
 * - an absolute-form target's authority is held to the same rule, and userinfo (`user@`) in it → 400;
 * - Transfer-Encoding: one line, exactly `chunked` (else 400 for a repeated or empty one, 501 for
 *   another coding, as nginx; node:http would decode `gzip, chunked` and drop the gzip label);
 * - TRACE → 405 unless allowed (it echoes the request, cookies included, back to whoever sent it).
 *
 * `rawHeaders` is the flat [name, value, ...] list as received.
 */
export function rejectRequestHead(
  method: string,
  target: string,
  httpVersion: string,
  rawHeaders: readonly string[],
  policy: RequestPolicy,
): HeadRejection | undefined {
  if (rawHeaders.length > policy.maxHeaderCount * 2) return TOO_MANY_HEADERS;
  let host: string | undefined;
  let transferEncoding: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      // one header, exactly `chunked`: any other coding would reach the upstream decoded but still
      // labelled by nothing (Transfer-Encoding is hop-by-hop), and two lines are a smuggling classic
      if (transferEncoding !== undefined) return BAD_FRAMING;
      transferEncoding = rawHeaders[i + 1]!;
      if (transferEncoding.trim().toLowerCase() !== 'chunked') return transferEncoding.trim() === '' ? BAD_FRAMING : UNKNOWN_CODING;
      continue;
    }
    if (name.length !== 4 || name.toLowerCase() !== 'host') continue;
    if (host !== undefined) return BAD_HOST;
    host = rawHeaders[i + 1]!;
    if (!isValidHost(host)) return BAD_HOST;
  }
  if (host === undefined && httpVersion === '1.1') return BAD_HOST;
  if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
    const authority = targetAuthority(target);
    // not absolute-form at all (or not http/https) is left to describeRequest, which answers 400
    if (authority !== undefined && !isValidHost(authority)) return BAD_HOST;
  }
  if (!policy.allowTrace && method === 'TRACE') return TRACE_NOT_ALLOWED;
  return undefined;
}

/**
 * What the proxy derives from a client request before routing: the router's MatchRequest plus what
 * is forwarded. One object per request (the router sees it through the MatchRequest interface).
 */
export interface ProxyRequest extends MatchRequest {
  /** normalized path as forwarded upstream, with '?query' when there is one */
  forwardPath: string;
  /**
   * The Host as the client addressed it, port included: the absolute-form target's authority, else
   * the Host header (undefined for an HTTP/1.0 request without one). `host` is this, normalized; both
   * describe the host the request was routed on, so pass_host: pass forwards this one.
   */
  hostHeader: string | undefined;
}

/**
 * Parses the request target (origin-form, or absolute-form whose authority then replaces Host,
 * RFC 9112 §3.2.2) and builds the MatchRequest. Returns undefined for a malformed target (→ 400).
 */
export function describeRequest(req: IncomingMessage, host: string | undefined = req.headers.host): ProxyRequest | undefined {
  const url = req.url ?? '';
  let target = url;
  let hostHeader = host;
  if (url.charCodeAt(0) !== 47 /* / */) {
    const authority = targetAuthority(url);
    if (authority === undefined || !isValidHost(authority)) return undefined;
    hostHeader = authority;
    const pathStart = url.indexOf('://') + 3 + authority.length;
    target = pathStart === url.length ? '/' : url[pathStart] === '?' ? '/' + url.slice(pathStart) : url.slice(pathStart);
  }

  const queryStart = target.indexOf('?');
  const rawPath = queryStart === -1 ? target : target.slice(0, queryStart);
  const query = queryStart === -1 ? '' : target.slice(queryStart + 1);
  const path = normalizePath(rawPath);
  if (path === undefined) return undefined;

  return new DescribedRequest(
    req,
    req.method ?? 'GET',
    hostHeader === undefined ? '' : routedHost(hostHeader),
    path.match,
    req.socket.remoteAddress ?? '',
    query,
    query === '' ? path.forward : path.forward + '?' + query,
    hostHeader,
  );
}

/**
 * A ProxyRequest whose `headers` object is the request's, read only when asked: only routes with
 * `vars` need it, and a transport that keeps the raw header list builds it on first use.
 */
class DescribedRequest implements ProxyRequest {
  // declared (not added on first use) so every request object keeps one shape; set only for
  // requests that meet a post_arg route (src/proxy/post-args.ts)
  postArgs: PostArgs | undefined = undefined;
  bodyWanted = false;

  constructor(
    private readonly source: { readonly headers: IncomingMessage['headers']; readonly socket: object },
    readonly method: string,
    readonly host: string,
    readonly path: string,
    readonly remoteAddr: string,
    readonly query: string,
    readonly forwardPath: string,
    readonly hostHeader: string | undefined,
  ) {}

  /** read only by routes whose vars use `scheme` */
  get scheme(): string {
    return (this.source.socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http';
  }

  get headers(): IncomingMessage['headers'] {
    return this.source.headers;
  }
}

/**
 * The authority of an absolute-form target (`http://Host:port/path?q` → `Host:port`), or undefined
 * when the target is not absolute-form with an http/https scheme.
 */
function targetAuthority(target: string): string | undefined {
  const schemeEnd = target.indexOf('://');
  if (schemeEnd === -1) return undefined;
  const scheme = target.slice(0, schemeEnd).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return undefined;
  let end = schemeEnd + 3;
  while (end < target.length && target.charCodeAt(end) !== 47 /* / */ && target.charCodeAt(end) !== 63 /* ? */) end++;
  return target.slice(schemeEnd + 3, end);
}

/**
 * The host name routes are matched on, as nginx's $host: "Example.COM:8080" → "example.com"; a
 * trailing dot is dropped ("api.example.com." is the same DNS name); IPv6 keeps its brackets
 * ("[::1]:80" → "[::1]").
 */
export function routedHost(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf(']');
    if (close !== -1) end = close + 1;
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) end = colon;
    if (end > 1 && host.charCodeAt(end - 1) === 46 /* . */) end--;
  }
  const name = end === host.length ? host : host.slice(0, end);
  return name.toLowerCase();
}

/*
 * Bytes allowed in a reg-name (RFC 3986 §3.2.2: unreserved and sub-delims). Not allowed: `%`
 * (percent-encoding would let the next hop decode a different name than the one routed), and
 * everything that ends or re-scopes an authority elsewhere — `@` (userinfo), `/` `\` `?` `#`,
 * whitespace, control and non-ASCII bytes.
 */
const REG_NAME = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=") REG_NAME[c.charCodeAt(0)] = 1;
const IPV6_LITERAL = new Uint8Array(128);
for (const c of '0123456789abcdefABCDEF:.') IPV6_LITERAL[c.charCodeAt(0)] = 1;

/**
 * `host[:port]` as RFC 9110 §7.2 allows it in Host and in an absolute-form authority: a reg-name
 * without empty labels (one trailing dot allowed, as in DNS), or `[IPv6]`; then an optional port of
 * up to 5 digits. Empty is invalid (nginx answers 400 to an empty Host too).
 */
export function isValidHost(value: string): boolean {
  const length = value.length;
  let i = 0;
  if (value.charCodeAt(0) === 91 /* [ */) {
    i = 1;
    while (i < length && value.charCodeAt(i) < 128 && IPV6_LITERAL[value.charCodeAt(i)] === 1) i++;
    if (i === 1 || value.charCodeAt(i) !== 93 /* ] */) return false;
    i++;
  } else {
    let labelStart = 0;
    while (i < length) {
      const c = value.charCodeAt(i);
      if (c === 58 /* : */) break;
      if (c >= 128 || REG_NAME[c] !== 1) return false;
      if (c === 46 /* . */) {
        if (i === labelStart) return false;
        labelStart = i + 1;
      }
      i++;
    }
    if (i === 0) return false;
  }
  if (i === length) return true;
  if (value.charCodeAt(i) !== 58 /* : */ || length - i - 1 > 5) return false;
  for (i++; i < length; i++) {
    const c = value.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}
