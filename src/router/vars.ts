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
  | { kind: 'query_string' }
  | { kind: 'arg'; name: string }
  | { kind: 'http'; header: string }
  | { kind: 'cookie'; name: string };

/** What an expression needs of the request; the router provides a lazily-parsing implementation. */
export interface VarLookup {
  get(source: VarSource): string | undefined;
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
export function compileVars(vars: unknown): CompiledVars {
  if (!Array.isArray(vars)) throw new Error('vars must be an array');
  // An empty expression always matches (lua-resty-expr returns a rule-less object).
  if (vars.length === 0) return { root: undefined };
  if (!Array.isArray(vars[0]) && !isLogicOperator(vars[0])) {
    throw new Error('vars: rule should be wrapped inside brackets, e.g. [["arg_a", "==", "1"]]');
  }
  const root = compileRule(vars, 'vars');
  return { root: 'logic' in root ? root : { logic: 'AND', terms: [root] } };
}

/** Evaluates compiled vars against a request; `true` when the route's vars hold. */
export function evaluateVars(compiled: CompiledVars, lookup: VarLookup): boolean {
  return compiled.root === undefined || evaluateLogic(compiled.root, lookup);
}

function isLogicOperator(value: unknown): value is string {
  return typeof value === 'string' && LOGIC_OPERATORS.has(value.toUpperCase());
}

function compileRule(rule: unknown[], where: string): Expr {
  if (rule.length === 0) throw new Error(`${where}: rule too short`);
  if (Array.isArray(rule[0])) {
    return {
      logic: 'AND',
      terms: rule.map((term, i) => compileTerm(term, `${where}[${i}]`)),
    };
  }
  if (isLogicOperator(rule[0])) {
    if (rule.length <= 2) throw new Error(`${where}: rule too short, ${String(rule[0])} needs at least two terms`);
    return {
      logic: rule[0].toUpperCase() as Logic['logic'],
      terms: rule.slice(1).map((term, i) => compileTerm(term, `${where}[${i + 1}]`)),
    };
  }
  return compileComparison(rule, where);
}

function compileTerm(term: unknown, where: string): Expr {
  if (!Array.isArray(term)) throw new Error(`${where}: must be an array`);
  return compileRule(term, where);
}

function compileComparison(expr: unknown[], where: string): Comparison {
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

  return { source: resolveVarSource(name, where), op: operator as Operator, value, regex, ipMatcher, negate };
}

/**
 * Maps an APISIX/nginx variable name to where Portico finds it. Unknown names are rejected rather
 * than silently evaluating to nil: a route that can never match is a config error worth reporting.
 */
export function resolveVarSource(name: string, where = 'vars'): VarSource {
  switch (name) {
    case 'uri':
      return { kind: 'uri' };
    case 'host':
      return { kind: 'host' };
    case 'request_method':
      return { kind: 'request_method' };
    case 'remote_addr':
      return { kind: 'remote_addr' };
    case 'args':
    case 'query_string':
      return { kind: 'query_string' };
    default:
      break;
  }
  if (name.startsWith('arg_') && name.length > 4) return { kind: 'arg', name: name.slice(4) };
  if (name.startsWith('cookie_') && name.length > 7) return { kind: 'cookie', name: name.slice(7) };
  if (name.startsWith('http_') && name.length > 5) {
    // APISIX lower-cases the name and nginx maps '_' to '-': http_X_Api_Key reads "x-api-key".
    return { kind: 'http', header: name.slice(5).toLowerCase().replaceAll('_', '-') };
  }
  throw new Error(
    `${where}: unsupported variable '${name}'; supported: uri, host, request_method, remote_addr, ` +
      'args, query_string, arg_<name>, http_<name>, cookie_<name>',
  );
}

function evaluateLogic(logic: Logic, lookup: VarLookup): boolean {
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

function evaluateComparison(c: Comparison, lookup: VarLookup): boolean {
  return compare(lookup.get(c.source), c) !== c.negate;
}

function compare(actual: string | undefined, c: Comparison): boolean {
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
      // ngx.re.find: an unanchored search.
      return actual !== undefined && c.regex!.test(actual);
    case 'in':
      return (expected as unknown[]).includes(actual);
    case 'has':
      // lua-resty-expr's `has` tests membership in a list-valued variable. Every variable Portico
      // exposes is a string (like nginx variables), so `has` never holds; kept for compatibility.
      return false;
    case 'ipmatch': {
      if (actual === undefined) return false;
      const ip = parseIp(actual);
      return ip !== undefined && c.ipMatcher!.matchesParsed(ip);
    }
  }
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
