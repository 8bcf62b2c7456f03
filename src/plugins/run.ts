import { isIP } from 'node:net';
import { log } from '../observability/log.ts';
import { isHeaderValue } from '../security/header-value.ts';
import type { ProxyRequest } from '../proxy/request.ts';
import type { PickRequest } from '../upstream/types.ts';
import { PluginChain, type ChainEntry } from './chain.ts';
import type { Consumer, ConsumerDirectory, PluginAnswer, PluginContext, RequestView, ResponseView, UpstreamRequest } from './types.ts';

/*
 * One request's run through its plugins: the PluginContext handlers see, and the phase runner.
 * Transport-independent: a transport builds a PluginRun from the request it parsed, asks it for
 * the request phases' verdict, applies its upstream edits to the request it sends, and runs the
 * response phases on the head it writes.
 */

/** Plugin failures since start (a handler that threw): shown in /status and /metrics. */
export const pluginFailures = new Map<string, number>();

function unmap(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Framing and connection headers are the transport's: a plugin cannot set them (a smuggling vector). */
const RESERVED = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade', 'proxy-connection']);

/** A header a plugin adds must be one: a token name, a value without CR, LF or NUL. */
function checkHeader(name: string, value: string): void {
  if (typeof name !== 'string' || !TOKEN.test(name)) throw new Error(`invalid header name ${JSON.stringify(name)}`);
  if (typeof value !== 'string' || !isHeaderValue(value)) throw new Error(`invalid value for header ${name}`);
}

/** A header list (name, value, ...) with case-insensitive edits. */
class HeaderList {
  constructor(readonly list: string[]) {}

  /** whether header i is named `lower` (lengths compared first: most names differ in length) */
  private matches(lower: string, i: number): boolean {
    const n = this.list[i]!;
    return n.length === lower.length && n.toLowerCase() === lower;
  }

  get(name: string): string | undefined {
    const lower = name.toLowerCase();
    let out: string | undefined;
    for (let i = 0; i < this.list.length; i += 2) {
      if (this.matches(lower, i)) out = out === undefined ? this.list[i + 1]! : out + ', ' + this.list[i + 1]!;
    }
    return out;
  }

  remove(name: string): void {
    const lower = name.toLowerCase();
    for (let i = this.list.length - 2; i >= 0; i -= 2) if (this.matches(lower, i)) this.list.splice(i, 2);
  }

  set(name: string, value: string, checked = false): void {
    if (!checked) checkHeader(name, value);
    const lower = name.toLowerCase();
    if (RESERVED.has(lower)) return;
    this.remove(lower);
    this.list.push(name, value);
  }

  add(name: string, value: string, checked = false): void {
    if (!checked) checkHeader(name, value);
    if (RESERVED.has(name.toLowerCase())) return;
    this.list.push(name, value);
  }
}

class Request implements RequestView, PickRequest {
  private args: URLSearchParams | undefined;
  private cookies: Map<string, string> | undefined;
  clientAddress: string;
  /** the consumer's name, for balancers that hash on it (set when the request is picked a node for) */
  consumerName: string | undefined = undefined;

  constructor(
    readonly method: string,
    readonly path: string,
    readonly query: string,
    readonly rawHeaders: readonly string[],
    readonly host: string,
    remoteAddr: string,
    readonly scheme: 'http' | 'https',
    readonly httpVersion: string,
  ) {
    this.clientAddress = unmap(remoteAddr);
  }

  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    let out: string | undefined;
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!;
      if (n.length === lower.length && n.toLowerCase() === lower) out = out === undefined ? raw[i + 1]! : out + ', ' + raw[i + 1]!;
    }
    return out;
  }

  arg(name: string): string | undefined {
    this.args ??= new URLSearchParams(this.query);
    return this.args.get(name) ?? undefined;
  }

  cookie(name: string): string | undefined {
    if (this.cookies === undefined) {
      this.cookies = new Map();
      const header = this.header('cookie');
      if (header !== undefined) {
        for (const part of header.split(';')) {
          const eq = part.indexOf('=');
          if (eq === -1) continue;
          const key = part.slice(0, eq).trim();
          if (key !== '' && !this.cookies.has(key)) this.cookies.set(key, part.slice(eq + 1).trim());
        }
      }
    }
    return this.cookies.get(name);
  }
}

