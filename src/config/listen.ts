import { ErrorCode, PorticoError } from '../errors.ts';
import type { GatewayConfig } from './gateway.ts';

/*
 * What the data plane reads of portico.yaml: listen addresses and client timeouts. Apart from
 * gateway.ts (the schema, its validator and the YAML reader), which a worker process does not load:
 * the primary hands it the config already parsed and checked.
 */

/** `host:port`, `[v6]:port` or a bare port */
export const LISTEN = /^(?:(\[[0-9a-fA-F:.]+\]|[^:\s]+):)?([0-9]{1,5})$/;

/** proxy.timeouts in milliseconds, the unit timers and node:http take. */
export interface ClientTimeouts {
  header: number;
  keepalive: number;
  requestBody: number;
  send: number;
}

/** The one place proxy.timeouts is read: everything that waits on a client takes its value from here. */
export function clientTimeouts(proxy: GatewayConfig['proxy']): ClientTimeouts {
  const ms = (seconds: number) => Math.max(1, Math.round(seconds * 1000));
  const t = proxy.timeouts;
  return { header: ms(t.header), keepalive: ms(t.keepalive), requestBody: ms(t.request_body), send: ms(t.send) };
}

export interface ListenerSpec {
  host: string;
  port: number;
  /** the listener's own spelling, for messages */
  addr: string;
  http2: boolean;
}

/** A `proxy.listen` / `proxy.tls_listen` entry; `http2` defaults to on for TLS (ALPN offers h2 and http/1.1) and off for plain. */
export function listenerSpec(entry: GatewayConfig['proxy']['listen'][number], tls: boolean): ListenerSpec {
  const addr = typeof entry === 'string' ? entry : entry.addr;
  const http2 = typeof entry === 'string' ? tls : (entry.http2 ?? tls);
  return { ...parseListen(addr), addr, http2 };
}

/** "0.0.0.0:9080" | "[::1]:9080" | "9080" -> host and port for net.listen */
export function parseListen(address: string): { host: string; port: number } {
  const m = LISTEN.exec(address);
  if (!m) throw new PorticoError(ErrorCode.CONFIG_INVALID, `invalid listen address '${address}'`);
  const host = m[1] ? m[1].replace(/^\[|\]$/g, '') : '0.0.0.0';
  return { host, port: Number(m[2]) };
}
