/**
 * The one place that compiles regular expressions taken from config (`vars` `~~` / `~*`, the
 * router's parameter and wildcard uris; `regex_uri`, `allow_origins_by_regex` and the like when
 * they come). The validator and the runtime both go through compileConfigRegex, so a pattern the
 * validator accepts is one the runtime builds.
 *
 * Guarantee: matching time is linear in the input (times a factor bounded by the pattern), so a
 * client cannot make a configured pattern backtrack. V8's RegExp alone gave no such bound:
 * `^([a-z0-9]+)+$` on a 31-character header blocked the process 13 s, doubling per character.
 *
 * Two engines, one semantics (RE2's, which for what both accept is also PCRE's and V8's):
 * - re2js, a pure-JS port of RE2 (lazy DFA, NFA fallback), for every pattern by default.
 * - V8's RegExp, only for patterns in a small class where backtracking provably does linear work
 *   (deterministicPattern below). Patterns like `^v[0-9]+$` or the router's `^/user/([^/]+)$`
 *   then match 15-30x faster and compile with 1/20 of the memory (bench/regex.ts).
 * Rejected alternatives, measured in bench/regex.ts: V8's experimental linear engine (`/l`) needs a
 * V8 flag in every process and rejects case-insensitive patterns and counted repetition above a
 * small bound; re2-wasm was slower than re2js; the native `re2` addon needs a compiler or a binary
 * download at install; ReDoS checkers (recheck, redos-detector) flag everyday patterns such as
 * `\s*,\s*` (polynomial) and take up to seconds per pattern.
 *
 * Syntax: users write patterns for APISIX, where ngx.re runs PCRE. RE2 syntax is PCRE's minus the
 * constructs that need backtracking; those are rejected when the config is validated, with a
 * reason naming the construct, never at match time. Captureless lookbehind is kept (re2js runs it
 * in linear time). Differences that remain: `$` matches only at the very end (PCRE also before a
 * final newline), and non-ASCII text is matched by code point (ngx.re without the `u` option
 * matches UTF-8 bytes).
 */
import { RE2JS, RE2JSException, RE2JSSyntaxException } from 're2js';
import { ErrorCode, PorticoError } from '../errors.ts';

/**
 * Upper bound on a compiled pattern's size (RE2 program instructions), for patterns on the RE2
 * engine. RE2 is linear in the input, but the factor grows with the pattern: a pattern built so
 * that RE2's DFA explodes (`[ab]*a[ab]{994}\d`, just under this cap) costs 0.3-0.7 s on a 16 KB
 * header, `[ab]*a[ab]{100}\d` ~0.1 s (bench/regex.ts), where a backtracking engine had no bound
 * at all; everyday patterns cost 0.2-1 us. The cap also bounds compile time and memory (RE2's
 * own limits: repeat counts <= 1000, nesting <= 1000). A 30-word case-insensitive User-Agent
 * list is ~270 instructions.
 */
export const MAX_REGEX_PROGRAM_SIZE = 1000;

export interface ConfigRegexOptions {
  /** case-insensitive, as `~*` and ngx.re's `i` option */
  readonly caseless?: boolean;
}

/** A compiled config regex. Both methods search anywhere in the input, like ngx.re.find / match. */
export interface ConfigRegex {
  readonly source: string;
  /** which engine runs it: `native` only for patterns proven linear under backtracking */
  readonly engine: 'native' | 're2';
  test(input: string): boolean;
  /** [whole match, group 1, ...] (undefined for a group that took no part), or null */
  exec(input: string): (string | undefined)[] | null;
}

/**
 * Compiles a pattern from config. Throws PorticoError (PORTICO_ERR_SEMANTIC) whose message is the
 * reason, e.g. `invalid regular expression "(a)\1": backreferences (\1 ... \9) are not supported`;
 * callers prefix it with the field path.
 */
