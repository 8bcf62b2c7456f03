/**
 * Request path normalization: what nginx does to build `$uri`, the variable APISIX routes on.
 *
 * The request path is percent-decoded first and normalized second, so `%2e%2e` is a `..` segment
 * and `%2F` is a separator, as in nginx (APISIX's default, without `match_uri_encoded_slash`).
 * Matching on anything less decoded would let `/%61dmin` or `/public/%2e%2e/admin` slip past a
 * route meant for `/admin`.
 *
 * Deviation: nginx answers 400 when `..` would climb above the root; here such segments stop at
 * the root (RFC 3986 remove_dot_segments), which cannot reach anything the router did not see.
 */

export interface NormalizedPath {
  /** decoded and normalized: what the router matches on (nginx `$uri`) */
  match: string;
  /** what to send upstream: the raw path when it needed no normalization, else `match` re-encoded */
  forward: string;
}

const SLASH = 0x2f;
const DOT = 0x2e;
const PERCENT = 0x25;

const utf8 = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

/**
 * `rawPath` is the request-target path without the query string, as node:http gives it. Returns
 * undefined for input the proxy should answer with 400: not starting with `/`, a malformed
 * percent escape, or a NUL byte (raw or `%00`).
 */
export function normalizePath(rawPath: string): NormalizedPath | undefined {
  if (rawPath.charCodeAt(0) !== SLASH) return undefined;
  if (isAlreadyNormal(rawPath)) return { match: rawPath, forward: rawPath };

  const bytes = decodeToBytes(rawPath);
  if (bytes === undefined) return undefined;

  const { normalized, changed } = removeDotSegments(bytes);
  const match = utf8.decode(normalized);
  // Only a structural change (merged slashes, dot segments) makes us rewrite what goes upstream;
  // a path that merely contains escapes is forwarded exactly as the client encoded it.
  return { match, forward: changed ? encodePath(normalized) : rawPath };
}

/**
 * The common case, checked without allocating: plain ASCII, no escapes, no `//`, no `.`/`..`
 * segments, no NUL.
 */
function isAlreadyNormal(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === PERCENT || c === 0 || c >= 0x80) return false;
    if (c === SLASH && i + 1 < path.length) {
      const next = path.charCodeAt(i + 1);
      if (next === SLASH) return false;
      if (next === DOT && isDotSegmentAt(path, i + 1)) return false;
    }
  }
  return true;
}

/** Is there a `.` or `..` segment starting at `start` (just after a slash)? */
function isDotSegmentAt(path: string, start: number): boolean {
  let end = start;
  while (end < path.length && path.charCodeAt(end) === DOT) end++;
  const dots = end - start;
  return (dots === 1 || dots === 2) && (end === path.length || path.charCodeAt(end) === SLASH);
}

/**
 * Percent-decodes into bytes. Characters up to U+00FF stand for one byte each (node:http decodes
 * request-target bytes as latin1, when its lenient parser lets them through at all); anything
 * above is taken as UTF-8.
 */
function decodeToBytes(path: string): Uint8Array | undefined {
  const out: number[] = [];
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === PERCENT) {
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hexValue(path.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      const byte = (hi << 4) | lo;
      if (byte === 0) return undefined;
      out.push(byte);
      i += 2;
    } else if (c === 0) {
      return undefined;
    } else if (c <= 0xff) {
      out.push(c);
    } else {
      const codePoint = path.codePointAt(i)!;
      if (codePoint >= 0xd800 && codePoint <= 0xdfff) return undefined; // lone surrogate
      for (const b of utf8Encoder.encode(String.fromCodePoint(codePoint))) out.push(b);
      if (codePoint > 0xffff) i++;
    }
  }
  return Uint8Array.from(out);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Merges duplicate slashes and resolves `.` and `..` over decoded bytes (which start with `/`). A
 * trailing `.`/`..`/slash leaves a trailing slash: `/a/b/..` is `/a/`.
 */
function removeDotSegments(bytes: Uint8Array): { normalized: Uint8Array; changed: boolean } {
  const segments: Uint8Array[] = [];
  let changed = false;
  let trailingSlash = false;
  let start = 1;
  while (start <= bytes.length) {
    let end = bytes.indexOf(SLASH, start);
    const last = end === -1;
    if (last) end = bytes.length;
    const segment = bytes.subarray(start, end);
    start = end + 1;

    if (segment.length === 0) {
      if (last) trailingSlash = true;
      else changed = true;
    } else if (segment.length === 1 && segment[0] === DOT) {
      changed = true;
      if (last) trailingSlash = true;
    } else if (segment.length === 2 && segment[0] === DOT && segment[1] === DOT) {
      changed = true;
      segments.pop();
      if (last) trailingSlash = true;
    } else {
      segments.push(segment);
    }
  }

  let capacity = 1;
  for (const s of segments) capacity += s.length + 1;
  const normalized = new Uint8Array(capacity);
  normalized[0] = SLASH;
  let at = 1;
  segments.forEach((s, i) => {
    normalized.set(s, at);
    at += s.length;
    if (i < segments.length - 1 || trailingSlash) normalized[at++] = SLASH;
  });
  return { normalized: normalized.subarray(0, at), changed };
}

/** RFC 3986 `pchar` plus `/`: the bytes a path may carry unescaped. */
const PATH_SAFE = new Uint8Array(128);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/") {
  PATH_SAFE[c.charCodeAt(0)] = 1;
}

function encodePath(bytes: Uint8Array): string {
  let out = '';
  for (const b of bytes) {
    out += b < 0x80 && PATH_SAFE[b] === 1 ? String.fromCharCode(b) : `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}`;
  }
  return out;
}
