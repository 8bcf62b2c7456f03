/**
 * IP addresses and CIDR ranges for `remote_addrs` and the `ipmatch` vars operator, with the
 * semantics of lua-resty-ipmatcher: IPv4 and IPv6 are separate families, a CIDR's host bits are
 * ignored, `/0` matches every address of its family.
 *
 * One addition: IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are treated as the IPv4 address
 * they carry, on both sides. node:http on a dual-stack socket reports IPv4 clients that way, while
 * nginx (which APISIX configs were written against) reports them as plain IPv4.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** An IPv4 address as an unsigned 32-bit number, or an IPv6 address as four 32-bit words. */
export type ParsedIp = { v4: number } | { v6: Uint32Array };

interface Ipv4Range {
  network: number;
  mask: number;
}

interface Ipv6Range {
  /** network words with host bits cleared */
  network: Uint32Array;
  /** per-word masks */
  masks: Uint32Array;
}

export class IpMatcher {
  private readonly v4: Ipv4Range[];
  private readonly v6: Ipv6Range[];

  private constructor(v4: Ipv4Range[], v6: Ipv6Range[]) {
    this.v4 = v4;
    this.v6 = v6;
  }

  /** Compiles addresses/CIDRs; throws with a user-readable reason on the first invalid entry. */
  static compile(entries: readonly string[]): IpMatcher {
    const v4: Ipv4Range[] = [];
    const v6: Ipv6Range[] = [];
    for (const entry of entries) {
      const reason = addRange(entry, v4, v6);
      if (reason !== undefined) throw new Error(reason);
    }
    return new IpMatcher(v4, v6);
  }

  /** Returns a reason when `entry` is not an IP address or CIDR, else undefined. */
  static check(entry: string): string | undefined {
    return addRange(entry, [], []);
  }

  /** `address` as a socket reports it; an unparseable address never matches. */
  matches(address: string): boolean {
    const ip = parseIp(address);
    return ip !== undefined && this.matchesParsed(ip);
  }

  matchesParsed(ip: ParsedIp): boolean {
    if ('v4' in ip) {
      for (const range of this.v4) {
        if (((ip.v4 & range.mask) >>> 0) === range.network) return true;
      }
      return false;
    }
    const words = ip.v6;
    outer: for (const range of this.v6) {
      for (let i = 0; i < 4; i++) {
        if (((words[i]! & range.masks[i]!) >>> 0) !== range.network[i]) continue outer;
      }
      return true;
    }
    return false;
  }
}

/** Parses an IPv4 or IPv6 address (zone id and brackets allowed); IPv4-mapped IPv6 becomes IPv4. */
export function parseIp(address: string): ParsedIp | undefined {
  if (isIPv4(address)) return { v4: parseIpv4(address) };
  let text = address;
  if (text.charCodeAt(0) === 0x5b /* [ */ && text.charCodeAt(text.length - 1) === 0x5d) {
    text = text.slice(1, -1);
  }
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  if (!isIPv6(text)) return undefined;
  const words = parseIpv6(text);
  if (isIpv4Mapped(words)) return { v4: words[3]! };
  return { v6: words };
}

/**
 * Renders an IPv4-mapped IPv6 address as the IPv4 address it carries (the `remote_addr` an nginx
 * based gateway would have seen); any other address is returned unchanged.
 */
export function unmapIpv4(address: string): string {
  if (address.length > 7 && address.charCodeAt(0) === 0x3a && address.startsWith('::ffff:')) {
    const tail = address.slice(7);
    if (isIPv4(tail)) return tail;
  }
  return address;
}

function addRange(entry: string, v4: Ipv4Range[], v6: Ipv6Range[]): string | undefined {
  if (typeof entry !== 'string' || entry === '') return `invalid IP address: ${JSON.stringify(entry)}`;
  const slash = entry.indexOf('/');
  const addressText = slash === -1 ? entry : entry.slice(0, slash);
  const prefixText = slash === -1 ? undefined : entry.slice(slash + 1);
  const ip = parseIp(addressText);
  if (ip === undefined) return `invalid IP address: ${entry}`;

  const mappedFamilyBits = 'v4' in ip && !isIPv4(addressText) ? 96 : 0;
  const maxPrefix = 'v4' in ip ? 32 + mappedFamilyBits : 128;
  let prefix = maxPrefix;
  if (prefixText !== undefined) {
    // lua-resty-ipmatcher silently reads a malformed mask as /32; rejecting it is kinder.
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      return `invalid CIDR prefix length in ${entry}: must be 0..${maxPrefix}`;
    }
    prefix = Number(prefixText);
  }

  if ('v4' in ip) {
    // ::ffff:a.b.c.d/120 is the IPv4 range a.b.c.d/24; a mapped prefix shorter than 96 also
    // covers non-mapped IPv6 space, which we cannot express, so it is rejected.
    if (prefix < mappedFamilyBits) {
      return `invalid CIDR ${entry}: an IPv4-mapped range needs a prefix length of at least 96`;
    }
    const bits = prefix - mappedFamilyBits;
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    v4.push({ network: (ip.v4 & mask) >>> 0, mask });
    return undefined;
  }

  const masks = new Uint32Array(4);
  const network = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    const bits = Math.max(0, Math.min(32, prefix - i * 32));
    masks[i] = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    network[i] = (ip.v6[i]! & masks[i]!) >>> 0;
  }
  v6.push({ network, masks });
  return undefined;
}

function parseIpv4(text: string): number {
  let value = 0;
  for (const part of text.split('.')) value = value * 256 + Number(part);
  return value >>> 0;
}

/** `text` is known to be a valid IPv6 literal without zone or brackets. */
function parseIpv6(text: string): Uint32Array {
  const groups: number[] = [];
  const parseGroups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const group of part.split(':')) {
      if (group.includes('.')) {
        const v4 = parseIpv4(group);
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        out.push(parseInt(group, 16));
      }
    }
    return out;
  };
  const gap = text.indexOf('::');
  if (gap === -1) {
    groups.push(...parseGroups(text));
  } else {
    const head = parseGroups(text.slice(0, gap));
    const tail = parseGroups(text.slice(gap + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  }
  const words = new Uint32Array(4);
  for (let i = 0; i < 4; i++) words[i] = ((groups[2 * i]! << 16) | groups[2 * i + 1]!) >>> 0;
  return words;
}

function isIpv4Mapped(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}
