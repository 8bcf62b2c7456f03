/**
 * The APISIX v3-compatible Admin API: `/apisix/admin/<kind>[/<id>[/<field path>]]` on its own
 * listener(s), with APISIX's bodies (`{key, value, createdIndex, modifiedIndex}`,
 * `{total, list}`, `{"error_msg": ...}`), so APISIX tooling (curl recipes, the dashboard's calls,
 * ADC-style scripts) keeps working.
 *
 * Request path: client address (allow) -> key and role (auth.ts) -> route -> bounded body read ->
 * JSON parse (size, nesting and content type checked first) -> resources.ts. With
 * `config.source: etcd` etcd is the source of truth for reads and writes; with `file` the routes file
 * is, so reads come from the snapshot in force and writes are refused (405).
 *
 * `?wait=served` holds the answer to a write until this instance serves the write's revision (at
 * most WAIT_SERVED_MS); the write itself is done either way, so a timeout is reported in a header,
 * not as an error.
 */
import { configAt, diff, history, HistoryError, rollback, type HistoryRefusal } from './history.ts';
import { openApiDocument } from './openapi.ts';
import { applyRequest } from './apply.ts';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isKind, type Kind } from '../config/changeset.ts';
import type { Snapshot } from '../config/snapshot.ts';
import type { RouterMode } from '../router/types.ts';
import { OBJECT_LIMITS } from '../security/limits.ts';
import type { EtcdClient } from '../sources/etcd/client.ts';
import { AdminAuth, type AdminActor, type AdminKey } from './auth.ts';
import { AdminError, EtcdResources, SnapshotReader, type AdminResult, type ListQuery, type WriteContext } from './resources.ts';

export interface AdminServerOptions {
  keys: AdminKey[];
  /** client addresses / CIDRs allowed (APISIX `allow_admin`); empty: every address */
  allow: string[];
  source: 'etcd' | 'file';
  /** required with source etcd */
  etcd?: EtcdClient;
  /** etcd key prefix, e.g. `/apisix` */
  prefix: string;
  routerMode?: RouterMode;
  /** the configuration this instance serves */
  snapshot: () => Snapshot;
  /** the source revision this instance serves (for `?wait=served`) */
  servedRevision: () => number;
  /** request body limit in bytes (default 1 MiB); larger bodies get 413 */
  maxBodyBytes?: number;
  /** the body limit of POST /portico/admin/apply (a whole config; default 32 MiB) */
  maxApplyBytes?: number;
  /** etcd's --max-txn-ops: apply and rollback are one txn each and are refused above it (default 128) */
  maxTxnOps?: number;
}

export interface AdminServer {
  /**
   * Answers one request, authenticated like every other: the status listener passes the dashboard's
   * admin calls here (same origin for the page, same keys and allow list).
   */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Start one more listener; resolves with the port bound (useful with port 0). */
  listen(host: string, port: number): Promise<number>;
  close(): Promise<void>;
}

export const ADMIN_PATH = '/apisix/admin/';
/** Portico's own admin endpoints (history, config at a revision, diff, rollback) */
export const PORTICO_ADMIN_PATH = '/portico/admin/';
/** how a refused history operation answers */
const HISTORY_STATUS: Record<HistoryRefusal, number> = { compacted: 410, future: 400, conflict: 409, invalid: 400, too_large: 413, timeout: 504 };
const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_MAX_APPLY_BYTES = 32 * 1024 * 1024;
/** bound of `?wait=served` */
export const WAIT_SERVED_MS = 5000;
const WAIT_POLL_MS = 20;

const FILE_SOURCE_MESSAGE = 'config.source is file: the routes file is the source of truth; edit it instead';

/**
 * Content types a JSON body may come with. `application/x-www-form-urlencoded` is what `curl -d`
 * sends by default, and every APISIX doc example is such a curl: refusing it would break them. The
 * body must parse as JSON whatever the label says.
 */
function acceptedContentType(header: string | undefined): boolean {
  if (header === undefined || header === '') return true;
  const type = header.split(';')[0]!.trim().toLowerCase();
  return type === 'application/json' || type.endsWith('+json') || type === 'application/x-www-form-urlencoded';
}

