import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';

import {
  StreamRouteSchema,
  streamRouteProblem,
  streamUpstreamForCompile,
  type StreamRouteConfig,
} from '../../src/config/schema/stream-route.ts';
import { compileUpstream } from '../../src/runtime/upstream.ts';

// the validator's ajv settings (src/config/validate.ts)
const ajv = new Ajv({ allErrors: true, strict: false, useDefaults: false, verbose: true });
ajv.addFormat('header-value', { type: 'string', validate: () => true });
const validate = ajv.compile(StreamRouteSchema);

/** schema then semantic check, as the store would run them: undefined when accepted */
function verdict(value: unknown): string | undefined {
  if (!validate(value)) return `schema: ${validate.errors!.map((e) => `${e.instancePath} ${e.message}`).join('; ')}`;
  return streamRouteProblem(value as StreamRouteConfig);
}

const upstream = { type: 'roundrobin', nodes: { '127.0.0.1:1995': 1 } };

describe('stream_route schema (APISIX schema_def.lua stream_route)', () => {
  const accepted: [string, unknown][] = [
    ['upstream only (t/stream-node/sanity.t)', { upstream }],
    ['remote_addr IP', { remote_addr: '127.0.0.1', upstream }],
    ['remote_addr CIDR (sanity.t TEST 11)', { remote_addr: '127.0.0.1/26', upstream_id: 1 }],
    ['server_addr + server_port', { server_addr: '127.0.0.1', server_port: 1995, upstream }],
    ['IPv6 CIDR', { remote_addr: '::1/128', upstream }],
    ['sni exact', { sni: 'a.test.com', upstream }],
    ['sni wildcard', { sni: '*.test.com', upstream }],
    ['sni catch-all * (sni.t TEST 14)', { sni: '*', upstream }],
    ['service_id', { service_id: 's1' }],
    ['meta fields', { id: 'r1', name: 'n', desc: 'd', labels: { a: 'b' }, create_time: 1, update_time: 2, upstream }],
    ['empty plugins', { plugins: {}, upstream }],
    ['scheme tcp', { upstream: { ...upstream, scheme: 'tcp' } }],
    ['scheme udp', { upstream: { ...upstream, scheme: 'udp' } }],
    ['upstream pass_host node (sanity.t TEST 14: ignored in stream)', { upstream: { ...upstream, pass_host: 'node' } }],
  ];
  for (const [name, value] of accepted) {
    it(`accepts ${name}`, () => assert.equal(verdict(value), undefined));
  }

  const rejected: [string, unknown, RegExp][] = [
    ['a bad CIDR (sanity.t TEST 13)', { remote_addr: ':/8', upstream }, /^\/remote_addr: invalid IP address/],
    ['a bad server_addr', { server_addr: '127.0.0.300', upstream }, /^\/server_addr: invalid IP address/],
    ['a CIDR prefix too long', { remote_addr: '10.0.0.0/33', upstream }, /^\/remote_addr: invalid CIDR prefix/],
    ['server_port 0', { server_port: 0, upstream }, /^schema: \/server_port/],
    ['server_port 65536', { server_port: 65536, upstream }, /^schema: \/server_port/],
    ['an sni with a space', { sni: 'a b.com', upstream }, /^schema: \/sni/],
    ['an unknown field', { uri: '/x', upstream }, /^schema: .*additional properties/],
    ['no upstream at all', { remote_addr: '127.0.0.1' }, /must have one of 'upstream', 'upstream_id' or 'service_id'/],
    ['upstream and upstream_id', { upstream, upstream_id: 1 }, /only one of 'upstream' and 'upstream_id'/],
    ['a stream plugin', { plugins: { 'ip-restriction': { whitelist: ['127.0.0.1'] } }, upstream }, /^\/plugins: stream route plugins are not supported.*'ip-restriction'/],
    ['an xRPC protocol', { protocol: { name: 'redis' }, upstream }, /^\/protocol: xRPC protocols \('redis'\) are not supported/],
    ['a protocol without name', { protocol: {}, upstream }, /^schema: \/protocol/],
    ['upstream scheme tls', { upstream: { ...upstream, scheme: 'tls' } }, /^\/upstream\/scheme: 'tls'/],
    ['upstream scheme https', { upstream: { ...upstream, scheme: 'https' } }, /^\/upstream\/scheme: 'https' does not apply/],
    ['upstream scheme grpc', { upstream: { ...upstream, scheme: 'grpc' } }, /^schema: \/upstream\/scheme/],
  ];
  for (const [name, value, reason] of rejected) {
    it(`rejects ${name}`, () => assert.match(verdict(value) ?? 'accepted', reason));
  }

  it('hands compileUpstream an upstream it takes (the L4 scheme dropped)', () => {
    const u = streamUpstreamForCompile({ ...upstream, scheme: 'tcp', timeout: { connect: 1 } });
    assert.equal('scheme' in u, false);
    const target = compileUpstream('stream_routes/1', u);
    assert.deepEqual(target.nodes.map((n) => n.key), ['127.0.0.1:1995']);
    assert.equal(target.timeout.connect, 1000);
  });
});
