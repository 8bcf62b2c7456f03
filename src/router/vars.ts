/**
 * Route `vars`: lua-resty-expr (v1) expressions, compiled once at upsert and evaluated per request.
 *
 *   [["arg_name", "==", "json"], ["http_x_a", "~~", "^v[0-9]+$"]]     all must hold (AND)
 *   [["arg_x", "!", "==", "v"]]                                        negated comparison
 *   ["OR", ["arg_a", "==", "1"], ["arg_b", "==", "2"]]                 logic form: OR, AND, !OR, !AND
 *
 * Comparison semantics follow lua-resty-expr exactly where a config could notice the difference:
 * `==`/`~=` compare as numbers only when the configured value is a JSON number; `>`, `>=`, `<`,
 * `<=` convert both sides with Lua's `tonumber` and are false when either is not a number; an
 * absent variable is `nil` (equal only to a JSON `null`).
 */
import { compileConfigRegex, type ConfigRegex } from '../security/regex.ts';
import { IpMatcher, parseIp } from './ip.ts';

/** Where a variable's value comes from, resolved from its name at compile time. */
export type VarSource =
  | { kind: 'uri' }
  | { kind: 'host' }
  | { kind: 'request_method' }
  | { kind: 'remote_addr' }
  | { kind: 'scheme' }
  | { kind: 'query_string' }
  | { kind: 'arg'; name: string }
  | { kind: 'http'; header: string }
  | { kind: 'cookie'; name: string }
  /** `post_arg.<path>`: a field of the request body (JSON, urlencoded or multipart form) */
  | { kind: 'post_arg'; path: PostArgPath }
  /** `post_arg_<name>`: a field of an urlencoded form body only (APISIX's older form) */
  | { kind: 'post_arg_form'; name: string };

/** What an expression needs of the request; the router provides a lazily-parsing implementation. */
export interface VarLookup {
  get(source: VarSource): string | undefined;
}

/**
 * What evaluateVars reads: a VarLookup, or one whose `post_arg.*` values keep their JSON type
 * (number, boolean, object, array, null), as APISIX's decoded body table does (the router's).
 */
export interface ValueLookup {
  get(source: VarSource): unknown;
}

/** Options of compileVars for where an expression is evaluated. */
export interface VarsOptions {
  /**
   * `post_arg.*` / `post_arg_*` are known variables (route `vars`, where the router reads the body
   * when a route needs it). Elsewhere (plugin expressions) they are rejected as unsupported rather
   * than silently never matching.
   */
  postArgs?: boolean;
}

type Operator = '==' | '~=' | '>' | '>=' | '<' | '<=' | '~~' | '~*' | 'in' | 'has' | 'ipmatch';

const OPERATORS: ReadonlySet<string> = new Set<Operator>([
  '==', '~=', '>', '>=', '<', '<=', '~~', '~*', 'in', 'has', 'ipmatch',
]);

const LOGIC_OPERATORS: ReadonlySet<string> = new Set(['AND', 'OR', '!AND', '!OR']);

interface Comparison {
  readonly source: VarSource;
  readonly op: Operator;
  /** the configured right-hand side; JSON null is stored as undefined (Lua nil) */
  readonly value: unknown;
  readonly regex: ConfigRegex | undefined;
  readonly ipMatcher: IpMatcher | undefined;
  readonly negate: boolean;
}

interface Logic {
  readonly logic: 'AND' | 'OR' | '!AND' | '!OR';
  readonly terms: readonly Expr[];
}

type Expr = Comparison | Logic;

export interface CompiledVars {
  readonly root: Logic | undefined;
}

/** Compiles a `vars` array; throws an Error whose message is the user-facing reason. */
export function compileVars(vars: unknown, options: VarsOptions = {}): CompiledVars {
  if (!Array.isArray(vars)) throw new Error('vars must be an array');
  // An empty expression always matches (lua-resty-expr returns a rule-less object).
  if (vars.length === 0) return { root: undefined };
  if (!Array.isArray(vars[0]) && !isLogicOperator(vars[0])) {
    throw new Error('vars: rule should be wrapped inside brackets, e.g. [["arg_a", "==", "1"]]');
  }
  const root = compileRule(vars, 'vars', options);
  return { root: 'logic' in root ? root : { logic: 'AND', terms: [root] } };
}

