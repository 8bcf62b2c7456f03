/**
 * Generates config objects from the TypeBox schemas (which are JSON Schema): valid ones and
 * near-valid ones (one step outside a bound, a string from another field's vocabulary, a missing
 * or unknown field). Seeded, so a failure is reproduced by its seed.
 *
 * Strings are drawn from pools of the gateway's own vocabulary (hosts, ports at their bounds,
 * uris in every router syntax, CIDRs, vars expressions, control characters) rather than from
 * random text: random text almost never matches a pattern such as a node address, and the bugs
 * live where a value matches the schema's pattern but not the runtime's rule (a port of 80800).
 */

export type Rng = () => number;

/** mulberry32: small, fast, good enough to spread test cases. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(rng: Rng, list: readonly T[]): T => list[Math.floor(rng() * list.length)]!;

const HOSTS = [
  '127.0.0.1', 'localhost', 'example.com', 'a.b.c', 'x', '10.0.0.1', '0.0.0.0', '255.255.255.255', '256.1.1.1',
  '[::1]', '::1', '[fe80::1]', '[::ffff:10.0.0.1]', '[]', '[:]', '[::1', 'a_b', '-a', 'a..b', '*.example.com', 'é.com',
  'A.Example.COM', '0', 'a:b', 'x'.repeat(253), 'x'.repeat(254),
];
const PORTS = ['', ':0', ':1', ':80', ':443', ':8080', ':65535', ':65536', ':80800', ':99999', ':00080', ':00000', ':', ':x', ':-1'];
const URIS = [
  '/', '/a', '/a/b', '/a/*', '/*', '/a*', '/:id', '/user/:id/x', '/:', '/a/:/b', '/*name', '/a/*x/b', '/a/**', '/%2e%2e',
  '/a?b', '/a#b', '/ü', '/a b', '/a\u0000', 'a', '', `/${'x'.repeat(4095)}`, '/(a+)+', '/[', '/\\',
];
const ADDRS = ['127.0.0.1', '10.0.0.0/8', '::1', 'fe80::/10', '0.0.0.0/0', '1.2.3.4/32', '1.2.3.4/33', '::/128', '::/129', '1.2.3', 'abc', '10.0.0.0/-1', '1.2.3.4/08', '', '::ffff:1.2.3.4'];
const HEADER_BREAKERS = ['a\r\nX-Injected: 1', 'a\nb', 'a\rb', 'a\u0000', ' a', 'a ', 'a\tb', '\ta', 'a\u007f', 'a\u0100', 'a😀', 'a b', 'é'];
const IDS = ['1', '42', 'a', 'a-b_c.d', 'x'.repeat(64), 'x'.repeat(65), 'a/b', 'a b', '', '__proto__', 'constructor'];
const PLAIN = ['', 'a', 'roundrobin', 'chash', 'x'.repeat(300), 'é', '\u0000', 'a\r\nb', '😀', 'null', '0'];
const VARS_EXPRESSIONS: unknown[] = [
  ['arg_a', '==', '1'], ['arg_a', '!', '==', '1'], ['http_x_user', '~~', '^[a-z]+$'], ['http_x', '~*', 'A'], ['http_x', '~~', '['],
  ['http_x', '~~', '^([a-z0-9]+)+$'], ['cookie_c', '==', 'v'], ['remote_addr', 'ipmatch', ['10.0.0.0/8']], ['remote_addr', 'ipmatch', '1.2.3.4/99'],
  ['remote_addr', 'ipmatch', []], ['arg_a', 'in', ['1', '2']], ['arg_a', 'in', 'x'], ['arg_a', '>', 2], ['arg_a', '<', '10'], ['arg_a', 'has', 'x'],
  ['arg_a', '==', null], ['', '==', '1'], ['arg_a', 5, '1'], ['arg_a', 'nope', '1'], ['x', '=='], [], 'arg_a', ['uri', '==', '/a'],
  ['http_constructor', '==', 'x'], ['arg___proto__', '==', 'x'],
];
const NUMBERS = [-1, 0, 1e-9, 0.001, 0.5, 1, 6, 60, 3600, 2147483, 2147483.647, 2147484, 1e9, 1e300, -0];
const INTEGERS = [-(2 ** 53), -1, 0, 1, 2, 5, 65535, 65536, 2 ** 31, 2 ** 53];

/** Random JSON of bounded depth, for fields the schema leaves open (plugin configs, metadata). */
function randomJson(rng: Rng, depth: number): unknown {
  const r = rng();
  if (depth <= 0 || r < 0.4) return pick(rng, [0, 1, -1, 1.5, true, false, null, '', 'x', 'a\r\nb', '__proto__']);
  if (r < 0.7) return Array.from({ length: Math.floor(rng() * 3) }, () => randomJson(rng, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(rng() * 3); i > 0; i--) o[pick(rng, ['a', 'b', 'constructor', 'toString', 'x-y'])] = randomJson(rng, depth - 1);
  return o;
}

interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean;
  patternProperties?: Record<string, JsonSchema>;
  minProperties?: number;
  items?: JsonSchema;
  minItems?: number;
  uniqueItems?: boolean;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  format?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
}

export interface GenerateOptions {
  /** probability that a field leaves its constraints (wrong vocabulary, bound +-1, missing, unknown) */
  nearValid: number;
}

/** Fields of which one object may hold only one (the validator's rule; JSON Schema cannot say it here). */
const EXCLUSIVE = [['uri', 'uris'], ['host', 'hosts'], ['remote_addr', 'remote_addrs'], ['upstream', 'upstream_id']] as const;

