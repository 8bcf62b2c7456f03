/**
 * The one check for header names and values that come from config (`upstream_host` now, plugin
 * settings such as proxy-rewrite `headers` later). Config is not trusted to be well-formed: a CR or
 * LF in a value written raw into an upstream request splits it into two (request smuggling), a NUL
 * truncates it in some servers. So a bad value is rejected when the object is validated, with the
 * position of the offending character, never repaired silently (a repaired value is not what the
 * operator wrote, and the repair would be a second definition of "valid").
 *
 * A value is an RFC 9110 §5.5 field-value, as Node's own http module enforces it:
 *  - no control characters: NUL, CR, LF and every other byte below 0x20 except HTAB, and DEL (0x7F);
 *  - no character above U+00FF: a header is bytes, and a code point that does not fit one octet
 *    (obs-text, 0x80-0xFF) would be written as UTF-8 by one path and truncated by another;
 *  - no leading or trailing space or tab: a parser strips them (RFC 9110 §5.5), so the upstream
 *    would not see what the config says.
 * A name is an RFC 9110 §5.6.2 token.
 */

/** Characters outside field-vchar / SP / HTAB. */
const NOT_FIELD_CONTENT = /[^\t\x20-\x7e\x80-\xff]/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

const CONTROL_NAMES: Record<number, string> = { 0x00: 'NUL', 0x0a: 'LF', 0x0d: 'CR', 0x7f: 'DEL' };

function describeChar(c: number): string {
  const hex = `0x${c.toString(16).toUpperCase().padStart(2, '0')}`;
  if (c > 0xff) return `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
  return CONTROL_NAMES[c] ? `${CONTROL_NAMES[c]} (${hex})` : `control character ${hex}`;
}

/** Why `value` cannot be sent as a header value, or undefined when it can. */
export function headerValueProblem(value: string): string | undefined {
  const m = NOT_FIELD_CONTENT.exec(value);
  if (m) {
    const c = m[0].codePointAt(0)!;
    return c > 0xff
      ? `contains ${describeChar(c)} at position ${m.index}: header values must be ISO-8859-1 (one octet per character)`
      : `contains ${describeChar(c)} at position ${m.index}: header values must not contain control characters`;
  }
  const first = value.charCodeAt(0);
  const last = value.charCodeAt(value.length - 1);
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) {
    return 'starts or ends with whitespace, which HTTP parsers strip from header values';
  }
  return undefined;
}

export function isHeaderValue(value: string): boolean {
  return headerValueProblem(value) === undefined;
}

/** Why `name` cannot be a header name (an RFC 9110 token), or undefined when it can. */
export function headerNameProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  return TOKEN.test(name) ? undefined : 'must be an HTTP token (letters, digits and !#$%&\'*+-.^_`|~)';
}
