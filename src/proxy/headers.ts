import type { IncomingMessage } from 'node:http';
import { unmapIpv4 } from '../router/ip.ts';
import type { UpstreamNode, UpstreamTarget } from '../upstream/types.ts';
import type { ProxyRequest } from './request.ts';

/*
 * Header names are classified by length first, so the common header (none of these) costs one
 * switch and no lower-casing.
 */
const Kind = {
  Pass: 0,
  HopByHop: 1,
  Connection: 2,
  Upgrade: 3,
  Host: 4,
  Expect: 5,
  XForwardedFor: 6,
  XRealIp: 7,
  XForwardedProto: 8,
  XForwardedHost: 9,
  XForwardedPort: 10,
} as const;
type Kind = (typeof Kind)[keyof typeof Kind];

function requestHeaderKind(name: string): Kind {
  switch (name.length) {
    case 2:
      return name.toLowerCase() === 'te' ? Kind.HopByHop : Kind.Pass;
    case 4:
      return name.toLowerCase() === 'host' ? Kind.Host : Kind.Pass;
    case 6:
      return name.toLowerCase() === 'expect' ? Kind.Expect : Kind.Pass;
    case 7: {
      const lower = name.toLowerCase();
      return lower === 'upgrade' ? Kind.Upgrade : lower === 'trailer' ? Kind.HopByHop : Kind.Pass;
    }
    case 9:
      return name.toLowerCase() === 'x-real-ip' ? Kind.XRealIp : Kind.Pass;
    case 10: {
      const lower = name.toLowerCase();
      return lower === 'connection' ? Kind.Connection : lower === 'keep-alive' ? Kind.HopByHop : Kind.Pass;
    }
    case 15:
      return name.toLowerCase() === 'x-forwarded-for' ? Kind.XForwardedFor : Kind.Pass;
    case 16: {
      const lower = name.toLowerCase();
      if (lower === 'x-forwarded-host') return Kind.XForwardedHost;
      if (lower === 'x-forwarded-port') return Kind.XForwardedPort;
      return lower === 'proxy-connection' ? Kind.HopByHop : Kind.Pass;
    }
    case 17: {
      const lower = name.toLowerCase();
      if (lower === 'x-forwarded-proto') return Kind.XForwardedProto;
      return lower === 'transfer-encoding' ? Kind.HopByHop : Kind.Pass;
    }
    default:
      return Kind.Pass;
  }
}

/** Hop-by-hop headers of RFC 9110 7.6.1 (plus Proxy-Connection), which a proxy must not forward. */
export function isHopByHop(name: string): boolean {
  const kind = requestHeaderKind(name);
  return kind === Kind.HopByHop || kind === Kind.Connection || kind === Kind.Upgrade;
}

/**
 * Extra header names a Connection header lists ("Connection: close, X-Foo"), lower-cased; undefined
 * when it lists only the usual tokens.
 */
function connectionListedNames(value: string): Set<string> | undefined {
  // nearly every Connection header (upstream responses, most clients) is one usual token: no split
  if (value.length <= 10) {
    const lower = value.toLowerCase();
    if (lower === 'keep-alive' || lower === 'close' || lower === 'upgrade') return undefined;
  }
  let names: Set<string> | undefined;
  for (const token of value.split(',')) {
    const name = token.trim().toLowerCase();
    if (name === '' || name === 'close' || name === 'keep-alive' || name === 'upgrade') continue;
    (names ??= new Set()).add(name);
  }
  return names;
}

function withoutNames(headers: string[], names: ReadonlySet<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    if (!names.has(headers[i]!.toLowerCase())) kept.push(headers[i]!, headers[i + 1]!);
  }
  return kept;
}

export interface UpstreamHeaders {
  /** flat [name, value, name, value, ...] as undici and raw HTTP writers take it */
  headers: string[];
  /** index of the Host value in `headers`, rewritten per attempt when pass_host=node */
  hostIndex: number;
}

/**
 * Request headers for the upstream, built once per request:
 * - hop-by-hop headers and any header the Connection header names are dropped (for an upgrade,
 *   `Upgrade` is kept and `Connection: upgrade` set);
 * - `Expect` is dropped: node:http already answered `100 Continue` to the client;
 * - X-Forwarded-For gets the client address appended, X-Real-IP is the client address;
 *   X-Forwarded-Proto/-Host/-Port keep a value the client sent, else are set — as APISIX does
 *   (X-Forwarded-Host then being the routed host, as nginx's $host);
 * - Host is added per pass_host (see `upstreamHost`); with `pass` it is the host the request was
 *   routed on — an absolute-form target's authority wins over the Host header (RFC 9112 §3.2.2), so
 *   a route bound to one host never forwards another.
 */
/** W3C trace context headers: the gateway sends its own when tracing is on */
const TRACE_CONTEXT: ReadonlySet<string> = new Set(['traceparent', 'tracestate']);