export function compileConfigRegex(pattern: string, options: ConfigRegexOptions = {}): ConfigRegex {
  if (typeof pattern !== 'string') {
    throw new PorticoError(ErrorCode.SEMANTIC, 'regular expression must be a string');
  }
  if (!options.caseless) {
    const native = deterministicPattern(pattern);
    if (native !== undefined) return new NativeConfigRegex(pattern, native);
  }
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(pattern, RE2JS.LOOKBEHINDS | (options.caseless ? RE2JS.CASE_INSENSITIVE : 0));
  } catch (err) {
    if (!(err instanceof RE2JSException)) throw err;
    throw new PorticoError(ErrorCode.SEMANTIC, `invalid regular expression ${JSON.stringify(pattern)}: ${explain(pattern, err)}`);
  }
  const size = compiled.programSize();
  if (size > MAX_REGEX_PROGRAM_SIZE) {
    throw new PorticoError(
      ErrorCode.SEMANTIC,
      `regular expression ${JSON.stringify(pattern)} is too large: it compiles to ${size} instructions, ` +
        `more than ${MAX_REGEX_PROGRAM_SIZE} (shorten counted repetitions such as {500} or split the pattern)`,
    );
  }
  return new Re2ConfigRegex(pattern, compiled);
}

/** The reason compileConfigRegex would give, or undefined when the pattern compiles. */
export function checkConfigRegex(pattern: string, options: ConfigRegexOptions = {}): string | undefined {
  try {
    compileConfigRegex(pattern, options);
    return undefined;
  } catch (err) {
    if (err instanceof PorticoError) return err.message;
    throw err;
  }
}

/**
 * A pattern the router builds from a parameter uri: `^` + literal segments (escaped) and `([^/]+)`
 * groups, joined by `/`, and at most a final `([\s\S]*)`, + `$`. Each `([^/]+)` stops at a `/` or
 * at the end, which is exactly what follows it, and the final group takes the rest, so V8 matches
 * it without backtracking: the analysis compileConfigRegex runs (a
 * sizeable share of loading 50,000 routes) would only prove it again. Only for such patterns.
 */
export function segmentPatternRegex(pattern: string): ConfigRegex {
  return new SegmentPatternRegex(pattern);
}

/**
 * segmentPatternRegex's: the RegExp is made on the first match (most routes of a large table never
 * see one; 16,700 parameter uris compiled in 37–51 ms with their RegExps made at once, 27–34 ms
 * without).
 * The pattern is valid by construction (escaped literals and fixed groups), so nothing is deferred
 * that could fail.
 */
class SegmentPatternRegex implements ConfigRegex {
  readonly source: string;
  readonly engine = 'native';
  private re: RegExp | undefined;

  constructor(source: string) {
    this.source = source;
  }

  test(input: string): boolean {
    return (this.re ??= new RegExp(this.source)).test(input);
  }

  exec(input: string): (string | undefined)[] | null {
    return (this.re ??= new RegExp(this.source)).exec(input);
  }
}

class Re2ConfigRegex implements ConfigRegex {
  readonly source: string;
  readonly engine = 're2';
  private readonly re: RE2JS;

  constructor(source: string, re: RE2JS) {
    this.source = source;
    this.re = re;
  }

  test(input: string): boolean {
    // test() asks for no captures, which lets re2js answer from its lazy DFA.
    return this.re.test(input);
  }

  exec(input: string): (string | undefined)[] | null {
    const m = this.re.exec(input) as (string | null | undefined)[] | null;
    if (m === null) return null;
    const groups: (string | undefined)[] = new Array(m.length);
    for (let i = 0; i < m.length; i++) groups[i] = m[i] ?? undefined;
    return groups;
  }
}

class NativeConfigRegex implements ConfigRegex {
  readonly source: string;
  readonly engine = 'native';
  private readonly re: RegExp;

  constructor(source: string, re: RegExp) {
    this.source = source;
    this.re = re;
  }

  test(input: string): boolean {
    return this.re.test(input);
  }

  exec(input: string): (string | undefined)[] | null {
    return this.re.exec(input);
  }
}

