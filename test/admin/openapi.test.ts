import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { Validator } from '@seriousme/openapi-schema-validator';
import { collectionPath, componentName, openApiDocument } from '../../src/admin/openapi.ts';
import { KINDS } from '../../src/config/changeset.ts';
import { RouteSchema } from '../../src/config/schema/route.ts';
import { validateObject } from '../../src/config/validate.ts';
import { isHeaderValue } from '../../src/security/header-value.ts';

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, { operationId?: string; responses?: Record<string, unknown>; requestBody?: unknown; parameters?: unknown[] }>>;
  components: { schemas: Record<string, Record<string, unknown>>; securitySchemes: Record<string, unknown> };
  security: unknown[];
};

// the validator gets a copy: the document is frozen and shared
const doc = () => structuredClone(openApiDocument()) as Doc;

/** Ajv for JSON Schema 2020-12, with the one custom format the schemas use (as validate.ts adds it). */
function ajv2020(strict: boolean): Ajv2020 {
  // strictRequired off: it flags `required` naming a field the same subschema does not declare,
  // which ssl's `then: {oneOf: [{required: ['sni']}, ...]}` does on purpose (valid JSON Schema)
  const ajv = new Ajv2020({ strict, strictRequired: false, allErrors: true });
  ajv.addFormat('header-value', { type: 'string', validate: isHeaderValue });
  return ajv;
}

const validRoute = {
  id: 'r1',
  name: 'orders',
  uri: '/orders/*',
  methods: ['GET', 'POST'],
  hosts: ['api.example.com'],
  labels: { team: 'shop' },
  upstream: { type: 'roundrobin', nodes: { '127.0.0.1:1980': 1 }, timeout: { connect: 1, send: 2, read: 3 } },
  plugins: { 'key-auth': {} },
};

