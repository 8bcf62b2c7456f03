import { isIPv6 } from 'node:net';
import { ErrorCode, PorticoError } from '../errors.ts';
import { escapePointer } from '../security/limits.ts';
import type { UpstreamNode } from './types.ts';

/** APISIX's two spellings of `upstream.nodes`. */
export type NodesConfig =
  | Record<string, number>
  | ReadonlyArray<{ host: string; port?: number; weight: number; priority?: number }>;

export function defaultPort(scheme: string | undefined): number {
  return scheme === 'https' ? 443 : 80;
}

/** A node's identity: "host:port", IPv6 addresses in brackets ("[::1]:80"). */
export function nodeKey(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Normalizes `{"host:port": weight}` and `[{host, port, weight, priority}]` into UpstreamNode[]
 * (either may be empty: APISIX accepts an upstream with no nodes yet, and answers its requests
 * 503). A missing port defaults to 80/443 by scheme. IPv6 hosts are stored without brackets;
 * their key has them. Throws PorticoError(SEMANTIC) on an address, port or weight no upstream
 * could use, its message starting with the field's path inside the upstream (`/nodes/127.0.0.1:80800:
 * port must be 1-65535`). The validator calls this same function, so what it throws is a
 * rejection, never a failure of the data plane.
 */
export function normalizeNodes(nodes: NodesConfig, scheme: string | undefined): UpstreamNode[] {
  const result: UpstreamNode[] = [];
  if (Array.isArray(nodes)) {
    (nodes as Extract<NodesConfig, ReadonlyArray<unknown>>).forEach((node, i) => {
      const host = listedHost(node.host, `/nodes/${i}/host`);
      result.push(makeNode(host, node.port ?? defaultPort(scheme), node.weight, node.priority, `/nodes/${i}`, true));
    });
    return result;
  }
  for (const [address, weight] of Object.entries(nodes as Record<string, number>)) {
    const at = `/nodes/${escapePointer(address)}`;
    const { host, port } = splitAddress(address, at);
    result.push(makeNode(host, port ?? defaultPort(scheme), weight, undefined, at, false));
  }
  return result;
}

/** A host name or IPv4 address: APISIX host_def's characters, without its brackets and colons. */
const HOST_NAME = /^[0-9A-Za-z._-]+$/;
const BRACKETS = "IPv6 address must be enclosed with '[' and ']'";

/**
 * A map key: "host", "host:port", "[v6]" or "[v6]:port".
 *
 * APISIX's parse_addr reads an unbracketed key with two or more colons as an IPv6 address with no
 * port, so `"::1:1980"` is the address ::1:1980 on port 80 (t/node/upstream-ipv6.t TEST 9-10:
 * accepted, then every request 502s), while its author almost certainly meant ::1 port 1980. The
 * Admin API rejects a bare IPv6 host in the array form for this reason; Portico rejects it in
 * both forms and says which spelling is unambiguous.
 */
function splitAddress(address: string, at: string): { host: string; port: number | undefined } {
  if (address.startsWith('[')) {
    const close = address.indexOf(']');
    if (close === -1) throw invalid(at, 'unterminated IPv6 bracket');
    const host = address.slice(1, close);
    if (!isIPv6(host)) throw invalid(at, `'${host}' in brackets is not an IPv6 address`);
    const rest = address.slice(close + 1);
    if (rest === '') return { host, port: undefined };
    if (!rest.startsWith(':')) throw invalid(at, 'expected ":port" after "]"');
    return { host, port: parsePort(rest.slice(1), at) };
  }
  const colon = address.indexOf(':');
  if (colon !== -1 && address.indexOf(':', colon + 1) !== -1) {
    if (!isIPv6(address)) throw invalid(at, `more than one ':' (an IPv6 address goes in brackets: "[::1]:8080")`);
    // "::1:1980" is both the address ::1:1980 and ::1 with port 1980: offer both spellings
    const last = address.lastIndexOf(':');
    const head = address.slice(0, last);
    const asPort = /^\d{1,5}$/.test(address.slice(last + 1)) && isIPv6(head) ? ` or "[${head}]:${address.slice(last + 1)}"` : '';
    throw invalid(at, `${BRACKETS}: write "[${address}]"${asPort}`);
  }
  const host = colon === -1 ? address : address.slice(0, colon);
  if (!HOST_NAME.test(host)) throw invalid(at, hostRule(host));
  return { host, port: colon === -1 ? undefined : parsePort(address.slice(colon + 1), at) };
}

/** The array form's `host`: a host name, an IPv4 address or a bracketed IPv6 address; no port. */
function listedHost(host: string, at: string): string {
  if (host.startsWith('[') && host.endsWith(']')) {
    const inner = host.slice(1, -1);
    if (!isIPv6(inner)) throw invalid(at, `'${inner}' in brackets is not an IPv6 address`);
    return inner;
  }
  // APISIX's check_schema (apisix/upstream.lua), tested in t/admin/upstream.t TEST 23
  if (isIPv6(host)) throw invalid(at, `${BRACKETS}: write "[${host}]"`);
  if (host.includes(':') || host.includes('[') || host.includes(']')) throw invalid(at, `'${host}' is not a host: the port goes in the 'port' field`);
  if (!HOST_NAME.test(host)) throw invalid(at, hostRule(host));
  return host;
}

function hostRule(host: string): string {
  if (host === '') return 'empty host';
  if (host.startsWith('*')) return `'${host}': a node cannot be a wildcard host`;
  return `'${host}' is not a host name or address (letters, digits, '.', '-', '_'; IPv6 in brackets)`;
}

function parsePort(text: string, at: string): number {
  if (!/^\d{1,5}$/.test(text)) throw invalid(at, 'port must be a number');
  return Number(text);
}

/** `at`: the node's path; `listed`: array form, where host, port and weight are fields of their own. */
function makeNode(host: string, port: number, weight: number, priority: number | undefined, at: string, listed: boolean): UpstreamNode {
  const key = nodeKey(host, port);
  if (host === '') throw invalid(listed ? `${at}/host` : at, 'empty host');
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid(listed ? `${at}/port` : at, 'port must be 1-65535');
  if (!Number.isInteger(weight) || weight < 0) throw invalid(listed ? `${at}/weight` : at, 'weight must be an integer >= 0');
  return { host, port, weight, key, priority: priority ?? 0 };
}

function invalid(at: string, rule: string): PorticoError {
  return new PorticoError(ErrorCode.SEMANTIC, `${at}: ${rule}`);
}