// ---------------------------------------------------------------------------------------------
// The native fast path.
//
// Accepted: an optional `^`, then a sequence of atoms, then an optional `$`. An atom is a literal
// character, `.`, `\d \D \w \W \s \S`, or a bracket class of characters and ranges, with an
// optional greedy quantifier (`? * + {n} {n,} {n,m}`); a run of atoms may sit in one capturing
// group (not nested, not quantified). Anything else (alternation, lazy quantifiers, flags,
// escapes like \b or \x, case-insensitive matching, ...) goes to re2js.
//
// Each atom is turned into an explicit set of code points, probed from re2js itself for the
// shorthand classes and `.`, and emitted as a `u`-mode class of those code points: V8 then
// matches exactly the language RE2 matches, code point by code point. Captures agree too, since
// RE2's leftmost-first submatch rule is the backtracking order.
//
// Why the accepted patterns run in linear time under backtracking. Call an atom variable when its
// quantifier allows more than one length. The condition checked is:
//   (1) every variable atom's set is disjoint from FIRST(rest), the union of the sets of the
//       atoms after it up to and including the first mandatory one (min >= 1); and
//   (2) a pattern without `^` has no variable atom.
// With `^`, there is one start position. The engine runs each atom greedily to its longest
// length. When the rest fails, it gives back one character c of atom i; c is in set(i), so the
// rest must fail on c at once: none of the next atoms up to the first mandatory one accepts c,
// by (1). So a give-back costs O(k) steps (k atoms), each atom gives back at most what it took,
// and the rest is run in full only once per atom: O(n * k) in all. Without `^` every start
// position is tried, and by (2) an attempt is a fixed-length walk: O(n * width).
// ---------------------------------------------------------------------------------------------

/** Sorted, disjoint, inclusive code point ranges: [lo0, hi0, lo1, hi1, ...]. */
type CodePoints = readonly number[];

interface Atom {
  readonly set: CodePoints;
  readonly min: number;
  readonly max: number;
}

const MAX_CODE_POINT = 0x10ffff;
const MAX_REPEAT = 1000;

/** The native RegExp for a pattern in the proven class, else undefined (re2js takes it). */
function deterministicPattern(pattern: string): RegExp | undefined {
  const parsed = parseSimplePattern(pattern);
  if (parsed === undefined) return undefined;
  const { atoms, anchored } = parsed;
  for (let i = 0; i < atoms.length; i++) {
    const atom = atoms[i]!;
    if (atom.min === atom.max) continue;
    if (!anchored) return undefined;
    for (let j = i + 1; j < atoms.length; j++) {
      if (intersects(atom.set, atoms[j]!.set)) return undefined;
      if (atoms[j]!.min > 0) break;
    }
  }
  return new RegExp(parsed.source, 'u');
}

interface SimplePattern {
  readonly anchored: boolean;
  readonly atoms: readonly Atom[];
  /** the same pattern as a `u`-mode JS source with every set spelled out */
  readonly source: string;
}

function parseSimplePattern(pattern: string): SimplePattern | undefined {
  let pos = 0;
  let anchored = false;
  let source = '';
  if (pattern.charCodeAt(0) === 0x5e /* ^ */) {
    anchored = true;
    source = '^';
    pos = 1;
  }
  let end = pattern.length;
  let anchoredEnd = false;
  if (end > pos && pattern.charCodeAt(end - 1) === 0x24 /* $ */ && !escapedAt(pattern, end - 1)) {
    anchoredEnd = true;
    end--;
  }
  const atoms: Atom[] = [];
  let groupOpen = false;
  let groupAtoms = 0;
  while (pos < end) {
    const c = pattern.codePointAt(pos)!;
    if (c === 0x28 /* ( */) {
      if (groupOpen || pattern.charCodeAt(pos + 1) === 0x3f /* ? */) return undefined;
      groupOpen = true;
      groupAtoms = 0;
      source += '(';
      pos++;
      continue;
    }
    if (c === 0x29 /* ) */) {
      if (!groupOpen || groupAtoms === 0) return undefined;
      groupOpen = false;
      source += ')';
      pos++;
      if (pos < end && isQuantifierStart(pattern.charCodeAt(pos))) return undefined;
      continue;
    }
    const atom = parseAtom(pattern, pos, end);
    if (atom === undefined) return undefined;
    pos = atom.next;
    const quantifier = parseQuantifier(pattern, pos, end);
    if (quantifier === undefined) return undefined;
    pos = quantifier.next;
    if (pos < end && isQuantifierStart(pattern.charCodeAt(pos))) return undefined; // lazy, possessive, nested
    if (atom.set.length === 0) return undefined;
    atoms.push({ set: atom.set, min: quantifier.min, max: quantifier.max });
    groupAtoms++;
    source += classSource(atom.set) + quantifierSource(quantifier.min, quantifier.max);
  }
  if (groupOpen) return undefined;
  if (anchoredEnd) source += '$';
  return { anchored, atoms, source };
}