describe('Admin API OpenAPI document', () => {
  test('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(doc());
    assert.equal(result.valid, true, JSON.stringify(result.errors, null, 2));
    assert.equal(validator.version, '3.1');
  });

  test('the validator would notice a broken document', async () => {
    const broken = doc();
    (broken.paths['/apisix/admin/routes/{id}']!.get as Record<string, unknown>).responses = 'none';
    const result = await new Validator().validate(broken);
    assert.equal(result.valid, false);
  });

  test('is plain JSON (no TypeBox symbols) and built once', () => {
    const d = openApiDocument();
    assert.deepEqual(JSON.parse(JSON.stringify(d)), d);
    assert.equal(openApiDocument(), d);
    assert.ok(Object.isFrozen(d));
  });

  test('every kind has its paths with every method, and operation ids are unique', () => {
    const { paths } = doc();
    for (const kind of KINDS) {
      const base = collectionPath(kind);
      assert.ok(paths[base]?.get, `${base} GET`);
      assert.ok(paths[base]?.put, `${base} PUT (id in the body)`);
      // APISIX (and resources.ts: 405) has no POST for consumers: a consumer is named by its username
      assert.equal(Boolean(paths[base]?.post), kind !== 'consumers', `${base} POST`);
      for (const method of ['get', 'put', 'patch', 'delete']) assert.ok(paths[`${base}/{id}`]?.[method], `${base}/{id} ${method}`);
      assert.ok(paths[`${base}/{id}/{field}`]?.patch, `${base}/{id}/{field} PATCH`);
      const body = paths[`${base}/{id}`]!.put!.requestBody as { content: Record<string, { schema: unknown }> };
      assert.deepEqual(body.content['application/json']!.schema, { $ref: `#/components/schemas/${componentName(kind)}` });
    }
    for (const p of ['/portico/admin/history', '/portico/admin/config', '/portico/admin/diff']) assert.ok(paths[p]?.get, p);
    assert.ok(paths['/portico/admin/rollback']?.post);

    const label = paths['/apisix/admin/routes']!.get!.parameters!;
    assert.ok(label.some((p) => JSON.stringify(p).includes('/label')), 'routes are listed by label');
    assert.ok(!JSON.stringify(paths['/apisix/admin/consumers']!.get!.parameters).includes('/name'), 'consumers have no name to filter on');
    const ids = Object.values(paths).flatMap((item) => Object.values(item).flatMap((op) => (op && typeof op === 'object' && 'operationId' in op ? [op.operationId] : [])));
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
  });

  test('writes document their errors with the error schema, and the API key is required', () => {
    const d = doc();
    const put = d.paths['/apisix/admin/routes/{id}']!.put!;
    for (const status of ['400', '401', '403', '405', '409', '413', '415', '503']) assert.ok(put.responses![status], `PUT ${status}`);
    assert.deepEqual(Object.keys((put.responses!['200'] as { headers: object }).headers), ['X-Etcd-Index', 'X-Portico-Served']);
    assert.ok(d.paths['/apisix/admin/routes/{id}']!.get!.responses!['404']);
    const errorResponses = (openApiDocument() as { components: { responses: Record<string, { content: Record<string, { schema: unknown }> }> } }).components.responses;
    for (const r of Object.values(errorResponses)) assert.deepEqual(r.content['application/json']!.schema, { $ref: '#/components/schemas/Error' });
    assert.deepEqual(d.components.securitySchemes.apiKey, {
      type: 'apiKey', in: 'header', name: 'X-API-KEY', description: 'An admin key (reads and writes) or a viewer key (GET and HEAD only).',
    });
    assert.deepEqual(d.security, [{ apiKey: [] }, { apiKeyQuery: [] }]);
  });

  test('every kind\'s schema is present, equal to its TypeBox schema, and valid JSON Schema 2020-12', () => {
    const { schemas } = doc().components;
    assert.deepEqual(schemas.Route, JSON.parse(JSON.stringify(RouteSchema)));
    const ajv = ajv2020(true);
    for (const kind of KINDS) {
      const name = componentName(kind);
      for (const n of [name, `${name}Item`, `${name}List`]) assert.ok(schemas[n], `components/schemas/${n}`);
      assert.equal(ajv.validateSchema(schemas[name]!), true, `${name}: ${ajv.errorsText(ajv.errors)}`);
      // strict mode refuses unknown keywords: no TypeBox leftovers
      assert.doesNotThrow(() => ajv.compile(schemas[name]!), name);
    }
  });

  test('a valid route validates against the Route component, an invalid one does not, as the store decides', () => {
    const { schemas } = doc().components;
    const validate = ajv2020(true).compile(schemas.Route!);
    assert.equal(validate(validRoute), true, JSON.stringify(validate.errors));
    assert.equal(validateObject('routes', 'r1', validRoute).ok, true);

    const invalid: Array<[string, unknown]> = [
      ['unknown field', { ...validRoute, colour: 'red' }],
      ['uri without leading /', { ...validRoute, uri: 'orders' }],
      ['unknown method', { ...validRoute, methods: ['FETCH'] }],
      ['negative node weight', { ...validRoute, upstream: { nodes: { '127.0.0.1:1980': -1 } } }],
      ['status 2', { ...validRoute, status: 2 }],
    ];
    for (const [why, route] of invalid) {
      assert.equal(validate(route), false, why);
      assert.equal(validateObject('routes', 'r1', route).ok, false, `store: ${why}`);
    }
  });

  test('the envelope schemas resolve their $refs: an item and a list as the Admin API returns them', () => {
    const ajv = ajv2020(false);
    ajv.addSchema({ $id: 'urn:portico:admin', ...doc() });
    const item = ajv.getSchema('urn:portico:admin#/components/schemas/RouteItem')!;
    const list = ajv.getSchema('urn:portico:admin#/components/schemas/RouteList')!;
    const stored = { key: '/apisix/routes/r1', value: validRoute, createdIndex: 5, modifiedIndex: 7 };
    assert.equal(item(stored), true, JSON.stringify(item.errors));
    assert.equal(list({ total: 1, list: [stored] }), true, JSON.stringify(list.errors));
    assert.equal(item({ ...stored, value: { ...validRoute, uri: 'orders' } }), false);
    assert.equal(list({ list: [stored] }), false, 'total is required');
  });
});
