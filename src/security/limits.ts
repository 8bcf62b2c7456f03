/**
 * Size and nesting bounds for every config object, whatever its source. Recursive code (JSON and
 * YAML serializers, structuredClone, the vars compiler, ajv) overflows the stack on a value nested a
 * few thousand levels deep, and a 10 KB value of `[[[[...` is enough for that. So the bounds are
 * checked here, without recursion, before anything recursive touches the value.
 *
 * The limits, like a production gateway's:
 *  - depth: 64 nested objects/arrays. The deepest APISIX object (an upstream's
 *    `checks.active.healthy.http_statuses`, inside a route) is 6 levels; plugin configs stay under 10.
 *  - size: 1 MiB per object. etcd refuses requests over 1.5 MiB by default (--max-request-bytes),
 *    so no object written through etcd's defaults comes near it.
 */

export interface ObjectLimits {
  /** maximum nesting of objects and arrays; the object itself is level 1 */
  maxDepth: number;
  /** maximum size in bytes: the stored text (etcd) or the compact JSON encoding (any value) */
  maxBytes: number;
}

export const OBJECT_LIMITS: Readonly<ObjectLimits> = Object.freeze({ maxDepth: 64, maxBytes: 1024 * 1024 });

const mib = (bytes: number) => (bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`);

/**
 * Why a stored text (an etcd value) is too large to parse, or undefined. Checked before JSON.parse,
 * so an oversized value costs neither the parse nor the memory of its decoded form.
 */
export function checkTextLimits(text: string, limits: ObjectLimits = OBJECT_LIMITS): string | undefined {
  // UTF-16 length <= UTF-8 byte length <= 3 x UTF-16 length: count bytes only when it can matter
  if (text.length * 3 <= limits.maxBytes) return undefined;
  const bytes = Buffer.byteLength(text, 'utf8');
  return bytes > limits.maxBytes ? `/: ${bytes} bytes is over the ${mib(limits.maxBytes)} size limit` : undefined;
}

/**
 * Why a decoded value is too deep or too large, or undefined. An iterative walk with its own
 * stack of frames; it stops as soon as a bound is crossed, so a hostile value costs at most
 * `maxBytes` of work. The size is that of the value's compact JSON encoding: keys and strings in
 * UTF-8 bytes (escapes not counted), integers by their digits, other numbers as 24. Shared
 * references (YAML aliases) count each time they are reached, as they would when serialized, which
 * also bounds a cyclic value.
 */
export function checkValueLimits(value: unknown, limits: ObjectLimits = OBJECT_LIMITS): string | undefined {
  if (value === null || typeof value !== 'object') return scalarBytes(value) > limits.maxBytes ? overSize(limits) : undefined;
  // one frame per open container: its entries, and the index of the next one to visit
  const stack: Frame[] = [frameOf(value)];
  let bytes = 2;
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.next === frame.size) {
      stack.pop();
      continue;
    }
    const i = frame.next++;
    let child: unknown;
    if (frame.keys === undefined) {
      child = (frame.container as unknown[])[i];
      bytes += 1;
    } else {
      const key = frame.keys[i]!;
      child = (frame.container as Record<string, unknown>)[key];
      bytes += utf8Bytes(key) + 4;
    }
    if (child !== null && typeof child === 'object') {
      if (stack.length >= limits.maxDepth) {
        return `${pathOf(stack)}: nested deeper than ${limits.maxDepth} levels (the depth limit)`;
      }
      stack.push(frameOf(child));
      bytes += 2;
    } else {
      bytes += scalarBytes(child);
    }
    if (bytes > limits.maxBytes) return overSize(limits);
  }
  return bytes > limits.maxBytes ? overSize(limits) : undefined;
}

interface Frame {
  container: object;
  /** own enumerable keys of an object; undefined for an array */
  keys: string[] | undefined;
  size: number;
  next: number;
}

function frameOf(container: object): Frame {
  if (Array.isArray(container)) return { container, keys: undefined, size: container.length, next: 0 };
  const keys = Object.keys(container);
  return { container, keys, size: keys.length, next: 0 };
}

/** JSON Pointer of the entry being visited in the innermost frame; the middle of a deep one elided. */
function pathOf(stack: Frame[]): string {
  const segment = (f: Frame) => {
    const i = f.next - 1;
    return `/${f.keys === undefined ? i : escapePointer(f.keys[i]!)}`;
  };
  if (stack.length <= 8) return stack.map(segment).join('');
  return `${stack.slice(0, 5).map(segment).join('')}/…${segment(stack[stack.length - 1]!)}`;
}

function overSize(limits: ObjectLimits): string {
  return `/: over the ${mib(limits.maxBytes)} size limit`;
}

function scalarBytes(v: unknown): number {
  switch (typeof v) {
    case 'string':
      return utf8Bytes(v) + 2;
    case 'number':
      return Number.isInteger(v) && Math.abs(v) < 1e15 ? digits(v) : 24;
    case 'boolean':
      return 5;
    case 'object':
    case 'undefined':
      return 4; // null; containers are counted by the walk
    default:
      return 24; // bigint, function, symbol: not JSON, but they still take room
  }
}

function digits(n: number): number {
  let d = n < 0 ? 2 : 1;
  for (let a = Math.abs(n); a >= 10; a = Math.floor(a / 10)) d++;
  return d;
}

function utf8Bytes(s: string): number {
  if (s.length > 256) return Buffer.byteLength(s, 'utf8');
  let bytes = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // 2 bytes up to U+07FF, 3 above; a surrogate pair is 4 bytes for 2 units
    if (c >= 0x80) bytes += c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 1 : 2;
  }
  return bytes;
}

/** RFC 6901 escaping of one JSON Pointer segment. */
export function escapePointer(segment: string): string {
  return segment.includes('~') || segment.includes('/') ? segment.replaceAll('~', '~0').replaceAll('/', '~1') : segment;
}
