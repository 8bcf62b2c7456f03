import { ErrorCode, PorticoError } from '../errors.ts';
import { escapePointer } from '../security/limits.ts';
import type { UpstreamNode } from './types.ts';

/** APISIX's two spellings of `upstream.nodes`. */
export type NodesConfig =
  | Record<string, number>
  | ReadonlyArray<{ host: string; port?: number; weight: number; priority?: number }>;

export function defaultPort(scheme: 'http' | 'https'): number {
  return scheme === 'https' ? 443 : 80;
}

/** A node's identity: "host:port", IPv6 addresses in brackets ("[::1]:80"). */
export function nodeKey(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Normalizes `{"host:port": weight}` and `[{host, port, weight, priority}]` into UpstreamNode[].
 * A missing port defaults to 80/443 by scheme. IPv6 hosts are stored without brackets; their key
 * has them. Throws PorticoError(SEMANTIC) on a port or weight no upstream could use, its message
 * starting with the field's path inside the upstream (`/nodes/127.0.0.1:80800: port must be
 * 1-65535`). The validator calls this same function, so what it throws is a rejection, never a
 * failure of the data plane.
 */
export function normalizeNodes(nodes: NodesConfig, scheme: 'http' | 'https'): UpstreamNode[] {
  const result: UpstreamNode[] = [];
  if (Array.isArray(nodes)) {
    (nodes as Extract<NodesConfig, ReadonlyArray<unknown>>).forEach((node, i) => {
      result.push(makeNode(unbracket(node.host), node.port ?? defaultPort(scheme), node.weight, node.priority, `/nodes/${i}`, true));
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

/** "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address (no port possible then). */
function splitAddress(address: string, at: string): { host: string; port: number | undefined } {
  if (address.startsWith('[')) {
    const close = address.indexOf(']');
    if (close === -1) throw invalid(at, 'unterminated IPv6 bracket');
    const host = address.slice(1, close);
    const rest = address.slice(close + 1);
    if (rest === '') return { host, port: undefined };
    if (!rest.startsWith(':')) throw invalid(at, 'expected ":port" after "]"');
    return { host, port: parsePort(rest.slice(1), at) };
  }
  const colon = address.indexOf(':');
  if (colon === -1) return { host: address, port: undefined };
  if (address.indexOf(':', colon + 1) !== -1) return { host: address, port: undefined };
  return { host: address.slice(0, colon), port: parsePort(address.slice(colon + 1), at) };
}

function parsePort(text: string, at: string): number {
  if (!/^\d{1,5}$/.test(text)) throw invalid(at, 'port must be a number');
  return Number(text);
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
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
