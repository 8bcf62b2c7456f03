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
 * unescaped (so `.` in `/v1.0/:id` matches any character); Portico escapes them.
 */
import { compileConfigRegex, type ConfigRegex } from '../security/regex.ts';
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

export function compileUriPattern(uri: string, mode: RouterMode): UriPattern {
  const withParameters = mode === 'radixtree_uri_with_parameter';
  const colon = withParameters ? uri.indexOf(':') : -1;
  const star = uri.indexOf('*');
  if (colon === -1 && star === -1) {
    return { uri, exact: true, key: uri, regex: undefined, paramNames: [] };
  }

  const cut = colon === -1 ? star : star === -1 ? colon : Math.min(colon, star);
  const key = uri.slice(0, cut);

  const paramNames: (string | undefined)[] = [];
  let hasNamedOrInnerWildcard = false;
  const parts = uri.split('/').map((segment, index, all) => {
    if (withParameters && segment.charCodeAt(0) === 0x3a /* : */) {
      paramNames.push(segment.slice(1));
      hasNamedOrInnerWildcard = true;
      return '([^/]+)';
    }
    if (segment.charCodeAt(0) === 0x2a /* * */) {
      const name = segment.slice(1);
      paramNames.push(name === '' ? undefined : name);
      if (name !== '' || index !== all.length - 1) hasNamedOrInnerWildcard = true;
      return '([\\s\\S]*)';
    }
    return escapeRegExp(segment);
  });

  // A bare trailing `*` (or a `*` inside a segment, which radixtree does not treat as a wildcard
  // and which then adds no capture) is decided by the prefix key alone, as in radixtree where
  // compare_param() returns early when the pattern has no names.
  // Through the config-regex compiler: `/*a/*b/end` gives `^/([\s\S]*)/([\s\S]*)/end$`, which
  // backtracks polynomially on a path of many segments; the compiler puts such patterns on the
  // linear engine and keeps `/user/:id` shapes on V8's.
  const regex = hasNamedOrInnerWildcard ? compileConfigRegex(`^${parts.join('/')}$`) : undefined;
  return { uri, exact: false, key, regex, paramNames: regex === undefined ? [] : paramNames };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
