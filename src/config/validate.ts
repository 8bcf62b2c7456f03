import type { ErrorObject, ValidateFunction } from 'ajv';
import type { Kind } from './changeset.ts';
import { ConsumerSchema, type ConsumerConfig } from './schema/consumer.ts';
import { GlobalRuleSchema, PluginConfigSchema, type GlobalRuleConfig, type PluginConfigConfig } from './schema/plugin-config.ts';
import { RouteSchema, type RouteConfig } from './schema/route.ts';
import { ServiceSchema, type ServiceConfig } from './schema/service.ts';
import { UpstreamSchema, type UpstreamConfig } from './schema/upstream.ts';
import { SslSchema, type SslConfig } from './schema/ssl.ts';
import { StreamRouteSchema, streamRouteProblem, streamUpstreamForCompile, type StreamRouteConfig } from './schema/stream-route.ts';
import { checkSsl } from '../server/tls/certificate.ts';
import { storedKeyPem } from './data-encryption.ts';
import { log } from '../observability/log.ts';
import { balancerTypes } from '../upstream/balancer/index.ts';
import { ErrorCode } from '../errors.ts';
import type { RouterMode } from '../router/types.ts';
import { compileProblem, ROUTER_MODES } from '../runtime/compile.ts';
import { questionMarkProblem } from '../router/uri-pattern.ts';
import { headerValueProblem, isHeaderValue } from '../security/header-value.ts';
import { checkValueLimits } from '../security/limits.ts';
import { Host } from './schema/common.ts';
import { pluginsProblem } from '../plugins/validate.ts';
import { Validators, type ValidatorGroup } from './precompiled.ts';

export type ObjectValue = RouteConfig | ServiceConfig | UpstreamConfig | ConsumerConfig | PluginConfigConfig | GlobalRuleConfig | SslConfig | StreamRouteConfig;

/** Why an object was not accepted. `reason` names the object, the field path and the rule. */
export interface Rejection {
  kind: Kind;
  id: string;
  code: ErrorCode;
  reason: string;
}

const isHost = new RegExp(Host.pattern!);

/** Each kind's schema: the validators below and the Admin API's OpenAPI document (src/admin/openapi.ts) */
export const KIND_SCHEMAS = {
  routes: RouteSchema,
  services: ServiceSchema,
  upstreams: UpstreamSchema,
  consumers: ConsumerSchema,
  plugin_configs: PluginConfigSchema,
  global_rules: GlobalRuleSchema,
  ssls: SslSchema,
  stream_routes: StreamRouteSchema,
} as const;

/**
 * The kinds' validators: compiled by the build (config/precompiled.ts), or here when the first object
 * of a kind arrives (not at every start).
 *
 * verbose: format errors carry the offending value, so the reason can say what is wrong with it.
 * The schemas are ours and checked against the meta-schema by the tests (test/config/schemas.test.ts),
 * not at every start: compiling the route and upstream validators took 98-108 ms with that check and
 * ajv's optimizing pass, 51-69 ms without both (this machine); validating 50,000 routes then takes
 * 2-7 ms longer in all. `format: 'header-value'` on any schema field sends it through the one
 * header-value check.
 */
export const KIND_VALIDATORS: ValidatorGroup = {
  name: 'kinds',
  options: { allErrors: true, strict: false, useDefaults: false, verbose: true, validateSchema: false, code: { optimize: false } },
  schemas: KIND_SCHEMAS,
  formats: { 'header-value': { type: 'string', validate: isHeaderValue } },
};
const kindValidators = new Validators(KIND_VALIDATORS);
function validatorOf(kind: Kind): ValidateFunction {
  return kindValidators.get(kind);
}

/**
 * Picks the one ajv error a user can act on. Unions (nodes as map or array) make ajv report every
 * branch; the branch that matches the value's JSON type is the one the user meant.
 */
