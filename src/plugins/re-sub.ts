import { compileConfigRegex, type ConfigRegex } from '../security/regex.ts';

/**
 * ngx.re.sub and ngx.re.gsub (lua-nginx-module) on the config regex engine (src/security/regex.ts,
 * linear time), for proxy-rewrite's and redirect's `regex_uri` and response-rewrite's `filters`.
 *
 * The replacement is ngx.re.sub's: `$0` the whole match, `$1` / `${1}` a group, `$$` a dollar;
 * any other `$` is an error when the config is compiled (as lua-nginx-module compiles the
 * replacement before it matches anything). A group that did not take part, or one the pattern
 * does not have, is empty.
 *
 * ConfigRegex gives groups, not positions, so the pattern runs behind a lazy prefix group,
 * `^((?s:.)*?)(?:pattern)`: group 1 is the text before the match, i.e. where it starts; the lazy
 * prefix makes the first match found the leftmost one, as an unanchored search would. Each search
 * costs the distance to its match (measured: one exec does not scan the rest of the input), so
 * gsub is linear in the input.
 */

/** A replacement: literal text and group numbers. */
export type Replacement = readonly (string | number)[];

/** Parses ngx.re.sub's replacement; throws with the reason on a `$` that is not `$n`, `${n}` or `$$`. */
export function parseReplacement(text: string): Replacement {
  const parts: (string | number)[] = [];
  let literal = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c !== '$') {
      literal += c;
      continue;
    }
    const m = /^(?:(\d+)|\{(\d+)\}|(\$))/.exec(text.slice(i + 1));
    if (m === null) throw new Error(`invalid capturing variable name at position ${i} (a $ takes a group number, {number} or $)`);
    if (m[3] !== undefined) literal += '$';
    else {
      if (literal !== '') parts.push(literal);
      literal = '';
      parts.push(Number(m[1] ?? m[2]));
    }
    i += m[0].length;
  }
  if (literal !== '') parts.push(literal);
  return parts;
}

export interface SubstitutionOptions {
  /** ngx.re `i` */
  readonly caseless?: boolean;
  /** ngx.re `m`: `^` and `$` at line boundaries */
  readonly multiline?: boolean;
  /** ngx.re `s`: `.` matches a newline */
  readonly dotall?: boolean;
}

export interface Substitution {
  /** ngx.re.sub: the first match replaced, with the captures ($0 = whole match); null when none */
  sub(input: string): { result: string; captures: string[] } | null;
  /** ngx.re.gsub: every non-overlapping match replaced, left to right */
  gsub(input: string): string;
}

/**
 * Compiles a pattern and its replacement. Throws PorticoError / Error with the reason (the
 * pattern's, as compileConfigRegex words it, or the replacement's); callers prefix the field.
 */
export function compileSubstitution(pattern: string, replacementText: string, options: SubstitutionOptions = {}): Substitution {
  // the pattern alone first, so a reason names the user's pattern, not the wrapped one
  compileConfigRegex(pattern, { caseless: options.caseless });
  const flags = `${options.multiline ? 'm' : ''}${options.dotall ? 's' : ''}`;
  const inner = flags === '' ? `(?:${pattern})` : `(?:(?${flags})${pattern})`;
  const located = compileConfigRegex(`^((?s:.)*?)${inner}`, { caseless: options.caseless });
  const replacement = parseReplacement(replacementText);
  return new LocatedSubstitution(located, replacement);
}

class LocatedSubstitution implements Substitution {
  constructor(
    private readonly located: ConfigRegex,
    private readonly replacement: Replacement,
  ) {}

  /** the match at the start of `input` or later: [text before it, captures] */
  private find(input: string): { before: string; captures: string[] } | null {
    const m = this.located.exec(input);
    if (m === null) return null;
    const before = m[1]!;
    const captures: string[] = [m[0]!.slice(before.length)];
    for (let g = 2; g < m.length; g++) captures.push(m[g] ?? '');
    return { before, captures };
  }

  private expand(captures: readonly string[]): string {
    let out = '';
    for (const part of this.replacement) out += typeof part === 'string' ? part : (captures[part] ?? '');
    return out;
  }

  sub(input: string): { result: string; captures: string[] } | null {
    const found = this.find(input);
    if (found === null) return null;
    const end = found.before.length + found.captures[0]!.length;
    return { result: found.before + this.expand(found.captures) + input.slice(end), captures: found.captures };
  }

  /**
   * Searches resume where the previous match ended. Caveat: the search sees the rest of the text
   * as a new subject, so `^`, `\b` or a lookbehind at that point judge it as a start of text
   * (PCRE still sees what came before).
   */
  gsub(input: string): string {
    let out = '';
    let pos = 0;
    while (pos <= input.length) {
      const found = this.find(pos === 0 ? input : input.slice(pos));
      if (found === null) break;
      const whole = found.captures[0]!;
      out += found.before + this.expand(found.captures);
      pos += found.before.length + whole.length;
      if (whole.length === 0) {
        // an empty match: step over one character (a whole code point) so the search moves on
        if (pos >= input.length) break;
        const step = input.codePointAt(pos)! > 0xffff ? 2 : 1;
        out += input.slice(pos, pos + step);
        pos += step;
      }
    }
    return out + input.slice(pos);
  }
}
