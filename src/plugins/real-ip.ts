import { isIPv4, isIPv6 } from 'node:net';
import { Type } from '@sinclair/typebox';
import { IpMatcher } from '../router/ip.ts';
import { varReader, type VarReader } from './nginx-var.ts';
import { definePlugin, type PluginContext } from './types.ts';

/**
 * real-ip (APISIX apisix/plugins/real-ip.lua, nginx's ngx_http_realip_module): the client is
 * the address a proxy in front of the gateway reports, read from `source` (an nginx variable:
 * `http_x_forwarded_for`, `http_x_real_ip`, `arg_realip`, `cookie_<name>`, ...). Applied with
 * ctx.setClientAddress in rewrite (priority 23000, before everything else), so ip-restriction,
 * limit keys, `$remote_addr` and the upstream's X-Real-IP / X-Forwarded-For see it.
 *  - `trusted_addresses`: only a peer (the connection's address) inside these may say who the
 *    client is; without the list every peer is trusted, as in APISIX.
 *  - `http_x_forwarded_for` reads the LAST X-Forwarded-For header and takes its last element (the
 *    address the nearest proxy saw). With `recursive` (and `trusted_addresses`) the list is walked
 *    from the right, skipping trusted proxies, and the first untrusted address wins (the leftmost
 *    one when all are trusted).
 *  - The value may carry a port (`1.2.3.4:80`, `[::2]:80`); the port is checked (1-65535) and
 *    then dropped: Portico has no `$remote_port` to change. A missing or invalid value leaves
 *    the client address as it was (never an error: the header is the client's to forge).
 */

const schema = Type.Object({
  source: Type.String({ minLength: 1 }),
  trusted_addresses: Type.Optional(Type.Array(Type.String(), { minItems: 1 })),
  recursive: Type.Boolean({ default: false }),
});

interface RealIp {
  /** undefined: every peer is trusted */
  readonly trusted: IpMatcher | undefined;
  /** the address text from the request, before parsing */
  readonly read: (ctx: PluginContext) => string | undefined;
}

/** The value of the last X-Forwarded-For header (APISIX reads the last one of several). */
function lastForwardedFor(ctx: PluginContext): string | undefined {
  const raw = ctx.request.rawHeaders;
  for (let i = raw.length - 2; i >= 0; i -= 2) {
    if (raw[i]!.length === 15 && raw[i]!.toLowerCase() === 'x-forwarded-for') return raw[i + 1]!;
  }
  return undefined;
}

/** The element after the last comma, leading spaces skipped. */
function lastElement(list: string): string {
  const comma = list.lastIndexOf(',');
  if (comma === -1) return list;
  let start = comma + 1;
  while (list.charCodeAt(start) === 0x20) start++;
  return list.slice(start);
}

function forwardedForReader(trusted: IpMatcher | undefined, recursive: boolean): VarReader {
  if (!recursive || trusted === undefined) {
    return (ctx) => {
      const list = lastForwardedFor(ctx);
      return list === undefined ? undefined : lastElement(list);
    };
  }
  return (ctx) => {
    const list = lastForwardedFor(ctx);
    if (list === undefined) return undefined;
    const addrs = list.split(/,\s*/);
    // right to left: the nearest proxies first; the leftmost is the origin if all are trusted
    for (let i = addrs.length - 1; i >= 1; i--) {
      if (!trusted.matches(addrs[i]!)) return addrs[i];
    }
    return addrs[0];
  };
}

/**
 * An address as APISIX's core.utils.parse_addr + parse_ipv4/parse_ipv6 accept it: `ip`,
 * `ipv4:port`, `ipv6`, `[ipv6]`, `[ipv6]:port`. Returns the bare IP, or undefined when the address
 * or its port is not valid.
 */
export function parseRealAddress(text: string): string | undefined {
  let host = text;
  let port: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close === -1) return undefined;
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return undefined;
      port = rest.slice(1);
    }
    if (!isIPv6(host)) return undefined;
  } else if (isIPv6(text)) {
    host = text;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon !== -1) {
      host = text.slice(0, colon);
      port = text.slice(colon + 1);
    }
    if (!isIPv4(host)) return undefined;
  }
  // a zone id (fe80::1%eth0) names an interface of the sender, not a client
  if (host.includes('%')) return undefined;
  if (port !== undefined) {
    if (!/^[0-9]{1,5}$/.test(port)) return undefined;
    const n = Number(port);
    if (n < 1 || n > 65535) return undefined;
  }
  // IPv4-mapped IPv6 is the IPv4 client, as the transport reports peers
  if (host.toLowerCase().startsWith('::ffff:') && isIPv4(host.slice(7))) return host.slice(7);
  return host;
}

export const realIp = definePlugin({
  name: 'real-ip',
  priority: 23000,
  schema,
  compile(conf): RealIp {
    let trusted: IpMatcher | undefined;
    if (conf.trusted_addresses !== undefined) {
      for (const entry of conf.trusted_addresses) {
        const reason = IpMatcher.check(entry);
        // APISIX's reason, with ours (which part is wrong) after it
        if (reason !== undefined) throw new Error(`trusted_addresses: invalid ip address: ${entry} (${reason})`);
      }
      trusted = IpMatcher.compile(conf.trusted_addresses);
    }
    const read = conf.source === 'http_x_forwarded_for' ? forwardedForReader(trusted, conf.recursive) : varReader(conf.source);
    return { trusted, read };
  },
  rewrite(conf, ctx) {
    if (conf.trusted !== undefined && !conf.trusted.matches(ctx.request.clientAddress)) return undefined;
    const text = conf.read(ctx);
    if (text === undefined || text === '') return undefined;
    const ip = parseRealAddress(text);
    if (ip !== undefined) ctx.setClientAddress(ip);
    return undefined;
  },
});