/** The request sent upstream: edits are recorded and applied by the transport. */
class Upstream implements UpstreamRequest {
  uri: string;
  method: string;
  host: string | undefined = undefined;
  /** header edits in order: [op, name, value]; applied to the built header list */
  readonly edits: ['set' | 'add' | 'remove', string, string][] = [];

  constructor(
    uri: string,
    method: string,
    private readonly request: Request,
  ) {
    this.uri = uri;
    this.method = method;
  }

  setHeader(name: string, value: string): void {
    checkHeader(name, value);
    // the Host sent upstream is one value the transport places itself
    if (name.toLowerCase() === 'host') this.host = value;
    else this.edits.push(['set', name, value]);
  }
  addHeader(name: string, value: string): void {
    checkHeader(name, value);
    this.edits.push(['add', name, value]);
  }
  removeHeader(name: string): void {
    this.edits.push(['remove', name, '']);
  }
  header(name: string): string | undefined {
    const list = new HeaderList([...this.request.rawHeaders]);
    applyEdits(list, this.edits);
    return list.get(name);
  }
}

/** Applies recorded edits (checked when they were recorded). */
function applyEdits(list: HeaderList, edits: readonly ['set' | 'add' | 'remove', string, string][]): void {
  for (const [op, name, value] of edits) {
    if (op === 'set') list.set(name, value, true);
    else if (op === 'add') list.add(name, value, true);
    else list.remove(name);
  }
}

/** The response being sent, over the transport's own header list. */
class Response implements ResponseView {
  private readonly headers: HeaderList;
  constructor(
    public status: number,
    list: string[],
    readonly local: boolean,
  ) {
    this.headers = new HeaderList(list);
  }
  header(name: string): string | undefined {
    return this.headers.get(name);
  }
  setHeader(name: string, value: string): void {
    this.headers.set(name, value);
  }
  addHeader(name: string, value: string): void {
    this.headers.add(name, value);
  }
  removeHeader(name: string): void {
    this.headers.remove(name);
  }
}

type Verdict = PluginAnswer | undefined;

const REQUEST_PHASES = ['rewrite', 'access', 'before_proxy'] as const;

export class PluginRun implements PluginContext {
  readonly request: Request;
  readonly upstream: Upstream;
  readonly vars = new Map<string, unknown>();
  readonly startedAt = Date.now();
  consumer: Consumer | undefined = undefined;
  response: Response | undefined = undefined;
  private chain: PluginChain | undefined;
  private readonly proxyRequest: ProxyRequest;
  private logged = false;

  constructor(
    readonly routeId: string,
    readonly serviceId: string | undefined,
    private readonly global: PluginChain | undefined,
    chain: PluginChain | undefined,
    readonly consumers: ConsumerDirectory,
    method: string,
    request: ProxyRequest,
    rawHeaders: readonly string[],
    scheme: 'http' | 'https',
    httpVersion: string,
  ) {
    this.chain = chain;
    this.proxyRequest = request;
    this.request = new Request(method, request.path, request.query, rawHeaders, request.host, request.remoteAddr, scheme, httpVersion);
    this.upstream = new Upstream(request.forwardPath, method, this.request);
  }

  setClientAddress(address: string): void {
    if (isIP(address) === 0) throw new Error(`not an IP address: ${JSON.stringify(address)}`);
    this.request.clientAddress = address;
    // what routes matched on stays; what is sent upstream (X-Real-IP, X-Forwarded-For) follows
    this.proxyRequest.remoteAddr = address;
  }

