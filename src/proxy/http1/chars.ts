/*
 * Byte classes of HTTP/1.1 (RFC 9110 §5.6, RFC 9112), as lookup tables: the parsers test every byte
 * of a head against one of these, so a table load is the whole cost of a check.
 */

function table(...ranges: (string | [number, number])[]): Uint8Array {
  const t = new Uint8Array(256);
  for (const r of ranges) {
    if (typeof r === 'string') for (let i = 0; i < r.length; i++) t[r.charCodeAt(i)] = 1;
    else for (let c = r[0]; c <= r[1]; c++) t[c] = 1;
  }
  return t;
}

const DIGIT: [number, number] = [0x30, 0x39];
const UPPER: [number, number] = [0x41, 0x5a];
const LOWER: [number, number] = [0x61, 0x7a];
const OBS_TEXT: [number, number] = [0x80, 0xff];

/** tchar (RFC 9110 §5.6.2): header names, methods, chunk extension names */
export const TOKEN = table("!#$%&'*+-.^_`|~", DIGIT, UPPER, LOWER);

/** field-vchar / SP / HTAB (RFC 9110 §5.5): what a header value may hold. NUL, CR, LF, DEL are not in it. */
export const FIELD_VALUE = table('\t ', [0x21, 0x7e], OBS_TEXT);

/**
 * What a request-target may hold: llhttp's URL_CHAR plus `?` and `#` (it accepts a query and a
 * fragment). No controls, no space, no DEL, no byte ≥ 0x80: a target is ASCII on the wire.
 */
export const TARGET = table('!"$%&\'()*+,-./:;<=>@[\\]^_`{|}~?#', DIGIT, UPPER, LOWER);

/** what llhttp allows in an absolute-form authority (userinfo chars, `[`, `]`, one `@`) */
export const AUTHORITY = table("-_.!~*'()%;:&=+$,[]@", DIGIT, UPPER, LOWER);

/** the scheme of an absolute-form target, as llhttp reads it: letters only */
export const ALPHA = table(UPPER, LOWER);

/** qdtext (RFC 9110 §5.6.4): inside a quoted chunk-extension value */
export const QDTEXT = table('\t ', [0x21, 0x21], [0x23, 0x5b], [0x5d, 0x7e], OBS_TEXT);

/** what may follow a backslash in a quoted-pair */
export const QUOTED_PAIR = table('\t ', [0x21, 0x7e], OBS_TEXT);

/** hex digit value + 1 (0 = not a hex digit), for chunk sizes */
export const HEX = new Uint8Array(256);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c + 1;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = c + 11;
  HEX[0x61 + c] = c + 11;
}

export const CR = 13;
export const LF = 10;
export const SP = 32;
export const HTAB = 9;
export const COLON = 58;
export const SEMICOLON = 59;
export const COMMA = 44;
export const DQUOTE = 34;
export const BACKSLASH = 92;
export const EQUALS = 61;
