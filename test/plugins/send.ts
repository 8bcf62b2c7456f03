/**
 * What the plugin tests share: requests and the suite's gateway + upstream.
 *
 * send / sendPath: node:http on a fresh connection, so a test controls every header (Host, an empty
 * value, repeated lines, OPTIONS) and the path as written, and sees the answer as sent (no redirect
 * following, repeated headers joined). fetchJson: fetch, for tests that read the gateway's JSON
 * answer or what the echo upstream saw.
 */
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders, type IncomingMessage, type RequestOptions, type ServerResponse } from 'node:http';
import { after, before } from 'node:test';
import { startGateway, type GatewayOptions, type GatewayProcess } from '../helpers/gateway.ts';
import { startUpstream, type TestUpstream } from '../helpers/upstream.ts';
import { waitUntil } from '../helpers/wait.ts';

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  ms: number;
}

export interface SendOptions {
  method?: string;
  /**
   * An object (a value list sends the header once per value), or header lines in order as
   * [name, value] pairs, repeated names included (a Host line is put first: node:http adds none
   * to a list).
   */
  headers?: Record<string, string | string[]> | [string, string][];
  body?: string;
  /** how the body is decoded; latin1 keeps every byte as one character. Default utf8. */
  encoding?: BufferEncoding;
}

export function send(url: string, opts: SendOptions = {}): Promise<Answer> {
  return exchange(url, new URL(url).host, opts);
}

/** To the gateway with the path as written: a URL would resolve `..` before sending. */
export function sendPath(gw: GatewayProcess, path: string, opts: SendOptions = {}): Promise<Answer> {
  return exchange({ host: '127.0.0.1', port: gw.port, path }, `127.0.0.1:${gw.port}`, opts);
}

function exchange(target: string | RequestOptions, host: string, opts: SendOptions): Promise<Answer> {
  const started = performance.now();
  const what = typeof target === 'string' ? target : target.path;
  const headers = Array.isArray(opts.headers) ? [['Host', host], ...opts.headers].flat() : opts.headers;
  const options: RequestOptions = { method: opts.method ?? 'GET', headers, agent: false, timeout: 10_000 };
  return new Promise((resolve, reject) => {
    const onResponse = (res: IncomingMessage) => {
      let body = '';
      res.setEncoding(opts.encoding ?? 'utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, ms: performance.now() - started }));
      res.on('error', reject);
    };
    const req = typeof target === 'string' ? request(target, options, onResponse) : request({ ...target, ...options }, onResponse);
    req.on('timeout', () => req.destroy(new Error(`no answer from ${what} in 10 s`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The gateway's JSON answer ({message}, {error_msg}) or the echo upstream's {method, url, headers}. */
export interface EchoJson {
  message?: string;
  error_msg?: string;
  method?: string;
  url?: string;
  headers?: Record<string, string>;
}

export interface JsonAnswer {
  status: number;
  headers: Headers;
  /** {} when the body is not JSON (asserted through status) */
  json: EchoJson;
}

export async function fetchJson(url: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<JsonAnswer> {
  const res = await fetch(url, { method: opts.method, headers: opts.headers, signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  let json: EchoJson = {};
  try {
    json = JSON.parse(text) as EchoJson;
  } catch {
    /* not JSON: asserted through status */
  }
  return { status: res.status, headers: res.headers, json };
}

/** A route factory for the plugin under test: `(id, conf)` gives route `id` at `/<id>` with `plugin: conf`, on the upstream at `upstreamAddress`. */
export function pluginRoute(plugin: string, upstreamAddress: string): (id: string, conf: unknown) => { id: string; uri: string; plugins: Record<string, unknown>; upstream: object } {
  const upstream = { nodes: { [upstreamAddress]: 1 } };
  return (id, conf) => ({ id, uri: `/${id}`, plugins: { [plugin]: conf }, upstream });
}

/** An invalid config of the plugin under test: the id of the route it goes on, the config, what its rejection reason must contain. */
export type InvalidConfig = readonly [id: string, conf: unknown, reason: string];

/** One route `/<id>` per invalid config, with `plugin` set to that config, on the upstream at `upstreamAddress`. */
export function invalidRoutes(plugin: string, upstreamAddress: string, invalid: readonly InvalidConfig[]): object[] {
  const route = pluginRoute(plugin, upstreamAddress);
  return invalid.map(([id, conf]) => route(id, conf));
}

/** Waits until /status rejects the route of each invalid config and checks its reason. */
export function expectRoutesRejected(gw: GatewayProcess, invalid: readonly InvalidConfig[]): Promise<void> {
  return expectRejected(gw, invalid.map(([id, , reason]) => ['routes', id, reason] as const));
}

/** A table-driven case's default path: its name as a slug ("Docs: set a header" → "/docs-set-a-header"). */
export const slug = (name: string) => '/' + name.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** One route per case (id `c<index>`, the case's uri or the slug of its name, its plugins) on the upstream at `upstreamAddress`. */
export function caseRoutes(cases: readonly { name: string; route: { uri?: string; plugins: Record<string, unknown> } }[], upstreamAddress: string): object[] {
  const upstream = { nodes: { [upstreamAddress]: 1 } };
  return cases.map((c, i) => ({ id: `c${i}`, uri: c.route.uri ?? slug(c.name), plugins: c.route.plugins, upstream }));
}

/** Waits until /status rejects each [kind, id] and checks that its reason contains the text. */
export async function expectRejected(gw: GatewayProcess, expected: readonly (readonly [string, string, string])[]): Promise<void> {
  const st = await waitUntil(async () => {
    const s = await gw.status();
    return expected.every(([kind, id]) => s.rejected.some((r) => r.kind === kind && r.id === id)) ? s : undefined;
  }, 5_000, 'the invalid objects to be rejected', 50);
  for (const [kind, id, reason] of expected) {
    const r = st.rejected.find((x) => x.kind === kind && x.id === id)!;
    assert.ok(r.reason.includes(reason), `${kind}/${id}: expected "${reason}" in: ${r.reason}`);
  }
}

/** The suite's upstream and gateway: set once the suite's `before` has run. */
export interface Rig {
  up: TestUpstream;
  gw: GatewayProcess;
}

/**
 * Starts an upstream, then a gateway on the options made from it (routes name `up.address`), in the
 * suite's `before`; stops both in its `after`. Call it in a describe; read `rig.up` and `rig.gw`
 * in hooks and tests. The upstream is the echo upstream unless a handler is given.
 */
export function gatewayWithUpstream(
  options: (up: TestUpstream) => GatewayOptions | Promise<GatewayOptions>,
  upstream: { name?: string; handler?: (req: IncomingMessage, res: ServerResponse) => void } = {},
): Rig {
  const rig = {} as Rig;
  before(async () => {
    rig.up = await startUpstream(upstream.name ?? 'up', upstream.handler);
    rig.gw = await startGateway(await options(rig.up));
  });
  after(async () => {
    await rig.gw?.cleanup();
    await rig.up?.close();
  });
  return rig;
}

/** The `http://[::1]:port` base of a gateway started with a `[::1]:0` listener too. */
export function ipv6Url(gw: GatewayProcess): string {
  const m = /http:\/\/\[::1\]:(\d+)/.exec(gw.output());
  assert.ok(m, `no IPv6 listener in: ${gw.output()}`);
  return `http://[::1]:${m[1]}`;
}