export function upstreamHeaders(
  req: IncomingMessage,
  request: ProxyRequest,
  target: UpstreamTarget,
  node: UpstreamNode,
  upgrade: boolean,
  /** the gateway's trace context (tracing on): replaces the client's traceparent and tracestate */
  trace?: { traceparent: string; tracestate: string | undefined },
  /** the client sent trace context headers (they are dropped only then: no copy of the list otherwise) */
  clientTrace = true,
): UpstreamHeaders {
  const raw = req.rawHeaders;
  let headers: string[] = [];
  let forwardedFor: string | undefined;
  let forwardedProto: string | undefined;
  let forwardedHost: string | undefined;
  let forwardedPort: string | undefined;
  let connection: string | undefined;
  let upgradeValue: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    switch (requestHeaderKind(name)) {
      case Kind.Pass:
        headers.push(name, value);
        break;
      case Kind.Host: // replaced below by the host the request was routed on
        break;
      case Kind.Connection:
        connection = connection === undefined ? value : connection + ', ' + value;
        break;
      case Kind.Upgrade:
        upgradeValue = value;
        break;
      case Kind.XForwardedFor:
        forwardedFor = forwardedFor === undefined ? value : forwardedFor + ', ' + value;
        break;
      case Kind.XForwardedProto:
        forwardedProto ??= value;
        break;
      case Kind.XForwardedHost:
        forwardedHost ??= value;
        break;
      case Kind.XForwardedPort:
        forwardedPort ??= value;
        break;
      default: // hop-by-hop, Expect, X-Real-IP (replaced below)
        break;
    }
  }
  if (connection !== undefined) {
    const listed = connectionListedNames(connection);
    if (listed !== undefined) headers = withoutNames(headers, listed);
  }

  const socket = req.socket;
  // an IPv4 client on a dual-stack listener is "::ffff:1.2.3.4"; upstreams expect "1.2.3.4"
  const clientAddress = unmapIpv4(request.remoteAddr);
  const encrypted = (socket as { encrypted?: boolean }).encrypted === true;
  headers.push(
    'X-Forwarded-For',
    forwardedFor === undefined ? clientAddress : forwardedFor + ', ' + clientAddress,
    'X-Real-IP',
    clientAddress,
    'X-Forwarded-Proto',
    forwardedProto ?? (encrypted ? 'https' : 'http'),
    'X-Forwarded-Host',
    forwardedHost ?? request.host,
    'X-Forwarded-Port',
    forwardedPort ?? String(socket.localPort ?? ''),
  );
  if (upgrade && upgradeValue !== undefined) headers.push('Upgrade', upgradeValue, 'Connection', 'upgrade');
  if (trace !== undefined) {
    if (clientTrace) headers = withoutNames(headers, TRACE_CONTEXT);
    headers.push('traceparent', trace.traceparent);
    if (trace.tracestate !== undefined) headers.push('tracestate', trace.tracestate);
  }
  const hostIndex = headers.length + 1;
  headers.push('Host', upstreamHost(target, node, request.hostHeader));
  return { headers, hostIndex };
}

/**
 * The Host header sent upstream, per pass_host: `pass` keeps the client's (port included),
 * `node` uses the node's address (port omitted when it is the scheme's default), `rewrite` uses
 * the configured upstream host.
 */
export function upstreamHost(target: UpstreamTarget, node: UpstreamNode, clientHost: string | undefined): string {
  switch (target.passHost) {
    case 'pass':
      return clientHost ?? node.key;
    case 'rewrite':
      return target.upstreamHost ?? node.key;
    case 'node': {
      // a resolved node: the name it was resolved from, as nginx sends for `server name`
      const host = node.hostname ?? (node.host.includes(':') ? `[${node.host}]` : node.host);
      return node.port === (target.scheme === 'https' ? 443 : 80) ? host : `${host}:${node.port}`;
    }
  }
}

/**
 * Response headers for the client from undici's raw headers (Buffers): hop-by-hop ones dropped.
 * Values are decoded as latin1 so bytes pass through unchanged (node:http writes headers as latin1
 * when the body is written as Buffers).
 */
export function clientHeaders(raw: Buffer[]): string[] {
  const headers: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1');
    if (isHopByHop(name)) {
      if (name.length === 10 && name.toLowerCase() === 'connection') connection = raw[i + 1]!.toString('latin1');
      continue;
    }
    headers.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (connection !== undefined) {
    const listed = connectionListedNames(connection);
    if (listed !== undefined) return withoutNames(headers, listed);
  }
  return headers;
}

/**
 * Response headers for the client from the socket transport's parsed list (latin1 strings, as
 * received): hop-by-hop ones dropped, as clientHeaders.
 */
export function clientHeaderList(raw: readonly string[]): string[] {
  const headers: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (isHopByHop(name)) {
      if (name.length === 10 && name.toLowerCase() === 'connection') connection = raw[i + 1]!;
      continue;
    }
    headers.push(name, raw[i + 1]!);
  }
  if (connection !== undefined) {
    const listed = connectionListedNames(connection);
    if (listed !== undefined) return withoutNames(headers, listed);
  }
  return headers;
}
