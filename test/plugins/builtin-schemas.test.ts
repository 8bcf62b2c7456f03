import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { BUILTIN_PLUGINS } from '../../src/plugins/builtin.ts';
import { plugins } from '../../src/plugins/registry.ts';

/*
 * Built-in plugins' schemas are compiled on first use (not at start): this proves each of them
 * compiles, so a broken one fails here and not on the first route that names the plugin.
 */
describe('built-in plugin schemas', () => {
  const ajv = new Ajv({ allErrors: false, strict: false, useDefaults: true });
  for (const p of BUILTIN_PLUGINS) {
    it(`${p.name}: its schema${p.consumerSchema ? ' and consumer schema' : ''} compile, and the registry validates with them`, () => {
      assert.doesNotThrow(() => ajv.compile(p.schema));
      if (p.consumerSchema) assert.doesNotThrow(() => ajv.compile(p.consumerSchema!));
      // a config that is certainly wrong is rejected with a path: the lazily compiled validator ran
      const bad = plugins.check(p.name, 'not an object', `/plugins/${p.name}`);
      assert.equal(bad.ok, false);
    });
  }
});