/** Evaluates compiled vars against a request; `true` when the route's vars hold. */
export function evaluateVars(compiled: CompiledVars, lookup: ValueLookup): boolean {
  return compiled.root === undefined || evaluateLogic(compiled.root, lookup);
}

function isLogicOperator(value: unknown): value is string {
  return typeof value === 'string' && LOGIC_OPERATORS.has(value.toUpperCase());
}

function compileRule(rule: unknown[], where: string, options: VarsOptions): Expr {
  if (rule.length === 0) throw new Error(`${where}: rule too short`);
  if (Array.isArray(rule[0])) {
    return {
      logic: 'AND',
      terms: rule.map((term, i) => compileTerm(term, `${where}[${i}]`, options)),
    };
  }
  if (isLogicOperator(rule[0])) {
    if (rule.length <= 2) throw new Error(`${where}: rule too short, ${String(rule[0])} needs at least two terms`);
    return {
      logic: rule[0].toUpperCase() as Logic['logic'],
      terms: rule.slice(1).map((term, i) => compileTerm(term, `${where}[${i + 1}]`, options)),
    };
  }
  return compileComparison(rule, where, options);
}

function compileTerm(term: unknown, where: string, options: VarsOptions): Expr {
  if (!Array.isArray(term)) throw new Error(`${where}: must be an array`);
  return compileRule(term, where, options);
}

