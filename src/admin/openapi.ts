import type { TObject, TSchema } from '@sinclair/typebox';
import { KINDS, type Kind } from '../config/changeset.ts';
import { Id } from '../config/schema/common.ts';
import { ConsumerSchema } from '../config/schema/consumer.ts';
import { KIND_SCHEMAS } from '../config/validate.ts';

/**
 * The Admin API described as an OpenAPI 3.1 document, generated rather than written: each kind's
 * component schema is the TypeBox schema the store validates objects with, so the document cannot
 * drift from what the gateway accepts. Paths follow APISIX v3's Admin API (`/apisix/admin/<kind>`,
 * `/apisix/admin/<kind>/{id}`), plus Portico's own `/portico/admin/*` endpoints.
 *
 * What the schemas cannot say: the semantic checks of src/config/validate.ts (`uri` or `uris`,
 * an upstream or a way to one, the balancer type, plugin configs against each plugin's own
 * schema). A body the component schema accepts may still get a 400 with the reason.
 */

/** Each kind's object schema (`satisfies`: a new kind is a type error until it has one). */
const kindSchemas: Record<Kind, TObject> = KIND_SCHEMAS satisfies Record<Kind, TObject>;

/** The component name of a kind's object schema: `routes` → `Route`, `plugin_configs` → `PluginConfig`. */
export function componentName(kind: Kind): string {
  return kind
    .replace(/s$/, '')
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

/** The Admin API path of a kind's collection. */
export function collectionPath(kind: Kind): string {
  return `/apisix/admin/${kind}`;
}

/**
 * A TypeBox schema as plain JSON Schema: TypeBox marks its schemas with symbol keys ([Kind],
 * [OptionalKind]) that JSON cannot carry; a JSON round trip drops them and shares no object with
 * the live schema, so freezing the document cannot freeze a schema ajv compiles elsewhere.
 */
function plainSchema(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
}

const ref = (section: 'schemas' | 'parameters' | 'responses' | 'headers', name: string) => ({ $ref: `#/components/${section}/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema } });

/** The error statuses every Admin API write can answer with, and what each means here. */
const ERROR_RESPONSES = {
  '400': ['BadRequest', 'The request or the object is invalid (the reason names the field and the rule), a referenced object does not exist, or a DELETE without force=true of an object others still use.'],
  '401': ['Unauthorized', 'No key (X-API-KEY header or api_key query parameter), or a key that is not configured.'],
  '403': ['Forbidden', 'The client address is not allowed to use the Admin API, or a viewer key tried to write.'],
  '404': ['NotFound', 'No object with this id.'],
  '409': ['Conflict', 'The object changed: its modifiedIndex is not the If-Match one (or a PATCH kept losing to concurrent writes); or POST hit an existing id. Read it again and retry.'],
  '405': ['MethodNotAllowed', 'Writes are refused while config.source is file (the routes file is the source of truth), or the method does not apply to this path.'],
  '413': ['PayloadTooLarge', 'The request body is over the size limit (1 MiB by default).'],
  '415': ['UnsupportedMediaType', 'The body is not sent as JSON (application/json; curl -d\'s form type is also taken).'],
  '503': ['Unavailable', 'etcd could not be reached; nothing was written.'],
} as const;
type ErrorStatus = keyof typeof ERROR_RESPONSES;

const WRITE_HEADERS = {
  'X-Etcd-Index': ref('headers', 'X-Etcd-Index'),
  'X-Portico-Served': ref('headers', 'X-Portico-Served'),
};

function errors(...statuses: ErrorStatus[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of statuses) out[s] = ref('responses', ERROR_RESPONSES[s][0]);
  return out;
}

/** Query parameters of a list GET: pages always; each filter only where the kind has that field. */
function listParameters(kind: Kind): unknown[] {
  const fields = kindSchemas[kind].properties;
  const params: unknown[] = [ref('parameters', 'page'), ref('parameters', 'page_size')];
  if ('name' in fields) params.push(ref('parameters', 'name'));
  if ('uri' in fields) params.push(ref('parameters', 'uri'));
  if ('labels' in fields) params.push(ref('parameters', 'label'));
  return params;
}

/**
 * The id path parameter: a consumer's id is its username (the etcd key ends with it), any other
 * object's id the string form of common.ts's Id.
 */
function idParameter(kind: Kind): Record<string, unknown> {
  const idString = (Id.anyOf as TSchema[]).find((s) => s.type === 'string')!;
  return kind === 'consumers'
    ? { name: 'id', in: 'path', required: true, description: 'The consumer\'s username.', schema: plainSchema(ConsumerSchema.properties.username) }
    : { name: 'id', in: 'path', required: true, description: 'The object\'s id.', schema: plainSchema(idString) };
}

function kindPaths(kind: Kind): Record<string, unknown> {
  const name = componentName(kind);
  const plural = name + 's';
  const tags = [kind];
  const writeParams = [ref('parameters', 'wait')];
  const itemOk = (description: string) => ({ description, content: json(ref('schemas', `${name}Item`)) });
  // a write answers with the revision it produced, and with ?wait=served whether it is served
  const writeOk = (description: string) => ({ ...itemOk(description), headers: WRITE_HEADERS });
  const created = { '201': writeOk(`The ${kind} object was created.`) };
  const writeErrors = ['400', '401', '403', '405', '409', '413', '415', '503'] as const;
  const idField = kind === 'consumers' ? 'username' : 'id';

  const collection: Record<string, unknown> = {
    get: {
      operationId: `list${plural}`,
      summary: `List ${kind}`,
      tags,
      parameters: listParameters(kind),
      responses: { '200': { description: `One page of ${kind}.`, content: json(ref('schemas', `${name}List`)) }, ...errors('400', '401', '403', '503') },
    },
  };
  // APISIX's way to write a consumer (its id is `username`); for other kinds the id comes from `id`
  collection.put = {
    operationId: `put${name}FromBody`,
    summary: `Create or replace a ${kind} object named by its \`${idField}\``,
    tags,
    parameters: [...writeParams, ref('parameters', 'If-Match')],
    requestBody: { required: true, content: json(ref('schemas', name)) },
    responses: { '200': writeOk(`The ${kind} object was replaced.`), ...created, ...errors(...writeErrors) },
  };
  // APISIX has no POST for consumers (a consumer is named by its username, never by a generated id)
  if (kind !== 'consumers') {
    collection.post = {
      operationId: `create${name}`,
      summary: `Create a ${kind} object with a generated id`,
      description: 'The id is generated (20 digits); a body with `id` is refused.',
      tags,
      parameters: writeParams,
      requestBody: { required: true, content: json(ref('schemas', name)) },
      responses: { ...created, ...errors(...writeErrors) },
    };
  }

  const ifMatch = ref('parameters', 'If-Match');
  const item = {
    parameters: [idParameter(kind)],
    get: {
      operationId: `get${name}`,
      summary: `Get one ${kind} object`,
      tags,
      responses: { '200': itemOk(`The ${kind} object.`), ...errors('401', '403', '404', '503') },
    },
    put: {
      operationId: `put${name}`,
      summary: `Create or replace a ${kind} object`,
      tags,
      parameters: [...writeParams, ifMatch],
      requestBody: { required: true, content: json(ref('schemas', name)) },
      responses: { '200': writeOk(`The ${kind} object was replaced.`), ...created, ...errors(...writeErrors) },
    },
    patch: {
      operationId: `patch${name}`,
      summary: `Update a ${kind} object by JSON merge patch`,
      tags,
      parameters: [...writeParams, ifMatch],
      requestBody: {
        required: true,
        description: `A JSON merge patch (RFC 7396): fields set to null are removed, objects merge, anything else replaces. The merged object must be a valid ${name}.`,
        content: json({ type: 'object' }),
      },
      responses: { '200': writeOk(`The ${kind} object after the patch.`), ...errors('404', ...writeErrors) },
    },
    delete: {
      operationId: `delete${name}`,
      summary: `Delete a ${kind} object`,
      tags,
      parameters: [ref('parameters', 'force'), ...writeParams, ifMatch],
      responses: {
        '200': { description: 'The object was deleted.', content: json(ref('schemas', 'Deleted')), headers: WRITE_HEADERS },
        ...errors('400', '401', '403', '404', '405', '409', '503'),
      },
    },
  };

  const field = {
    parameters: [
      idParameter(kind),
      {
        name: 'field',
        in: 'path',
        required: true,
        // OpenAPI path parameters are one segment; the server also takes deeper paths
        description: `A field of ${name} (e.g. \`plugins\`). A nested field is named by its path, e.g. \`.../{id}/upstream/nodes\`; every object on the way must exist.`,
        schema: { type: 'string', minLength: 1 },
      },
    ],
    patch: {
      operationId: `patch${name}Field`,
      summary: `Replace one field of a ${kind} object`,
      tags,
      parameters: [...writeParams, ifMatch],
      requestBody: {
        required: true,
        description: `The field's new value, replacing the old one (APISIX sub-path PATCH). The resulting object must be a valid ${name}.`,
        content: json({}),
      },
      responses: { '200': writeOk(`The ${kind} object after the change.`), ...errors('404', ...writeErrors) },
    },
  };

  const base = collectionPath(kind);
  return { [base]: collection, [`${base}/{id}`]: item, [`${base}/{id}/{field}`]: field };
}

/** Per kind: the object, the stored envelope around it, and one page of a list. */
function kindComponents(kind: Kind): Record<string, unknown> {
  const name = componentName(kind);
  return {
    [name]: plainSchema(kindSchemas[kind]),
    [`${name}Item`]: {
      type: 'object',
      description: `A stored ${kind} object: its etcd key, its value and the revisions it was created and last modified at.`,
      properties: {
        key: { type: 'string', examples: [`/apisix/${kind}/1`] },
        value: ref('schemas', name),
        createdIndex: { type: 'integer', minimum: 0, description: 'The revision the object was created at.' },
        modifiedIndex: { type: 'integer', minimum: 0, description: 'The revision of this version: what If-Match takes.' },
      },
      // createdIndex is left out of some write answers (a PATCH's): not required
      required: ['key', 'value', 'modifiedIndex'],
    },
    [`${name}List`]: {
      type: 'object',
      properties: {
        total: { type: 'integer', minimum: 0, description: 'How many objects match, over all pages.' },
        list: { type: 'array', items: ref('schemas', `${name}Item`) },
      },
      required: ['total', 'list'],
    },
  };
}

const revisionSchema = { type: 'integer', minimum: 1 };
const anyObject = (description: string) => ({ description, content: json({ type: 'object' }) });

/** Portico's own endpoints (history and rollback of the configuration). */
function porticoPaths(): Record<string, unknown> {
  const tags = ['portico'];
  const query = (name: string, schema: unknown, description: string, required = false) => ({ name, in: 'query', required, description, schema });
  return {
    '/portico/admin/history': {
      get: {
        operationId: 'getHistory',
        summary: 'Changes to the configuration, newest first',
        tags,
        parameters: [
          query('kind', { type: 'string', enum: [...KINDS] }, 'Only changes of this kind.'),
          query('id', { type: 'string', minLength: 1 }, 'Only changes of this object (with kind).'),
          query('limit', { type: 'integer', minimum: 1 }, 'At most this many entries.'),
        ],
        responses: { '200': anyObject('The history entries.'), ...errors('400', '401', '403') },
      },
    },
    '/portico/admin/config': {
      get: {
        operationId: 'getConfig',
        summary: 'The whole configuration, now or at a past revision',
        tags,
        parameters: [query('revision', revisionSchema, 'The revision to show; the current one without it.')],
        responses: { '200': anyObject('Every object of every kind at that revision.'), ...errors('400', '401', '403', '404') },
      },
    },
    '/portico/admin/diff': {
      get: {
        operationId: 'getDiff',
        summary: 'What changed between two revisions',
        tags,
        parameters: [query('from', revisionSchema, 'The older revision.', true), query('to', revisionSchema, 'The newer revision; the current one without it.')],
        responses: { '200': anyObject('The objects added, changed and deleted between the two revisions.'), ...errors('400', '401', '403', '404') },
      },
    },
    '/portico/admin/rollback': {
      post: {
        operationId: 'rollback',
        summary: 'Make the configuration what it was at a past revision',
        description: 'Writes the differences as new changes (a new revision); history is kept.',
        tags,
        parameters: [ref('parameters', 'wait')],
        requestBody: {
          required: true,
          content: json({ type: 'object', properties: { revision: revisionSchema }, required: ['revision'], additionalProperties: false }),
        },
        responses: { '200': anyObject('The rollback was written.'), ...errors('400', '401', '403', '404', '409', '413') },
      },
    },
  };
}

function buildDocument(): Record<string, unknown> {
  const schemas: Record<string, unknown> = {
    Error: {
      type: 'object',
      properties: {
        error_msg: { type: 'string' },
        description: { type: 'string', description: 'More detail, on some errors (APISIX: "missing apikey").' },
        message: { type: 'string', description: 'On 404, as APISIX: "Key not found".' },
      },
      required: ['error_msg'],
    },
    Deleted: {
      type: 'object',
      properties: { key: { type: 'string' }, deleted: { type: 'string', const: '1' } },
      required: ['key', 'deleted'],
    },
  };
  let paths: Record<string, unknown> = {};
  for (const kind of KINDS) {
    Object.assign(schemas, kindComponents(kind));
    paths = { ...paths, ...kindPaths(kind) };
  }
  paths = { ...paths, ...porticoPaths() };

  const responses: Record<string, unknown> = {};
  for (const [name, description] of Object.values(ERROR_RESPONSES)) {
    responses[name] = { description, content: json(ref('schemas', 'Error')) };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'Portico Admin API',
      version: '3',
      description: 'APISIX v3-compatible Admin API of Portico, plus Portico\'s configuration history endpoints.',
    },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    // either one: APISIX takes the key from the header or from `?api_key=` (src/admin/auth.ts)
    security: [{ apiKey: [] }, { apiKeyQuery: [] }],
    tags: [...KINDS.map((kind) => ({ name: kind })), { name: 'portico', description: 'Configuration history, diff and rollback.' }],
    paths,
    components: {
      schemas,
      responses,
      parameters: {
        page: {
          name: 'page',
          in: 'query',
          description: 'Page number, from 1. Without page and page_size every match is listed; with either, one page in creation order.',
          schema: { type: 'integer', minimum: 1, default: 1 },
        },
        page_size: { name: 'page_size', in: 'query', description: 'Objects per page.', schema: { type: 'integer', minimum: 10, maximum: 500, default: 10 } },
        name: { name: 'name', in: 'query', description: 'Only objects whose name matches this regular expression (APISIX).', schema: { type: 'string' } },
        uri: { name: 'uri', in: 'query', description: 'Only objects whose uri, or one of whose uris, matches this regular expression (APISIX).', schema: { type: 'string' } },
        label: { name: 'label', in: 'query', description: 'Only objects that have a label with this key.', schema: { type: 'string' } },
        force: { name: 'force', in: 'query', description: 'Delete even when other objects still use this one (else 400).', schema: { type: 'boolean', default: false } },
        wait: {
          name: 'wait',
          in: 'query',
          description: '`served`: hold the answer (at most 5 s) until this instance serves the write\'s revision; the write is done either way, and the X-Portico-Served header says `true` or `timeout`.',
          schema: { type: 'string', enum: ['served'] },
        },
        'If-Match': {
          name: 'If-Match',
          in: 'header',
          description: 'Write only if the object\'s modifiedIndex is this one (optimistic concurrency); else 409. ETag-style quotes are taken: `"42"`.',
          schema: { type: 'string', pattern: '^(W/)?"?[0-9]{1,15}"?$' },
        },
      },
      headers: {
        'X-Etcd-Index': { description: 'The etcd revision the write produced.', schema: { type: 'integer', minimum: 1 } },
        'X-Portico-Served': {
          description: 'With ?wait=served: `true` once this instance serves the write, `timeout` when it did not within 5 s.',
          schema: { type: 'string', enum: ['true', 'timeout'] },
        },
      },
      securitySchemes: {
        apiKey: { type: 'apiKey', in: 'header', name: 'X-API-KEY', description: 'An admin key (reads and writes) or a viewer key (GET and HEAD only).' },
        apiKeyQuery: { type: 'apiKey', in: 'query', name: 'api_key', description: 'The same key as a query parameter, for clients that cannot set headers.' },
      },
    },
  };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

let cached: object | undefined;

/**
 * The Admin API's OpenAPI 3.1 document. Built on the first call and kept: the schemas do not change
 * while the process runs. Frozen, because every caller shares it.
 */
export function openApiDocument(): object {
  return (cached ??= deepFreeze(buildDocument()));
}
