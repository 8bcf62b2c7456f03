/**
 * The config schemas are compiled without ajv's check against the JSON Schema meta-schema (it cost
 * every start ~25 ms: src/config/validate.ts), so that check is here: each kind's schema and
 * portico.yaml's are valid draft-07 schemas, and compile with that check on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { KINDS } from '../../src/config/changeset.ts';
import { KIND_SCHEMAS } from '../../src/config/validate.ts';
import { EtcdConfigSchema, GatewayConfigSchema } from '../../src/config/gateway.ts';

test('every config schema is a valid draft-07 JSON Schema', () => {
  const ajv = new Ajv({ validateSchema: true, strict: false });
  ajv.addFormat('header-value', true);
  const schemas: Record<string, object> = { GatewayConfigSchema, EtcdConfigSchema };
  for (const kind of KINDS) schemas[kind] = KIND_SCHEMAS[kind];
  assert.equal(Object.keys(schemas).length, 10);
  for (const [name, schema] of Object.entries(schemas)) {
    assert.equal(ajv.validateSchema(schema), true, `${name}: ${ajv.errorsText(ajv.errors)}`);
    assert.doesNotThrow(() => ajv.compile(schema), name);
  }
  // the check can fail: a schema with a keyword of the wrong type is refused
  assert.equal(ajv.validateSchema({ type: 'object', properties: { a: { type: 'no-such-type' } } }), false);
});