/**
 * Whether JSON text nests objects/arrays deeper than `max`, scanned without recursion before
 * JSON.parse, so a `[[[[...` body costs one pass and never a deep structure in memory.
 */
export function jsonNestingOver(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

interface Route {
  kind: Kind;
  id?: string;
  /** field path below the object (PATCH /routes/1/methods) */
  subPath: string[];
}

class BodyTooLarge extends Error {}

export function createAdminServer(options: AdminServerOptions): AdminServer {
  if (options.source === 'etcd' && options.etcd === undefined) throw new Error('admin: source etcd needs an etcd client');
  const prefix = options.prefix.replace(/\/+$/, '');
  const auth = new AdminAuth(options.keys, options.allow);
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const etcd = options.source === 'etcd' ? new EtcdResources({ etcd: options.etcd!, prefix, routerMode: options.routerMode }) : undefined;
  const fileReader = new SnapshotReader(options.snapshot, prefix);
  const servers = new Set<Server>();

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.headersSent) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  };

  const readBody = (req: IncomingMessage, limit = maxBodyBytes): Promise<string> =>
    new Promise((resolve, reject) => {
      const maxBodyBytes = limit;
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxBodyBytes) {
        reject(new BodyTooLarge());
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBodyBytes) {
          req.removeAllListeners('data');
          req.resume();
          reject(new BodyTooLarge());
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });

  const parseBody = async (req: IncomingMessage, limit = maxBodyBytes): Promise<unknown> => {
    const contentType = req.headers['content-type'];
    if (!acceptedContentType(contentType)) {
      req.resume();
      throw new AdminError(415, `unsupported content type '${contentType}': send the body as application/json`);
    }
    const text = await readBody(req, limit);
    if (text.trim() === '') throw new AdminError(400, 'missing configurations: the request body is empty');
    if (jsonNestingOver(text, OBJECT_LIMITS.maxDepth)) {
      throw new AdminError(400, `invalid request body: JSON nested deeper than ${OBJECT_LIMITS.maxDepth} levels`);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new AdminError(400, `invalid request body: ${(err as Error).message}`);
    }
  };

  const route = (url: URL): Route | AdminResult => {
    if (!url.pathname.startsWith(ADMIN_PATH)) return { status: 404, body: { error_msg: 'not found' } };
    const segments = url.pathname.slice(ADMIN_PATH.length).split('/');
    // a trailing slash (`/routes/`) names the collection, as in APISIX
    if (segments.length > 1 && segments[segments.length - 1] === '') segments.pop();
    const [kindText, id, ...subPath] = segments;
    if (kindText === undefined || !isKind(kindText)) {
      return { status: 404, body: { error_msg: `Unsupported resource type: ${kindText ?? ''}` } };
    }
    if (id === '' || subPath.some((s) => s === '')) return { status: 400, body: { error_msg: `invalid path ${url.pathname}` } };
    let decoded: string[];
    try {
      decoded = subPath.map((s) => decodeURIComponent(s));
    } catch {
      return { status: 400, body: { error_msg: `invalid path ${url.pathname}` } };
    }
    return { kind: kindText, id, subPath: decoded };
  };

  /** Waits until this instance serves `revision`; false when WAIT_SERVED_MS passed first. */
  const waitServed = async (revision: number): Promise<boolean> => {
    const deadline = Date.now() + WAIT_SERVED_MS;
    while (options.servedRevision() < revision) {
      if (Date.now() >= deadline) return false;
      await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
    }
    return true;
  };

  const ifMatchOf = (req: IncomingMessage): number | undefined => {
    const raw = req.headers['if-match'];
    if (raw === undefined) return undefined;
    // ETag-style quotes are tolerated: `If-Match: "42"`
    const text = raw.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
    if (!/^\d{1,15}$/.test(text)) throw new AdminError(400, `If-Match: '${raw}' is not a modifiedIndex (a non-negative integer)`);
    return Number(text);
  };

  const dispatch = async (req: IncomingMessage, url: URL, r: Route, actor: AdminActor): Promise<AdminResult> => {
    const method = req.method ?? 'GET';
    const query = Object.fromEntries(url.searchParams) as ListQuery & Record<string, string>;
    if (method === 'GET' || method === 'HEAD') {
      if (r.subPath.length > 0) return { status: 404, body: { error_msg: 'not found' } };
      if (etcd) return r.id === undefined ? etcd.list(r.kind, query) : etcd.get(r.kind, r.id);
      return r.id === undefined ? fileReader.list(r.kind, query) : fileReader.get(r.kind, r.id);
    }
    if (!['PUT', 'POST', 'PATCH', 'DELETE'].includes(method)) {
      return { status: 405, body: { error_msg: `method ${method} is not allowed` } };
    }
    if (!etcd) {
      req.resume();
      return { status: 405, body: { error_msg: FILE_SOURCE_MESSAGE } };
    }
    if (r.id !== undefined) etcd.checkId(r.kind, r.id);
    const ctx: WriteContext = { actor, ifMatch: ifMatchOf(req), force: url.searchParams.get('force') === 'true' };
    if (method !== 'PATCH' && r.subPath.length > 0) return { status: 404, body: { error_msg: 'not found' } };
    switch (method) {
      case 'PUT':
        return etcd.replace(r.kind, r.id, await parseBody(req), ctx);
      case 'POST':
        if (r.id !== undefined) return { status: 405, body: { error_msg: `POST creates an object with a generated id: POST ${ADMIN_PATH}${r.kind}` } };
        return etcd.create(r.kind, await parseBody(req), ctx);
      case 'PATCH':
        if (r.id === undefined) return { status: 400, body: { error_msg: `missing ${r.kind} id` } };
        return etcd.patch(r.kind, r.id, await parseBody(req), r.subPath, ctx);
      default:
        if (r.id === undefined) return { status: 400, body: { error_msg: `missing ${r.kind} id` } };
        return etcd.remove(r.kind, r.id, ctx);
    }
  };

  /** Portico's own endpoints: config history, the config at a revision, diff, rollback (etcd source only). */
  const porticoEndpoint = async (req: IncomingMessage, url: URL, actor: AdminActor): Promise<AdminResult> => {
    const name = url.pathname.slice(PORTICO_ADMIN_PATH.length);
    const method = req.method ?? 'GET';
    // who the key is (the dashboard shows a viewer the history read-only), on either source
    if (name === 'whoami' && (method === 'GET' || method === 'HEAD')) return { status: 200, body: { name: actor.name, role: actor.role } };
    const client = options.etcd;
    if (client === undefined || options.source !== 'etcd') {
      req.resume();
      return { status: 405, body: { error_msg: 'config history needs config.source etcd (a routes file has no revisions to go back to)' } };
    }
    const revisionParam = (key: string): number => {
      const text = url.searchParams.get(key);
      if (text === null || !/^\d{1,15}$/.test(text)) throw new AdminError(400, `?${key}=: a revision (a positive integer) is required`);
      return Number(text);
    };
    if (method === 'GET' && name === 'history') {
      const kind = url.searchParams.get('kind') ?? undefined;
      if (kind !== undefined && !isKind(kind)) throw new AdminError(400, `?kind=: '${kind}' is not a kind`);
      const limitText = url.searchParams.get('limit');
      const limit = limitText === null ? undefined : Number(limitText);
      if (limit !== undefined && !(Number.isInteger(limit) && limit >= 1 && limit <= 10_000)) throw new AdminError(400, '?limit=: 1 to 10000');
      return { status: 200, body: await history(client, options.prefix, { kind, id: url.searchParams.get('id') ?? undefined, limit }) };
    }
    if (method === 'GET' && name === 'config') {
      // no ?revision: the config in etcd now
      const revision = url.searchParams.has('revision') ? revisionParam('revision') : (await client.range(`${options.prefix}/`, { countOnly: true })).header.revision;
      return { status: 200, body: { revision, objects: await configAt(client, options.prefix, revision) } };
    }
    if (method === 'GET' && name === 'diff') {
      return { status: 200, body: await diff(client, options.prefix, revisionParam('from'), revisionParam('to')) };
    }
    if (method === 'POST' && name === 'rollback') {
      const body = (await parseBody(req)) as { revision?: unknown };
      if (typeof body !== 'object' || body === null || !Number.isInteger(body.revision) || (body.revision as number) < 1) {
        throw new AdminError(400, 'body: {"revision": <the revision to go back to>} is required');
      }
      const result = await rollback(client, options.prefix, body.revision as number, { by: { key_name: actor.name, role: actor.role }, routerMode: options.routerMode, maxTxnOps: options.maxTxnOps });
      return { status: 200, body: result, revision: result.revision };
    }
    if (method === 'POST' && name === 'apply') {
      const body = await parseBody(req, options.maxApplyBytes ?? DEFAULT_MAX_APPLY_BYTES);
      return applyRequest(client, options.prefix, body, { key_name: actor.name, role: actor.role }, { routerMode: options.routerMode, maxTxnOps: options.maxTxnOps });
    }
    req.resume();
    return { status: 404, body: { error_msg: `not found: ${method} ${url.pathname} (GET history, config, diff; POST rollback, apply)` } };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const verdict = auth.check(req, url);
    if (!verdict.ok) {
      req.resume();
      send(res, verdict.status, verdict.body);
      return;
    }
    if (url.pathname === `${ADMIN_PATH}openapi.json` && (req.method === 'GET' || req.method === 'HEAD')) {
      req.resume();
      send(res, 200, openApiDocument());
      return;
    }
    if (url.pathname.startsWith(PORTICO_ADMIN_PATH)) {
      let result: AdminResult;
      try {
        result = await porticoEndpoint(req, url, verdict.actor);
      } catch (err) {
        if (err instanceof BodyTooLarge) return send(res, 413, { error_msg: `request body is larger than ${maxBodyBytes} bytes` }, { connection: 'close' });
        if (err instanceof AdminError) result = { status: err.status, body: { error_msg: err.message } };
        else if (err instanceof HistoryError) result = { status: HISTORY_STATUS[err.refusal], body: { error_msg: err.message } };
        else result = { status: 503, body: { error_msg: `etcd: ${(err as Error).message}` } };
      }
      send(res, result.status, result.body, result.revision === undefined ? {} : { 'x-etcd-index': String(result.revision) });
      return;
    }
    const r = route(url);
    if (!('kind' in r)) {
      req.resume();
      send(res, r.status, r.body);
      return;
    }
    let result: AdminResult;
    try {
      result = await dispatch(req, url, r, verdict.actor);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        // the rest of the body is not read: close the connection after answering
        send(res, 413, { error_msg: `request body is larger than ${maxBodyBytes} bytes` }, { connection: 'close' });
        return;
      }
      if (err instanceof AdminError) result = { status: err.status, body: { error_msg: err.message } };
      else result = { status: 503, body: { error_msg: `etcd: ${(err as Error).message}` } };
    }
    const headers: Record<string, string> = { 'x-api-version': 'v3' };
    if (result.revision !== undefined) {
      headers['x-etcd-index'] = String(result.revision);
      if (url.searchParams.get('wait') === 'served') {
        headers['x-portico-served'] = (await waitServed(result.revision)) ? 'true' : 'timeout';
      }
    }
    if (req.method === 'HEAD') {
      res.writeHead(result.status, headers).end();
      return;
    }
    send(res, result.status, result.body, headers);
  };

  const answer = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => send(res, 500, { error_msg: `internal error: ${(err as Error).message}` }));
  };
  return {
    handle: answer,
    listen(host, port) {
      const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, answer);
      servers.add(server);
      return new Promise((resolve, reject) => {
        server.once('error', (err) => {
          servers.delete(server);
          reject(err);
        });
        server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
      });
    },
    async close() {
      await Promise.all(
        [...servers].map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
      servers.clear();
    },
  };
}