  /**
   * rewrite → access → before_proxy, global rules first in each phase. An answer ends them. The
   * consumer an auth plugin identified in rewrite merges its plugins before access. Synchronous
   * while every handler is; a Promise from the first handler that returns one.
   */
  runRequestPhases(): Verdict | Promise<Verdict> {
    return this.continueFrom(0, 0, 0);
  }

  /** phase index, 0 = global chain / 1 = route chain, entry index */
  private continueFrom(phase: number, which: number, index: number): Verdict | Promise<Verdict> {
    for (; phase < REQUEST_PHASES.length; phase++, which = 0, index = 0) {
      const name = REQUEST_PHASES[phase]!;
      if (phase === 1 && which === 0 && index === 0 && this.consumer !== undefined) {
        const merged = (this.chain ?? PluginChain.EMPTY).forConsumer(this.consumer);
        this.chain = merged === PluginChain.EMPTY ? this.chain : merged;
      }
      for (; which < 2; which++, index = 0) {
        const chain = which === 0 ? this.global : this.chain;
        if (chain === undefined) continue;
        const entries = chain[name];
        for (; index < entries.length; index++) {
          const entry = entries[index]!;
          let result;
          try {
            result = entry.plugin[name]!(entry.conf, this);
          } catch (err) {
            return this.failed(entry, name, err);
          }
          if (result === undefined || result === null) continue;
          if (typeof (result as Promise<unknown>).then === 'function') {
            const [p, w, i] = [phase, which, index + 1];
            return (result as Promise<Verdict | void>).then(
              (answer) => (answer ? answer : this.continueFrom(p, w, i)),
              (err: unknown) => this.failed(entry, name, err),
            );
          }
          return result as PluginAnswer;
        }
      }
    }
    return undefined;
  }

  private failed(entry: ChainEntry, phase: string, err: unknown): PluginAnswer {
    const name = entry.plugin.name;
    pluginFailures.set(name, (pluginFailures.get(name) ?? 0) + 1);
    log.error({ plugin: name, phase, route: this.routeId, err: err instanceof Error ? err.message : String(err) }, 'plugin failed; this request is answered 500');
    return { status: 500, body: { error_msg: `500 Internal Server Error: plugin ${name} failed` } };
  }

  /**
   * The header list upstreamHeaders built (Host last), with the plugins' edits and the consumer's
   * name applied. Host stays last: plugins set it only through `upstream.host`.
   */
  applyUpstreamEdits(headers: string[]): void {
    const host = headers.pop()!;
    headers.pop();
    const list = new HeaderList(headers);
    applyEdits(list, this.upstream.edits);
    // APISIX tells the upstream who the consumer is (and its labels.custom_id, when it has one)
    if (this.consumer !== undefined) {
      // a username is a token (its schema); labels are header-safe strings of the config
      list.set('X-Consumer-Username', this.consumer.username, true);
      const customId = this.consumer.labels?.custom_id;
      if (customId !== undefined) list.set('X-Consumer-Custom-ID', customId);
    }
    headers.push('Host', this.upstream.host ?? host);
  }

  /** Whether the response phases have anything to do (a transport may skip building views). */
  get hasResponsePhases(): boolean {
    return (this.global?.header_filter.length ?? 0) + (this.chain?.header_filter.length ?? 0) > 0 || this.hasBodyFilter;
  }

  get hasBodyFilter(): boolean {
    return (this.global?.body_filter.length ?? 0) + (this.chain?.body_filter.length ?? 0) > 0;
  }

  /** header_filter on a response head: `headers` (name, value, ...) is edited in place; returns the status. */
  runHeaderFilter(status: number, headers: string[], local: boolean): number {
    const response = (this.response = new Response(status, headers, local));
    for (const chain of [this.global, this.chain]) {
      if (chain === undefined) continue;
      for (const entry of chain.header_filter) {
        try {
          entry.plugin.header_filter!(entry.conf, this);
        } catch (err) {
          // the head is being written: the failure is counted, the response goes on as it is
          pluginFailures.set(entry.plugin.name, (pluginFailures.get(entry.plugin.name) ?? 0) + 1);
          log.error({ plugin: entry.plugin.name, phase: 'header_filter', route: this.routeId, err: (err as Error)?.message }, 'plugin failed');
        }
      }
    }
    return response.status;
  }