function escapedAt(pattern: string, index: number): boolean {
  let backslashes = 0;
  for (let i = index - 1; i >= 0 && pattern.charCodeAt(i) === 0x5c; i--) backslashes++;
  return backslashes % 2 === 1;
}

function isQuantifierStart(c: number): boolean {
  return c === 0x2a /* * */ || c === 0x2b /* + */ || c === 0x3f /* ? */ || c === 0x7b /* { */;
}

/** Characters that are syntax outside a class in RE2; `{` `}` `]` too, to stay clear of its literal-brace rules. */
const SYNTAX = new Set('\\.+*?()|[]{}^$'.split('').map((ch) => ch.charCodeAt(0)));

function parseAtom(pattern: string, pos: number, end: number): { set: CodePoints; next: number } | undefined {
  const c = pattern.codePointAt(pos)!;
  if (c === 0x2e /* . */) return { set: shorthand('.'), next: pos + 1 };
  if (c === 0x5b /* [ */) return parseClass(pattern, pos + 1, end);
  if (c === 0x5c /* \ */) {
    if (pos + 1 >= end) return undefined;
    const e = pattern.charCodeAt(pos + 1);
    const set = escapeSet(e);
    return set === undefined ? undefined : { set, next: pos + 2 };
  }
  if (SYNTAX.has(c) || isSurrogate(c)) return undefined;
  return { set: [c, c], next: pos + (c > 0xffff ? 2 : 1) };
}

/** `\d \D \w \W \s \S` and an escaped ASCII punctuation character (a literal in RE2). */
function escapeSet(e: number): CodePoints | undefined {
  switch (e) {
    case 0x64: return shorthand('\\d');
    case 0x44: return complement(shorthand('\\d'));
    case 0x77: return shorthand('\\w');
    case 0x57: return complement(shorthand('\\w'));
    case 0x73: return shorthand('\\s');
    case 0x53: return complement(shorthand('\\s'));
    default:
      return isAsciiPunctuation(e) ? [e, e] : undefined;
  }
}

function isAsciiPunctuation(c: number): boolean {
  return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
}

function isSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdfff;
}

/**
 * `[...]` after the `[`: optional `^`, then characters, escaped punctuation, shorthand classes and
 * ranges between two single characters. A `-` is accepted only first or last; `[` never (POSIX
 * classes), nor an empty class.
 */
function parseClass(pattern: string, pos: number, end: number): { set: CodePoints; next: number } | undefined {
  let negated = false;
  if (pattern.charCodeAt(pos) === 0x5e /* ^ */) {
    negated = true;
    pos++;
  }
  const start = pos;
  const ranges: number[] = [];
  while (pos < end) {
    const c = pattern.codePointAt(pos)!;
    if (c === 0x5d /* ] */) {
      if (pos === start) return undefined;
      const set = normalize(ranges);
      return { set: negated ? complement(set) : set, next: pos + 1 };
    }
    let lo: number;
    if (c === 0x5c /* \ */) {
      const e = pattern.charCodeAt(pos + 1);
      const set = escapeSet(e);
      if (set === undefined) return undefined;
      pos += 2;
      if (set.length !== 2 || set[0] !== set[1]) {
        ranges.push(...set);
        continue;
      }
      lo = set[0]!;
    } else if (c === 0x5b /* [ */ || isSurrogate(c)) {
      return undefined;
    } else if (c === 0x2d /* - */) {
      // a literal `-` only first or last, and never a range end point
      if (pos !== start && pattern.charCodeAt(pos + 1) !== 0x5d) return undefined;
      ranges.push(c, c);
      pos++;
      continue;
    } else {
      lo = c;
      pos += c > 0xffff ? 2 : 1;
    }
    let hi = lo;
    if (pattern.charCodeAt(pos) === 0x2d /* - */ && pattern.charCodeAt(pos + 1) !== 0x5d /* ] */) {
      const h = pattern.codePointAt(pos + 1)!;
      if (h === 0x5c || h === 0x5b || h === 0x2d || isSurrogate(h) || pos + 1 >= end) return undefined;
      hi = h;
      if (hi < lo) return undefined;
      pos += 1 + (h > 0xffff ? 2 : 1);
    }
    ranges.push(lo, hi);
  }
  return undefined;
}

