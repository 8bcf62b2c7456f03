/**
 * A 64-bit fingerprint of a string, as two int32 halves (each stays a small integer in V8: stored
 * inline in an object, no heap number). Two independent 32-bit multiply-xorshift lanes over the
 * UTF-16 code units, with a final avalanche. Not cryptographic: it tells "same text" from
 * "different text" for config objects the source itself wrote, and is only consulted when the
 * source also reports the same revision for both (a collision would keep an object's previous
 * version until its next change).
 */
export interface Fingerprint {
  readonly h1: number;
  readonly h2: number;
}

export function fingerprint(text: string): Fingerprint {
  let h1 = 0xdeadbeef ^ text.length;
  let h2 = 0x41c6ce57 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x9e3779b1);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 0x85ebca6b) ^ Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 0x85ebca6b) ^ Math.imul(h1 ^ (h1 >>> 13), 0xc2b2ae35);
  return { h1: h1 | 0, h2: h2 | 0 };
}