  /** body_filter on one chunk of the response body. */
  runBodyFilter(chunk: Buffer, last: boolean): Buffer {
    let out = chunk;
    for (const chain of [this.global, this.chain]) {
      if (chain === undefined) continue;
      for (const entry of chain.body_filter) {
        try {
          out = entry.plugin.body_filter!(entry.conf, this, out, last) ?? out;
        } catch (err) {
          pluginFailures.set(entry.plugin.name, (pluginFailures.get(entry.plugin.name) ?? 0) + 1);
          log.error({ plugin: entry.plugin.name, phase: 'body_filter', route: this.routeId, err: (err as Error)?.message }, 'plugin failed');
        }
      }
    }
    return out;
  }

  /** The log phase, once: the response was sent, or the client left. */
  runLog(): void {
    if (this.logged) return;
    this.logged = true;
    for (const chain of [this.global, this.chain]) {
      if (chain === undefined) continue;
      for (const entry of chain.log) {
        try {
          entry.plugin.log!(entry.conf, this);
        } catch (err) {
          pluginFailures.set(entry.plugin.name, (pluginFailures.get(entry.plugin.name) ?? 0) + 1);
          log.error({ plugin: entry.plugin.name, phase: 'log', route: this.routeId, err: (err as Error)?.message }, 'plugin failed');
        }
      }
    }
  }
}

/** A plugin's answer as status, header list and body bytes. */
function answerParts(answer: PluginAnswer): { status: number; headers: string[]; body: Buffer } {
  const headers: string[] = [];
  let body: Buffer;
  let type: string | undefined;
  if (answer.body === undefined) body = Buffer.alloc(0);
  else if (typeof answer.body === 'string') {
    body = Buffer.from(answer.body);
    type = 'text/plain; charset=utf-8';
  } else if (Buffer.isBuffer(answer.body)) body = answer.body;
  else {
    body = Buffer.from(JSON.stringify(answer.body) + '\n');
    type = 'application/json';
  }
  let hasType = false;
  for (const [name, value] of Object.entries(answer.headers ?? {})) {
    const lower = name.toLowerCase();
    if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'connection') continue;
    if (lower === 'content-type') hasType = true;
    headers.push(name, String(value));
  }
  if (!hasType && type !== undefined && body.length > 0) headers.push('Content-Type', type);
  return { status: answer.status, headers, body };
}

/**
 * The request as a balancer that reads it (chash) sees it: the plugins' view when the route has
 * plugins (the client address real-ip set, the consumer an auth plugin found), else a new one.
 */
export function pickRequestOf(run: PluginRun | undefined, method: string, request: ProxyRequest, rawHeaders: readonly string[], scheme: 'http' | 'https', httpVersion: string): PickRequest {
  if (run !== undefined) {
    run.request.consumerName = run.consumer?.username;
    return run.request;
  }
  return new Request(method, request.path, request.query, rawHeaders, request.host, request.remoteAddr, scheme, httpVersion);
}

/**
 * A plugin's own answer after the response phases: header_filter sees it with its Content-Length
 * (compression decides on it), body_filter gets the whole body as one last chunk. The returned
 * headers hold no Content-Length: the transport writes the length of the body it sends.
 */
export function localAnswer(run: PluginRun, answer: PluginAnswer): { status: number; headers: string[]; body: Buffer } {
  const parts = answerParts(answer);
  if (!run.hasResponsePhases) return parts;
  let { headers, body } = parts;
  headers.push('Content-Length', String(body.length));
  const status = run.runHeaderFilter(parts.status, headers, true);
  if (run.hasBodyFilter) body = run.runBodyFilter(body, true);
  headers = headers.filter((_, i, all) => (i % 2 === 0 ? all[i]! : all[i - 1]!).toLowerCase() !== 'content-length');
  return { status, headers, body };
}