function parseQuantifier(pattern: string, pos: number, end: number): { min: number; max: number; next: number } | undefined {
  if (pos >= end) return { min: 1, max: 1, next: pos };
  switch (pattern.charCodeAt(pos)) {
    case 0x3f: return { min: 0, max: 1, next: pos + 1 };
    case 0x2a: return { min: 0, max: Infinity, next: pos + 1 };
    case 0x2b: return { min: 1, max: Infinity, next: pos + 1 };
    case 0x7b: {
      // RE2 reads `{01}` (a leading zero) as literal text, so such counts are left to re2js.
      const m = /^\{(0|[1-9]\d{0,3})(,(0|[1-9]\d{0,3})?)?\}/.exec(pattern.slice(pos, Math.min(end, pos + 12)));
      if (m === null) return undefined;
      const min = Number(m[1]);
      const max = m[2] === undefined ? min : m[3] === undefined ? Infinity : Number(m[3]);
      if (min > MAX_REPEAT || (max !== Infinity && (max > MAX_REPEAT || max < min))) return undefined;
      return { min, max, next: pos + m[0].length };
    }
    default:
      return { min: 1, max: 1, next: pos };
  }
}

function quantifierSource(min: number, max: number): string {
  if (min === max) return min === 1 ? '' : `{${min}}`;
  if (max === Infinity) return min === 0 ? '*' : min === 1 ? '+' : `{${min},}`;
  return min === 0 && max === 1 ? '?' : `{${min},${max}}`;
}

function classSource(set: CodePoints): string {
  if (set.length === 2 && set[0] === set[1]) {
    const c = set[0]!;
    return PLAIN_LITERAL.test(String.fromCharCode(c)) && c < 0x80 ? String.fromCharCode(c) : codePointSource(c);
  }
  // A set holding the top code point is written as its (shorter) complement.
  const negated = set[set.length - 1] === MAX_CODE_POINT;
  const ranges = negated ? complement(set) : set;
  let out = negated ? '[^' : '[';
  for (let i = 0; i < ranges.length; i += 2) {
    out += codePointSource(ranges[i]!);
    if (ranges[i + 1] !== ranges[i]) out += '-' + codePointSource(ranges[i + 1]!);
  }
  return out + ']';
}

const PLAIN_LITERAL = /^[A-Za-z0-9/_]$/;

function codePointSource(c: number): string {
  return `\\u{${c.toString(16)}}`;
}

function normalize(ranges: readonly number[]): CodePoints {
  const pairs: [number, number][] = [];
  for (let i = 0; i < ranges.length; i += 2) pairs.push([ranges[i]!, ranges[i + 1]!]);
  pairs.sort((a, b) => a[0] - b[0]);
  const out: number[] = [];
  for (const [lo, hi] of pairs) {
    const last = out.length - 1;
    if (last > 0 && lo <= out[last]! + 1) out[last] = Math.max(out[last]!, hi);
    else out.push(lo, hi);
  }
  return out;
}

function complement(set: CodePoints): CodePoints {
  const out: number[] = [];
  let next = 0;
  for (let i = 0; i < set.length; i += 2) {
    if (set[i]! > next) out.push(next, set[i]! - 1);
    next = set[i + 1]! + 1;
  }
  if (next <= MAX_CODE_POINT) out.push(next, MAX_CODE_POINT);
  return out;
}