function compileComparison(expr: unknown[], where: string, options: VarsOptions): Comparison {
  let negate = false;
  let name: unknown;
  let op: unknown;
  let value: unknown;
  if (expr.length === 4) {
    if (expr[1] !== '!') throw new Error(`${where}: bad 'not' expression, expected [var, "!", op, value]`);
    negate = true;
    [name, , op, value] = expr;
  } else if (expr.length === 2 || expr.length === 3) {
    [name, op, value] = expr;
  } else {
    throw new Error(`${where}: invalid expression, expected [var, op, value]`);
  }

  if (typeof name !== 'string' || name === '') throw new Error(`${where}: variable name must be a non-empty string`);
  if (typeof op !== 'string') throw new Error(`${where}: operator must be a string`);
  let operator = op.toLowerCase();
  if (expr.length === 2) {
    // lua-resty-expr's compatibility form [var, value] means [var, "==", value]; it lower-cases
    // the operand first, so ["arg_a", "Foo"] compares with "foo". Kept for fidelity.
    if (OPERATORS.has(operator)) {
      value = undefined;
    } else {
      value = operator;
      operator = '==';
    }
  }
  if (!OPERATORS.has(operator)) {
    throw new Error(`${where}: invalid operator '${op}'; expected one of ${[...OPERATORS].join(', ')}`);
  }
  if (value === null) value = undefined;

  let regex: ConfigRegex | undefined;
  let ipMatcher: IpMatcher | undefined;
  switch (operator as Operator) {
    case '~~':
    case '~*':
      if (typeof value !== 'string') throw new Error(`${where}: ${operator} needs a regular expression string`);
      // PCRE syntax as in APISIX, on a linear-time engine: a client cannot make it backtrack.
      try {
        regex = compileConfigRegex(value, { caseless: operator === '~*' });
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`);
      }
      break;
    case 'in':
      if (!Array.isArray(value)) throw new Error(`${where}: 'in' needs an array of values`);
      break;
    case 'ipmatch': {
      const list = typeof value === 'string' ? [value] : value;
      if (!Array.isArray(list) || list.length === 0 || !list.every((v) => typeof v === 'string')) {
        throw new Error(`${where}: 'ipmatch' needs an IP/CIDR string or a non-empty array of them`);
      }
      try {
        ipMatcher = IpMatcher.compile(list as string[]);
      } catch (err) {
        throw new Error(`${where}: ${(err as Error).message}`);
      }
      break;
    }
    default:
      break;
  }

  return { source: resolveVarSource(name, where, options), op: operator as Operator, value, regex, ipMatcher, negate };
}

/**
 * Maps an APISIX/nginx variable name to where Portico finds it. Unknown names are rejected rather
 * than silently evaluating to nil: a route that can never match is a config error worth reporting.
 */
export function resolveVarSource(name: string, where = 'vars', options: VarsOptions = {}): VarSource {
  switch (name) {
    case 'uri':
      return { kind: 'uri' };
    case 'host':
      return { kind: 'host' };
    case 'request_method':
      return { kind: 'request_method' };
    case 'remote_addr':
      return { kind: 'remote_addr' };
    case 'scheme':
      return { kind: 'scheme' };
    case 'args':
    case 'query_string':
      return { kind: 'query_string' };
    default:
      break;
  }
  if (options.postArgs === true) {
    // `post_arg.` before `post_arg_`... and both before `arg_`-like prefixes: none overlaps, but
    // the order keeps `post_arg.x` from ever reading as something else
    if (name.startsWith('post_arg.') && name.length > 9) return { kind: 'post_arg', path: compilePostArgPath(name.slice(9), where) };
    if (name.startsWith('post_arg_') && name.length > 9) return { kind: 'post_arg_form', name: name.slice(9) };
  }
  if (name.startsWith('arg_') && name.length > 4) return { kind: 'arg', name: name.slice(4) };
  if (name.startsWith('cookie_') && name.length > 7) return { kind: 'cookie', name: name.slice(7) };
  if (name.startsWith('http_') && name.length > 5) {
    // APISIX lower-cases the name and nginx maps '_' to '-': http_X_Api_Key reads "x-api-key".
    return { kind: 'http', header: name.slice(5).toLowerCase().replaceAll('_', '-') };
  }
  throw new Error(
    `${where}: unsupported variable '${name}'; supported: uri, host, request_method, remote_addr, scheme, ` +
      'args, query_string, arg_<name>, http_<name>, cookie_<name>' +
      (options.postArgs === true ? ', post_arg.<path>, post_arg_<name>' : ''),
  );
}

function evaluateLogic(logic: Logic, lookup: ValueLookup): boolean {
  const isOr = logic.logic === 'OR' || logic.logic === '!OR';
  let result = !isOr;
  for (const term of logic.terms) {
    const holds = 'logic' in term ? evaluateLogic(term, lookup) : evaluateComparison(term, lookup);
    if (isOr ? holds : !holds) {
      result = isOr;
      break;
    }
  }
  return logic.logic.charCodeAt(0) === 0x21 /* ! */ ? !result : result;
}

function evaluateComparison(c: Comparison, lookup: ValueLookup): boolean {
  return compare(lookup.get(c.source), c) !== c.negate;
}

function compare(actual: unknown, c: Comparison): boolean {
  const expected = c.value;
  switch (c.op) {
    case '==':
      if (typeof expected === 'number') {
        const n = luaToNumber(actual);
        return n !== undefined && n === expected;
      }
      return actual === expected;
    case '~=':
      if (typeof expected === 'number') {
        const n = luaToNumber(actual);
        return n === undefined || n !== expected;
      }
      return actual !== expected;
    case '>':
    case '>=':
    case '<':
    case '<=': {
      const l = luaToNumber(actual);
      const r = luaToNumber(expected);
      if (l === undefined || r === undefined) return false;
      if (c.op === '>') return l > r;
      if (c.op === '>=') return l >= r;
      if (c.op === '<') return l < r;
      return l <= r;
    }
    case '~~':
    case '~*':
      // ngx.re.find: an unanchored search; Lua hands it a number as its decimal text, and
      // anything else (a table, a boolean) is no match
      if (typeof actual === 'string') return c.regex!.test(actual);
      return typeof actual === 'number' && c.regex!.test(luaNumberText(actual));
    case 'in':
      return (expected as unknown[]).includes(actual);
    case 'has':
      // lua-resty-expr's `has` tests membership in a list-valued variable: only `post_arg.*` gives
      // lists (a JSON array, or the results of a JSONPath such as `messages[*].role`)
      return Array.isArray(actual) && actual.includes(expected);
    case 'ipmatch': {
      if (typeof actual !== 'string') return false;
      const ip = parseIp(actual);
      return ip !== undefined && c.ipMatcher!.matchesParsed(ip);
    }
  }
}

/** Lua's tostring of a number as ngx.re sees it: integers without a fraction, else %.14g. */
function luaNumberText(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e15) return String(n);
  return Number(n.toPrecision(14)).toString();
}

const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const HEX = /^[+-]?0[xX][0-9a-fA-F]+$/;

/** Lua's `tonumber` for strings: decimal or hex, surrounding whitespace allowed, else nil. */
export function luaToNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isNaN(value) ? undefined : value;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (DECIMAL.test(text)) return Number(text);
  if (HEX.test(text)) {
    const negative = text.charCodeAt(0) === 0x2d;
    const digits = text.replace(/^[+-]?0[xX]/, '');
    const n = parseInt(digits, 16);
    return negative ? -n : n;
  }
  return undefined;
}

// --- post_arg.<path> ------------------------------------------------------------------------------

/**
 * A compiled `post_arg.<path>`. APISIX chooses by the path's text (apisix/core/ctx.lua): one with
 * `[`, `*` or `..` is a JSONPath query (`$.` + path) whose value is the list of what it selects
 * (absent when it selects nothing, so compare it with `has`); any other path is a walk through
 * object fields split at `.` (and `(`, `)`), whose value is the field itself.
 */
export type PostArgPath =
  | { readonly kind: 'fields'; readonly fields: readonly string[] }
  | { readonly kind: 'jsonpath'; readonly steps: readonly JsonPathStep[] };

type JsonPathSelector =
  | { readonly type: 'wildcard' }
  /** member names (strings) and array indexes (numbers), in the order written */
  | { readonly type: 'union'; readonly members: readonly (string | number)[] }
  | { readonly type: 'slice'; readonly start: number | undefined; readonly end: number | undefined; readonly step: number };

interface JsonPathStep {
  /** `..`: the selector applies to the node and every node below it */
  readonly descendant: boolean;
  readonly selector: JsonPathSelector;
}

/**
 * Nodes a JSONPath query may visit per request: `..` over a deep body, twice in one path, is
 * quadratic in the body's size; past this the query selects nothing (no match) rather than
 * spending the event loop on one request.
 */
const JSONPATH_MAX_VISITS = 1_000_000;

function compilePostArgPath(path: string, where: string): PostArgPath {
  if (path.includes('[') || path.includes('*') || path.includes('..')) {
    try {
      return { kind: 'jsonpath', steps: parseJsonPath(path) };
    } catch (err) {
      throw new Error(`${where}: invalid expression: post_arg.${path}: ${(err as Error).message}`);
    }
  }
  return { kind: 'fields', fields: path.split(/[.()]/).filter((f) => f !== '') };
}

const NAME_CHAR = /[^.[\]*\s()?'",:]/;

/** The JSONPath `$.` + `path`: dot and bracket members, `*`, `..`, indexes, unions and slices. */
function parseJsonPath(path: string): JsonPathStep[] {
  const text = '.' + path;
  const steps: JsonPathStep[] = [];
  let i = 0;
  const name = (): string => {
    const start = i;
    while (i < text.length && NAME_CHAR.test(text[i]!)) i++;
    if (i === start) throw new Error(`expected a member name at offset ${start}`);
    return text.slice(start, i);
  };
  while (i < text.length) {
    let descendant = false;
    if (text.startsWith('..', i)) {
      descendant = true;
      i += 2;
    } else if (text[i] === '.') {
      i += 1;
    } else if (text[i] !== '[') {
      throw new Error(`unexpected '${text[i]}' at offset ${i}`);
    }
    if (text[i] === '[') {
      const close = text.indexOf(']', i);
      if (close === -1) throw new Error(`'[' at offset ${i} is not closed`);
      steps.push({ descendant, selector: parseBracket(text.slice(i + 1, close).trim()) });
      i = close + 1;
    } else if (text[i] === '*') {
      steps.push({ descendant, selector: { type: 'wildcard' } });
      i += 1;
    } else {
      steps.push({ descendant, selector: { type: 'union', members: [name()] } });
    }
  }
  if (steps.length === 0) throw new Error('empty path');
  return steps;
}

const INTEGER = /^-?\d+$/;

function parseBracket(inner: string): JsonPathSelector {
  if (inner === '*') return { type: 'wildcard' };
  if (inner.startsWith('?') || inner.startsWith('(')) {
    throw new Error('filter and script expressions ([?(...)], [(...)]) are not supported');
  }
  if (inner.includes(':') && !/^['"]/.test(inner)) {
    const parts = inner.split(':').map((p) => p.trim());
    if (parts.length > 3 || !parts.every((p) => p === '' || INTEGER.test(p))) throw new Error(`bad slice [${inner}]`);
    const step = parts[2] === undefined || parts[2] === '' ? 1 : Number(parts[2]);
    if (step === 0) throw new Error(`slice step 0 in [${inner}]`);
    return {
      type: 'slice',
      start: parts[0] === '' ? undefined : Number(parts[0]),
      end: parts[1] === '' ? undefined : Number(parts[1]),
      step,
    };
  }
  const members: (string | number)[] = [];
  for (const raw of inner.split(',')) {
    const member = raw.trim();
    if (INTEGER.test(member)) members.push(Number(member));
    else if (member.length >= 2 && (member[0] === "'" || member[0] === '"') && member.at(-1) === member[0]) members.push(member.slice(1, -1));
    else throw new Error(`bad subscript [${inner}]`);
  }
  return { type: 'union', members };
}

/** A JSON object (or a parsed form): the only value whose fields a path can read. */
function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value of `post_arg.<path>` in a parsed body (undefined: absent, Lua's nil). */
export function postArgValue(body: unknown, path: PostArgPath): unknown {
  if (path.kind === 'fields') {
    let current = body;
    for (const field of path.fields) {
      // own fields only: `post_arg.constructor` is not Object; an array has no named fields (a
      // decoded JSON array is a Lua list, whose keys are numbers, in APISIX)
      if (!isRecord(current) || !Object.hasOwn(current, field)) return undefined;
      current = current[field];
    }
    return current;
  }
  const found = queryJsonPath(body, path.steps);
  return found === undefined || found.length === 0 ? undefined : found;
}

/** The nodes a JSONPath selects, in document order; undefined when it visited too many nodes. */
function queryJsonPath(root: unknown, steps: readonly JsonPathStep[]): unknown[] | undefined {
  let nodes: unknown[] = [root];
  let visits = 0;
  for (const step of steps) {
    const next: unknown[] = [];
    for (const node of nodes) {
      if (!step.descendant) {
        select(node, step.selector, next);
        visits++;
        continue;
      }
      // pre-order over the node and everything below it, without recursion (a body may nest deep)
      const stack: unknown[] = [node];
      while (stack.length > 0) {
        const current = stack.pop();
        select(current, step.selector, next);
        if (++visits > JSONPATH_MAX_VISITS) return undefined;
        const children = Array.isArray(current) ? current : isRecord(current) ? Object.values(current) : undefined;
        if (children === undefined) continue;
        for (let i = children.length - 1; i >= 0; i--) {
          const child = children[i];
          if (typeof child === 'object' && child !== null) stack.push(child);
        }
      }
    }
    if ((visits += next.length) > JSONPATH_MAX_VISITS) return undefined;
    nodes = next;
    if (nodes.length === 0) break;
  }
  return nodes;
}

function select(node: unknown, selector: JsonPathSelector, out: unknown[]): void {
  if (Array.isArray(node)) {
    switch (selector.type) {
      case 'wildcard':
        for (const v of node) out.push(v);
        return;
      case 'union':
        for (const m of selector.members) if (typeof m === 'number' && m >= 0 && m < node.length) out.push(node[m]);
        return;
      case 'slice': {
        const n = node.length;
        const { step } = selector;
        const clamp = (v: number | undefined, dflt: number): number => (v === undefined ? dflt : v < 0 ? Math.max(n + v, step > 0 ? 0 : -1) : Math.min(v, step > 0 ? n : n - 1));
        const start = clamp(selector.start, step > 0 ? 0 : n - 1);
        const end = clamp(selector.end, step > 0 ? n : -1);
        if (step > 0) for (let k = start; k < end; k += step) out.push(node[k]);
        else for (let k = start; k > end; k += step) out.push(node[k]);
        return;
      }
    }
  }
  if (!isRecord(node)) return;
  if (selector.type === 'wildcard') {
    for (const key of Object.keys(node)) out.push(node[key]);
  } else if (selector.type === 'union') {
    for (const m of selector.members) if (typeof m === 'string' && Object.hasOwn(node, m)) out.push(node[m]);
  }
}
