import { Type } from '@sinclair/typebox';

/** APISIX object id: a string of safe characters, or an integer (stored as its string form). */
export const Id = Type.Union([
  Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-zA-Z0-9-_.]+$' }),
  Type.Integer({ minimum: 1 }),
]);

/**
 * A label value: APISIX's label_value_def (schema_def.lua) is `^\S+$`, 1-256 characters, so no
 * space, tab, CR, LF, VT or FF. Portico also refuses the other ASCII control characters (NUL, ESC,
 * DEL, ...): a consumer's `labels.custom_id` becomes the X-Consumer-Custom-ID request header.
 * Written as a byte class rather than `\S`: ajv's `u`-flag `\S` would also refuse Unicode spaces
 * (U+00A0, U+3000), which APISIX's PCRE `\S` (no UCP) accepts.
 */
export const LabelValue = Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\x00-\\x20\\x7f]+$' });

/**
 * APISIX's labels_def: any key (`patternProperties: {".*": label_value_def}`), every value a
 * LabelValue. `additionalProperties` rather than a pattern, so a key no pattern matches (one with
 * a newline) cannot carry an unchecked value.
 */
export const Labels = Type.Unsafe<Record<string, string>>({ type: 'object', additionalProperties: LabelValue });

/** Host name, optionally with a leading '*.' wildcard (APISIX host_def). */
export const Host = Type.String({ pattern: '^\\*?[0-9a-zA-Z-._\\[\\]:]+$', maxLength: 253 });

/** plugin name -> plugin config; kept for the plugin pipeline */
export const Plugins = Type.Record(Type.String({ minLength: 1 }), Type.Object({}, { additionalProperties: true }));

/** Fields APISIX keeps on every object; accepted so objects written by APISIX's Admin API load as they are. */
export const Meta = {
  id: Type.Optional(Id),
  name: Type.Optional(Type.String({ maxLength: 256 })),
  desc: Type.Optional(Type.String({ maxLength: 256 })),
  labels: Type.Optional(Labels),
  create_time: Type.Optional(Type.Integer()),
  update_time: Type.Optional(Type.Integer()),
};

/** A string enum as JSON Schema `enum` (a Union of literals would make ajv report one branch only). */
export function StringEnum<const T extends readonly string[]>(values: T, options: { default?: T[number] } = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], ...options });
}
