/**
 * How one configured uri is stored and checked, following lua-resty-radixtree:
 *
 * - no `*` (and no `:` in parameter mode): an exact path, looked up in a hash.
 * - otherwise the part before the first `*` (or, in parameter mode, the first `:`) is a prefix
 *   key in the radix tree: `/foo/*` is keyed `/foo/` (so it does not match `/foo`), `/foo*` is
 *   keyed `/foo` (and matches `/foobar`).
 * - when the uri has a `:name` segment (parameter mode) or a segment starting with `*` that is not
 *   simply the trailing `*`, the whole request path must also match a pattern built from the uri;
 *   `:name` matches one non-empty segment, `*name` matches the rest (possibly empty, including
 *   slashes). Both are returned as params; an unnamed `*` is not.
 *
 * Deviation: lua-resty-radixtree splices the literal parts of such a uri into its PCRE pattern
 * unescaped (so `.` in `/v1.0/:id` matches any character); Portico escapes them, all but `?`.
 *
 * `?` (a request's `?` always starts its query string, so a path never contains one unencoded):
 * - in a `:name` / `*name` segment it is part of the name, as in radixtree: `/user/:id?` matches
 *   `/user/42` with `id?` = "42" (a required segment, not an optional one);
 * - in a literal part that only the full-path pattern checks (after the key), it is the PCRE
 *   quantifier radixtree makes of it: `/api/:v/nodes/?` matches `.../nodes` and `.../nodes/`
 *   (lua-resty-radixtree t/parameter.t TEST 13);
 * - anywhere else (an exact uri, or the key: the part radixtree looks up literally) it could only
 *   match an encoded `%3F`, and in the key of a parameter uri nothing at all (the key wants a
 *   literal `?` where the pattern reads "optional"): questionMarkProblem() rejects the uri.
 */
import { compileConfigRegex, segmentPatternRegex, type ConfigRegex } from '../security/regex.ts';
import type { RouterMode } from './types.ts';

export interface UriPattern {
  /** the uri as configured (APISIX `path_org`), used to order routes sharing a key */
  readonly uri: string;
  readonly exact: boolean;
  /** the exact path, or the prefix before the first `*` / `:` */
  readonly key: string;
  /** full-path check for parameter/wildcard uris; undefined when the key decides alone */
  readonly regex: ConfigRegex | undefined;
  /** capture group i+1 → param name; undefined for the anonymous trailing `*` */
  readonly paramNames: readonly (string | undefined)[];
}

/** Where a uri's key ends and whether the full-path pattern is needed, per radixtree's rules. */
interface UriShape {
  /** index of the first `*` (or, in parameter mode, `:`); -1: an exact uri */
  cut: number;
  withParameters: boolean;
  /** a `:name` segment, or a `*` segment that is not simply the trailing `*` */
  needsPattern: boolean;
  /** a `*` segment that is not simply the trailing `*` (`*name`, or `*` before another segment) */
  wildcardGroup: boolean;
  /** the uri split at `/` (a uri with a key: cut is not -1) */
  segments: string[] | undefined;
}

function shapeOf(uri: string, mode: RouterMode): UriShape {
  const withParameters = mode === 'radixtree_uri_with_parameter';
  const colon = withParameters ? uri.indexOf(':') : -1;
  const star = uri.indexOf('*');
  const cut = colon === -1 ? star : star === -1 ? colon : Math.min(colon, star);
  let needsPattern = false;
  let wildcardGroup = false;
  const segments = cut === -1 ? undefined : uri.split('/');
  if (segments !== undefined) {
    segments.forEach((segment, index) => {
      if (withParameters && segment.charCodeAt(0) === 0x3a /* : */) needsPattern = true;
      else if (segment.charCodeAt(0) === 0x2a /* * */ && (segment.length > 1 || index !== segments.length - 1)) needsPattern = wildcardGroup = true;
    });
  }
  return { cut, withParameters, needsPattern, wildcardGroup, segments };
}

/**
 * Why a `?` in `uri` makes it a route that cannot match what its author meant in `mode`, or
 * undefined (no `?`, or one radixtree gives a meaning: see the header of this file).
 */
