/**
 * Who may use the Admin API: the client address must be in `allow` (APISIX's `allow_admin`), and
 * the request must carry a configured key (`X-API-KEY` header or `?api_key=`, APISIX's
 * `admin_key`). A `viewer` key may only read; an `admin` key may also write.
 *
 * Keys are compared as SHA-256 digests with crypto.timingSafeEqual: digests have one length, so
 * neither the comparison time nor an early length check tells a client how much of a key it
 * guessed; and every configured key is compared on every request, so the time does not tell which
 * key came close either.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { IpMatcher, parseIp } from '../router/ip.ts';

export type AdminRole = 'admin' | 'viewer';

export interface AdminKey {
  key: string;
  role: AdminRole;
  /** shown in audit records; default `key-<index>` */
  name?: string;
}

/** The key APISIX's docs and default config.yaml show: a gateway reachable from outside must not use it. */
export const EXAMPLE_ADMIN_KEY = 'edd1c9f034335f136f87ad84b625c8f1';

/** Shortest key accepted on a non-loopback listen address. */
export const MIN_ADMIN_KEY_LENGTH = 16;

/** The caller a request was authenticated as. */
export interface AdminActor {
  name: string;
  role: AdminRole;
}

export type AuthVerdict =
  | { ok: true; actor: AdminActor }
  | { ok: false; status: 401 | 403; body: { error_msg: string; description?: string } };

/** APISIX's viewer may use GET only (init.lua `viewer_methods`); HEAD reads too. */
const VIEWER_METHODS = new Set(['GET', 'HEAD']);

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export class AdminAuth {
  private readonly keys: Array<{ digest: Buffer; actor: AdminActor }>;
  private readonly allow: IpMatcher | undefined;

  /** `allow`: CIDRs / addresses; empty: every address (APISIX without `allow_admin`). Throws on a bad entry. */
  constructor(keys: readonly AdminKey[], allow: readonly string[]) {
    this.keys = keys.map((k, i) => ({ digest: digest(k.key), actor: { name: k.name ?? `key-${i}`, role: k.role } }));
    this.allow = allow.length > 0 ? IpMatcher.compile(allow) : undefined;
  }

  /** The client address check, then the key, then the role against the method. */
  check(req: IncomingMessage, url: URL): AuthVerdict {
    const address = req.socket.remoteAddress ?? '';
    if (this.allow && !this.allow.matches(address)) {
      return { ok: false, status: 403, body: { error_msg: `client address ${address} is not allowed to use the Admin API` } };
    }
    const header = req.headers['x-api-key'];
    const presented = (Array.isArray(header) ? header[0] : header) ?? url.searchParams.get('api_key') ?? undefined;
    if (presented === undefined || presented === '') {
      return { ok: false, status: 401, body: { error_msg: 'failed to check token', description: 'missing apikey' } };
    }
    const actor = this.match(presented);
    if (actor === undefined) {
      return { ok: false, status: 401, body: { error_msg: 'failed to check token', description: 'wrong apikey' } };
    }
    if (actor.role === 'viewer' && !VIEWER_METHODS.has(req.method ?? '')) {
      return { ok: false, status: 403, body: { error_msg: 'invalid method for role viewer' } };
    }
    return { ok: true, actor };
  }

  private match(presented: string): AdminActor | undefined {
    const d = digest(presented);
    let found: AdminActor | undefined;
    // no early exit: every request costs the same number of comparisons
    for (const k of this.keys) {
      if (timingSafeEqual(d, k.digest) && found === undefined) found = k.actor;
    }
    return found;
  }
}

/** Whether a listen address only accepts local clients. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 0) return false;
  const ip = parseIp(host);
  if (ip === undefined) return false;
  if ('v4' in ip) return ip.v4 >>> 24 === 127;
  return ip.v6[0] === 0 && ip.v6[1] === 0 && ip.v6[2] === 0 && ip.v6[3] === 1;
}

export interface AdminListenConfig {
  host: string;
  keys: readonly AdminKey[];
}

/**
 * Why an Admin API config must not start, or undefined. On a non-loopback address every key must be
 * at least MIN_ADMIN_KEY_LENGTH characters and not the docs' example key (a published key is no
 * secret); on loopback anything goes, as on a developer's machine.
 */
export function adminConfigProblem(admin: AdminListenConfig): string | undefined {
  if (admin.keys.length === 0) return 'admin: at least one key is required';
  for (const [i, k] of admin.keys.entries()) {
    if (typeof k.key !== 'string' || k.key === '') return `admin: keys[${i}].key: must be a non-empty string`;
    if (k.role !== 'admin' && k.role !== 'viewer') return `admin: keys[${i}].role: must be "admin" or "viewer"`;
  }
  if (isLoopbackHost(admin.host)) return undefined;
  for (const [i, k] of admin.keys.entries()) {
    if (k.key === EXAMPLE_ADMIN_KEY) {
      return `admin: keys[${i}].key is the example key from the APISIX docs; set your own key to listen on ${admin.host}`;
    }
    if (k.key.length < MIN_ADMIN_KEY_LENGTH) {
      return `admin: keys[${i}].key is shorter than ${MIN_ADMIN_KEY_LENGTH} characters; a key that short must not be reachable on ${admin.host}`;
    }
  }
  return undefined;
}
