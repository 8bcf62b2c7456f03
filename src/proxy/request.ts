import type { IncomingMessage } from 'node:http';
import { normalizePath } from '../router/path.ts';
import type { MatchRequest } from '../router/types.ts';

/**
 * What the proxy derives from a client request before routing: the router's MatchRequest plus the
 * upstream path. One object per request (the router sees it through the MatchRequest interface).
 */
export interface ProxyRequest extends MatchRequest {
  /** normalized path as forwarded upstream, with '?query' when there is one */
  forwardPath: string;
}

/**
 * Parses the request target (origin-form, or absolute-form whose authority then wins over Host,
 * RFC 9112 3.2.2) and builds the MatchRequest. Returns undefined for a malformed target (→ 400).
 */
export function describeRequest(req: IncomingMessage): ProxyRequest | undefined {
  const url = req.url ?? '';
  let target = url;
  let authority: string | undefined;
  if (url.charCodeAt(0) !== 47 /* / */) {
    const schemeEnd = url.indexOf('://');
    if (schemeEnd === -1) return undefined;
    const scheme = url.slice(0, schemeEnd).toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') return undefined;
    let pathStart = schemeEnd + 3;
    while (pathStart < url.length && url[pathStart] !== '/' && url[pathStart] !== '?') pathStart++;
    authority = url.slice(schemeEnd + 3, pathStart);
    target = pathStart === url.length ? '/' : url[pathStart] === '?' ? '/' + url.slice(pathStart) : url.slice(pathStart);
  }

  const queryStart = target.indexOf('?');
  const rawPath = queryStart === -1 ? target : target.slice(0, queryStart);
  const query = queryStart === -1 ? '' : target.slice(queryStart + 1);
  const path = normalizePath(rawPath);
  if (path === undefined) return undefined;

  const hostHeader = authority ?? req.headers.host;
  return {
    method: req.method ?? 'GET',
    host: hostHeader === undefined ? '' : hostWithoutPort(hostHeader),
    path: path.match,
    remoteAddr: req.socket.remoteAddress ?? '',
    headers: req.headers,
    query,
    forwardPath: query === '' ? path.forward : path.forward + '?' + query,
  };
}

/**
 * "Example.COM:8080" → "example.com"; IPv6 keeps its brackets like nginx's $host ("[::1]:80" →
 * "[::1]").
 */
export function hostWithoutPort(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const close = host.indexOf(']');
    if (close !== -1) end = close + 1;
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  const name = end === host.length ? host : host.slice(0, end);
  return name.toLowerCase();
}