export function questionMarkProblem(uri: string, mode: RouterMode): string | undefined {
  const q = uri.indexOf('?');
  if (q === -1) return undefined;
  const { cut, withParameters, needsPattern } = shapeOf(uri, mode);
  if (cut !== -1 && q > cut) {
    // only the full-path pattern sees it (or nothing does: `/foo*bar?` is decided by its key)
    if (needsPattern && uri.includes('???')) return `'???' is not a valid pattern (radixtree's PCRE rejects it too)`;
    return undefined;
  }
  const rule = `'?' is matched literally here, so only a path with an encoded '%3F' could match (a request's '?' starts its query string)`;
  const query = /^([A-Za-z0-9_-]+)=([^&]*)/.exec(uri.slice(q + 1));
  if (query !== null) return `${rule}; to match query arguments use vars, e.g. [["arg_${query[1]}", "==", "${query[2]}"]]`;
  if (!withParameters && /(^|\/):/.test(uri)) {
    return `${rule}; ':' starts a parameter only with router radixtree_uri_with_parameter (this is ${mode})`;
  }
  if (cut !== -1) return `${rule}, and it is before the first parameter or wildcard, in the part looked up literally`;
  return rule;
}

const NO_PARAMS: readonly (string | undefined)[] = Object.freeze([]);

/**
 * Throws what compileUriPattern would throw for `uri`, without building the pattern: for a process
 * that validates routes it does not serve (a primary with workers, `portico validate`, the Admin
 * API), where the compiled pattern would be garbage at once. Only the config-regex compiler's
 * analysis can fail past questionMarkProblem(), and only for the patterns it is given.
 */
export function checkUriPattern(uri: string, mode: RouterMode): void {
  const question = questionMarkProblem(uri, mode);
  if (question !== undefined) throw new Error(question);
  if (!uri.includes('?') && !shapeOf(uri, mode).wildcardGroup) return; // an exact, prefix or segment pattern: valid by construction
  compileUriPattern(uri, mode);
}

export function compileUriPattern(uri: string, mode: RouterMode): UriPattern {
  const question = questionMarkProblem(uri, mode);
  if (question !== undefined) throw new Error(question);
  const { cut, withParameters, needsPattern, wildcardGroup, segments } = shapeOf(uri, mode);
  if (cut === -1) {
    return { uri, exact: true, key: uri, regex: undefined, paramNames: NO_PARAMS };
  }
  const key = uri.slice(0, cut);
  // a bare trailing `*`: the prefix key decides alone (see below), nothing to build
  if (!needsPattern) return { uri, exact: false, key, regex: undefined, paramNames: NO_PARAMS };

  const paramNames: (string | undefined)[] = [];
  const parts = segments!.map((segment) => {
    if (withParameters && segment.charCodeAt(0) === 0x3a /* : */) {
      paramNames.push(segment.slice(1));
      return '([^/]+)';
    }
    if (segment.charCodeAt(0) === 0x2a /* * */) {
      const name = segment.slice(1);
      paramNames.push(name === '' ? undefined : name);
      return '([\\s\\S]*)';
    }
    return escapeLiteral(segment);
  });

  // A bare trailing `*` (or a `*` inside a segment, which radixtree does not treat as a wildcard
  // and which then adds no capture) is decided by the prefix key alone, as in radixtree where
  // compare_param() returns early when the pattern has no names.
  // Through the config-regex compiler: `/*a/*b/end` gives `^/([\s\S]*)/([\s\S]*)/end$`, which
  // backtracks polynomially on a path of many segments; the compiler puts such patterns on the
  // linear engine and keeps `/user/:id` shapes on V8's.
  // `:name` groups and literals only (the common `/user/:id`, no `?`): V8's engine at once, without
  // the compiler's analysis, which proved the same for every such pattern (a fifth of the
  // validation of 50,000 routes; see segmentPatternRegex).
  const source = `^${parts.join('/')}$`;
  const regex = wildcardGroup || uri.includes('?') ? compileConfigRegex(source) : segmentPatternRegex(source);
  return { uri, exact: false, key, regex, paramNames: paramNames.slice() };
}

/**
 * A literal part of the full-path pattern: escaped, except `?`, which stays the quantifier
 * radixtree's PCRE makes of it (questionMarkProblem() has refused it wherever it would be taken
 * literally instead).
 */
function escapeLiteral(text: string): string {
  return text.replace(/[.*+^${}()|[\]\\]/g, '\\$&');
}