function pickError(errors: ErrorObject[]): ErrorObject {
  const concrete = errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf');
  const notTypeMismatch = concrete.filter((e) => {
    if (e.keyword !== 'type') return true;
    // a type error on a path where another error also sits is the other union branch: skip it
    return !concrete.some((o) => o !== e && o.instancePath.startsWith(e.instancePath) && o.keyword !== 'type');
  });
  const sorted = (notTypeMismatch.length ? notTypeMismatch : concrete.length ? concrete : errors).slice();
  // prefer errors on the deepest path: they say most precisely what is wrong
  sorted.sort((a, b) => b.instancePath.split('/').length - a.instancePath.split('/').length);
  return sorted[0]!;
}

function describe(e: ErrorObject): string {
  const path = e.instancePath || '/';
  if (e.keyword === 'additionalProperties') {
    return `${path}: unknown field '${(e.params as { additionalProperty: string }).additionalProperty}'`;
  }
  if (e.keyword === 'format' && (e.params as { format: string }).format === 'header-value' && typeof e.data === 'string') {
    return `${path}: ${headerValueProblem(e.data)}`;
  }
  if (e.keyword === 'enum' || e.keyword === 'const') {
    const allowed = (e.params as { allowedValues?: unknown[]; allowedValue?: unknown }).allowedValues ??
      [(e.params as { allowedValue?: unknown }).allowedValue];
    return `${path}: must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${path}: ${e.message ?? e.keyword}`;
}

function exclusive(obj: Record<string, unknown>, a: string, b: string): string | undefined {
  return obj[a] !== undefined && obj[b] !== undefined ? `/: only one of '${a}' and '${b}' may be set` : undefined;
}

function checkUpstream(u: UpstreamConfig, at: string): string | undefined {
  const type = u.type ?? 'roundrobin';
  if (!balancerTypes().includes(type)) {
    return `${at}/type: balancer '${type}' is not supported (supported: ${balancerTypes().join(', ')})`;
  }
  if (u.pass_host === 'rewrite' && !u.upstream_host) return `${at}/upstream_host: required when pass_host is 'rewrite'`;
  // APISIX: the nodes are listed, or found by service discovery
  if (u.discovery_type !== undefined && u.service_name === undefined) return `${at}/service_name: required with discovery_type '${u.discovery_type}'`;
  if (u.discovery_type === undefined && u.service_name !== undefined) return `${at}/discovery_type: required with service_name`;
  if (u.discovery_type === undefined && u.nodes === undefined) return `${at}/nodes: required (or discovery_type and service_name)`;
  // APISIX's host_def: the value becomes the Host header, so it must be a host[:port]
  if (u.upstream_host !== undefined && !isHost.test(u.upstream_host)) {
    return `${at}/upstream_host: must be a host name or address, optionally with :port`;
  }
  return undefined;
}

/**
 * A `?` in a uri that no request could match as meant (radixtree gives `?` a meaning only in
 * parameter names and in the part of a parameter uri its pattern checks: see uri-pattern.ts).
 * Checked here rather than left to the router's own check so the reason names `/uri` or `/uris/N`
 * as the config spells it; without a mode, the uri must work in every mode.
 */
function uriProblem(r: RouteConfig, mode: RouterMode | undefined): string | undefined {
  const uris = r.uris ?? (r.uri === undefined ? [] : [r.uri]);
  for (const [i, uri] of uris.entries()) {
    for (const m of mode ? [mode] : ROUTER_MODES) {
      const problem = questionMarkProblem(uri, m);
      if (problem) return `${r.uris ? `/uris/${i}` : '/uri'}: ${problem}`;
    }
  }
  return undefined;
}

/** Per-object semantic checks a JSON schema cannot express; `mode`: the gateway's router mode, if known. */
const semanticChecks: Record<Kind, (v: never, mode: RouterMode | undefined) => string | undefined> = {
  routes: (r: RouteConfig, mode: RouterMode | undefined) => {
    const o = r as Record<string, unknown>;
    const both =
      exclusive(o, 'uri', 'uris') ?? exclusive(o, 'host', 'hosts') ?? exclusive(o, 'remote_addr', 'remote_addrs') ??
      exclusive(o, 'upstream', 'upstream_id');
    if (both) return both;
    if (r.uri === undefined && r.uris === undefined) return `/: must have 'uri' or 'uris'`;
    if (!r.upstream && r.upstream_id === undefined && r.service_id === undefined && !r.plugins && r.plugin_config_id === undefined) {
      return `/: must have one of 'upstream', 'upstream_id', 'service_id', 'plugins' or 'plugin_config_id'`;
    }
    return uriProblem(r, mode) ?? (r.upstream ? checkUpstream(r.upstream, '/upstream') : undefined);
  },
  services: (s: ServiceConfig) => {
    const both = exclusive(s as Record<string, unknown>, 'upstream', 'upstream_id');
    if (both) return both;
    return s.upstream ? checkUpstream(s.upstream, '/upstream') : undefined;
  },
  upstreams: (u: UpstreamConfig) => checkUpstream(u, ''),
  consumers: () => undefined,
  plugin_configs: () => undefined,
  global_rules: () => undefined,
  ssls: (s: SslConfig) => {
    const check = checkSsl(s, storedKeyPem);
    // APISIX warns (and serves) when an SNI is not among the certificate's names, or it expired
    if (check.problem === undefined && check.warnings.length > 0) {
      log.warn({ kind: 'ssls', id: s.id, warnings: check.warnings }, 'ssl object accepted with warnings');
    }
    return check.problem;
  },
  stream_routes: (r: StreamRouteConfig) => streamRouteProblem(r) ?? (r.upstream ? checkUpstream(streamUpstreamForCompile(r.upstream), '/upstream') : undefined),
};

/**
 * Validates one object: size and depth limits, JSON schema, semantic checks, then the runtime's own
 * compile (what the runtime cannot build is never valid). Returns the typed value, or a rejection
 * whose reason reads `routes/7: /upstream/nodes: must NOT have fewer than 1 properties`.
 *
 * `mode`: the gateway's router mode; without one the object must compile in every mode.
 */
export function validateObject(kind: Kind, id: string, value: unknown, mode?: RouterMode): Verdict {
  // first, and without recursion: everything after this (ajv, the vars compiler) recurses
  const over = value !== null && typeof value === 'object' ? checkValueLimits(value) : undefined;
  if (over) return { ok: false, rejection: { kind, id, code: ErrorCode.LIMIT, reason: `${kind}/${id}: ${over}` } };
  return validateBounded(kind, id, value, mode);
}

export type Verdict = { ok: true; value: ObjectValue } | { ok: false; rejection: Rejection };

/**
 * validateObject for a value already known to be within the limits (the store checks them first,
 * before it serializes values): everything but the limits.
 */
export function validateBounded(kind: Kind, id: string, value: unknown, mode?: RouterMode): Verdict {
  const reject = (code: ErrorCode, detail: string) => ({
    ok: false as const,
    rejection: { kind, id, code, reason: `${kind}/${id}: ${detail}` },
  });
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return reject(ErrorCode.SCHEMA, '/: must be an object');
  }
  const validate = validatorOf(kind);
  if (!validate(value)) return reject(ErrorCode.SCHEMA, describe(pickError(validate.errors ?? [])));
  // a consumer's id is its username (the etcd key ends with it)
  const declared = kind === 'consumers' ? (value as { username?: unknown }).username : (value as { id?: unknown }).id;
  if (declared !== undefined && String(declared) !== id) {
    return reject(ErrorCode.SCHEMA, `/${kind === 'consumers' ? 'username' : 'id'}: '${String(declared)}' does not match the object's key id '${id}'`);
  }
  // routes, services, consumers and rule sets may carry plugins: known, enabled, schema-valid, compiling
  // (a stream route's plugins: streamRouteProblem)
  const pluginMap = (value as { plugins?: Record<string, unknown> }).plugins;
  const plugins = kind === 'upstreams' || kind === 'ssls' || kind === 'stream_routes' ? undefined : pluginsProblem(pluginMap, { kind, id }, kind === 'consumers');
  if (plugins?.schema) return reject(ErrorCode.SCHEMA, plugins.reason);
  const problem = semanticChecks[kind](value as never, mode) ?? plugins?.reason ?? compileProblem(kind, id, value, mode);
  if (problem) return reject(ErrorCode.SEMANTIC, problem);
  return { ok: true, value: value as ObjectValue };
}