/** Candidate strings for a field, from its name and the key or value pattern it is under. */
function stringPool(field: string, schema: JsonSchema): readonly string[] {
  if (field === 'upstream_host') return [...HOSTS.flatMap((h) => PORTS.slice(0, 8).map((p) => h + p)), ...HEADER_BREAKERS];
  if (field === '(node)') return HOSTS.flatMap((h) => PORTS.map((p) => h + p));
  if (field === 'host' && schema.pattern?.includes('\\s')) return HOSTS; // a node's host
  if (field === 'host' || field === 'hosts') return HOSTS;
  if (field === 'uri' || field === 'uris') return URIS;
  if (field === 'remote_addr' || field === 'remote_addrs') return ADDRS;
  if (field === 'id' || field === 'upstream_id' || field === 'service_id') return IDS;
  return PLAIN;
}

function matches(schema: JsonSchema, s: string): boolean {
  if (schema.minLength !== undefined && s.length < schema.minLength) return false;
  if (schema.maxLength !== undefined && s.length > schema.maxLength) return false;
  return schema.pattern === undefined || new RegExp(schema.pattern).test(s);
}

function genString(rng: Rng, field: string, schema: JsonSchema, near: boolean): string {
  const pool = stringPool(field, schema);
  if (near) return pick(rng, [...pool, ...HEADER_BREAKERS, ...PLAIN]);
  const fitting = pool.filter((s) => matches(schema, s));
  return fitting.length > 0 ? pick(rng, fitting) : pick(rng, pool);
}

function genNumber(rng: Rng, schema: JsonSchema, integer: boolean, near: boolean): number {
  const pool = integer ? INTEGERS : [...NUMBERS, ...INTEGERS];
  const bounds = [schema.minimum, schema.maximum, schema.exclusiveMinimum].filter((b): b is number => b !== undefined);
  const edges = bounds.flatMap((b) => [b - 1, b, b + 1, ...(integer ? [] : [b + 1e-9])]);
  const all = [...pool, ...edges];
  if (near) return pick(rng, all);
  const fitting = all.filter(
    (n) =>
      (!integer || Number.isInteger(n)) &&
      (schema.minimum === undefined || n >= schema.minimum) &&
      (schema.maximum === undefined || n <= schema.maximum) &&
      (schema.exclusiveMinimum === undefined || n > schema.exclusiveMinimum),
  );
  return pick(rng, fitting.length > 0 ? fitting : all);
}

/** One value for `schema`; `field` is the property name it sits under (drives the string pools). */
export function generate(schema: JsonSchema, rng: Rng, opts: GenerateOptions, field = '', depth = 0): unknown {
  const near = rng() < opts.nearValid;
  if (schema.anyOf) return generate(pick(rng, schema.anyOf), rng, opts, field, depth);
  if (schema.const !== undefined) return near ? pick(rng, [2, '1', null]) : schema.const;
  if (schema.enum) return near ? pick(rng, ['', 'get', 'FETCH', 'grpc', 'chash']) : pick(rng, schema.enum);
  if (field === '(vars item)') return pick(rng, VARS_EXPRESSIONS);
  switch (schema.type) {
    case 'string':
      return genString(rng, field, schema, near);
    case 'integer':
      return genNumber(rng, schema, true, near);
    case 'number':
      return genNumber(rng, schema, false, near);
    case 'boolean':
      return near ? pick(rng, [0, 'true']) : rng() < 0.5;
    case 'array': {
      const min = near ? 0 : (schema.minItems ?? 0);
      const n = min + Math.floor(rng() * 3);
      const itemField = field === 'vars' ? '(vars item)' : field;
      if (field === 'vars' && rng() < 0.2) return pick(rng, [['AND', ...VARS_EXPRESSIONS.slice(0, 3)], ['OR'], ['!AND', ['arg_a', '==', '1']]]);
      const items = Array.from({ length: n }, () => generate(schema.items ?? {}, rng, opts, itemField, depth + 1));
      if (!schema.uniqueItems || near) return items;
      const seen = new Set<string>();
      return items.filter((v) => !seen.has(JSON.stringify(v)) && seen.add(JSON.stringify(v)));
    }
    case 'object':
      return genObject(schema, rng, opts, field, depth, near);
    default:
      return randomJson(rng, 3);
  }
}

function genObject(schema: JsonSchema, rng: Rng, opts: GenerateOptions, field: string, depth: number, near: boolean): unknown {
  const o: Record<string, unknown> = {};
  const required = new Set(schema.required ?? []);
  for (const [name, sub] of Object.entries(schema.properties ?? {})) {
    const include = required.has(name) ? !(near && rng() < 0.3) : rng() < (depth === 0 ? 0.45 : 0.3);
    if (include) o[name] = generate(sub, rng, opts, name, depth + 1);
  }
  if (schema.patternProperties) {
    const [[pattern, sub]] = Object.entries(schema.patternProperties) as [[string, JsonSchema]];
    const keyField = field === 'nodes' ? '(node)' : field;
    const keySchema: JsonSchema = { type: 'string', pattern };
    const n = (near ? 0 : (schema.minProperties ?? 0)) + Math.floor(rng() * 3);
    for (let i = 0; i < n; i++) o[genString(rng, keyField, keySchema, near && rng() < 0.5)] = generate(sub, rng, opts, `${field}[]`, depth + 1);
  }
  if (schema.additionalProperties === true && !schema.patternProperties && Object.keys(schema.properties ?? {}).length === 0) {
    Object.assign(o, randomJson(rng, 2));
  }
  if (!near) for (const [a, b] of EXCLUSIVE) if (a in o && b in o) delete o[rng() < 0.5 ? a : b];
  if (near && schema.additionalProperties === false && rng() < 0.2) o.unknown_field = 1;
  return o;
}