function intersects(a: CodePoints, b: CodePoints): boolean {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (a[i + 1]! < b[j]!) i += 2;
    else if (b[j + 1]! < a[i]!) j += 2;
    else return true;
  }
  return false;
}

const shorthands = new Map<string, CodePoints>();

/**
 * The code points RE2 gives `\d`, `\w`, `\s` and `.`, asked of re2js itself (ASCII probed, the rest
 * checked by sample) so the native form cannot drift from the engine it stands in for.
 */
function shorthand(name: '\\d' | '\\w' | '\\s' | '.'): CodePoints {
  let set = shorthands.get(name);
  if (set === undefined) {
    const probe = RE2JS.compile(`^${name}$`);
    const ranges: number[] = [];
    for (let c = 0; c < 0x80; c++) if (probe.test(String.fromCharCode(c))) ranges.push(c, c);
    const beyondAscii = probe.test('\u00e9') && probe.test('\u{1f600}');
    if (beyondAscii) ranges.push(0x80, MAX_CODE_POINT);
    else if (probe.test('\u00e9') || probe.test('\u{1f600}')) throw new Error(`re2js ${name}: unexpected non-ASCII members`);
    set = normalize(ranges);
    shorthands.set(name, set);
  }
  return set;
}

/**
 * PCRE constructs RE2 leaves out, matched against the fragment the parser stopped at. Named here so
 * that a user porting an APISIX route reads which construct to rewrite, not "invalid escape".
 */
const UNSUPPORTED: readonly [RegExp, string][] = [
  [/^\\[1-9]/, 'backreferences (\\1 ... \\9) are not supported'],
  [/^\\[kg]/, 'backreferences and subroutine calls (\\k<name>, \\g{n}) are not supported'],
  [/^\(\?[=!]/, 'lookahead ((?=...), (?!...)) is not supported'],
  [/^\(\?>/, 'atomic groups ((?>...)) are not supported'],
  [/^\(\?(?:R|[0-9+-]|&|P>)/, 'recursion and subroutine calls ((?R), (?1), (?&name)) are not supported'],
  [/^\(\?\(/, 'conditionals ((?(1)...|...)) are not supported'],
  [/^\(\?#/, 'comments ((?#...)) are not supported'],
  [/^\(\?[a-zA-Z-]*x/, 'extended mode ((?x)) is not supported'],
  [/^(?:[*+?]|\{[0-9,]*\})\+$/, 'possessive quantifiers (a*+, a++, a?+, a{n}+) are not supported'],
  [/^\\Z/, '\\Z is not supported; use $ or \\z (end of input)'],
  [/^\\G/, '\\G (end of previous match) is not supported'],
  [/^\\K/, '\\K (reset match start) is not supported'],
  [/^\\c/, 'control-character escapes (\\cX) are not supported; use \\x{..}'],
  [/^\\u/, '\\uXXXX is not supported; use \\x{XXXX}'],
  [/^\\[RXhHVNCe]/, 'this PCRE escape is not supported'],
];

const LINEAR_ENGINE_NOTE = ' (config regexes run on RE2, a linear-time engine)';

function explain(pattern: string, err: RE2JSException): string {
  if (err instanceof RE2JSSyntaxException) {
    const fragment = err.input ?? '';
    if (/^\(\*[A-Z]/.test(pattern) && fragment === '*') {
      return `PCRE verbs such as (*UTF8) are not supported${LINEAR_ENGINE_NOTE}`;
    }
    if (err.error === 'invalid repeat count') {
      return `repeat counts are limited to 1000, nested ones included: \`${fragment}\`${LINEAR_ENGINE_NOTE}`;
    }
    for (const [shape, reason] of UNSUPPORTED) {
      if (shape.test(fragment)) return `${reason}: \`${fragment}\`${LINEAR_ENGINE_NOTE}`;
    }
    return `${err.error}: \`${fragment}\``;
  }
  return err.message;
}
