/**
 * The Admin API's operations on config objects, independent of HTTP: read, list, create, replace,
 * patch and delete `<prefix>/<kind>/<id>` in etcd, with APISIX v3's response bodies.
 *
 * Model: etcd is the source of truth; the admin never writes what the gateway's own validator
 * (validateObject) would reject, nor a reference to an object that does not exist. Each write is
 * one etcd transaction that
 *  - compares what the write depends on: the object's mod_revision (If-Match, and always for PATCH,
 *    whose new value is computed from the one it read) and the existence of every object the new
 *    value references (so a concurrent delete of the upstream cannot slip between check and write);
 *  - puts (or deletes) the object and, in the same revision, its audit record
 *    `<prefix>/_audit/<kind>/<id>`. Keys under `<prefix>/_` sort before the config range the
 *    gateways list and watch (sources/etcd/source.ts CONFIG_RANGE_START), so audit records and the
 *    id counter never reach a gateway.
 */
import type { Kind } from '../config/changeset.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { currentKeyring } from '../config/data-encryption.ts';
import { validateObject } from '../config/validate.ts';
import { encryptKey } from '../server/tls/encryption.ts';
import type { RouterMode } from '../router/types.ts';
import { compileConfigRegex, type ConfigRegex } from '../security/regex.ts';
import { encodeKey, parseHeader, prefixRangeEnd, type EtcdClient, type KeyValue, type Compare, type RawHeader, type TxnOp } from '../sources/etcd/client.ts';
import type { AdminActor } from './auth.ts';

/** An answer: HTTP status and APISIX-shaped JSON body; `revision`: the etcd revision a write produced. */
export interface AdminResult {
  status: number;
  body: unknown;
  revision?: number;
}

export class AdminError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export interface WriteContext {
  actor: AdminActor;
  /** If-Match: the mod_revision the caller last read */
  ifMatch?: number;
  /** DELETE ?force=true: delete even when referenced */
  force?: boolean;
}

export interface ListQuery {
  page?: string;
  page_size?: string;
  name?: string;
  label?: string;
  uri?: string;
}

/** APISIX's singular resource names, as its messages use them ("route [1] is still using it"). */
export const SINGULAR: Record<Kind, string> = {
  routes: 'route',
  services: 'service',
  upstreams: 'upstream',
  consumers: 'consumer',
  plugin_configs: 'plugin_config',
  global_rules: 'global_rule',
  ssls: 'ssl',
  stream_routes: 'stream_route',
};

/** APISIX's id_schema; also keeps ids safe as one etcd key segment. */
export const ID_PATTERN = /^[a-zA-Z0-9-_.]{1,64}$/;
export const USERNAME_PATTERN = /^[a-zA-Z0-9_-]{1,100}$/;

/** Who references objects of a kind: [referrer kind, field]. */
const REFERRERS: Partial<Record<Kind, Array<[Kind, string]>>> = {
  upstreams: [['routes', 'upstream_id'], ['services', 'upstream_id'], ['stream_routes', 'upstream_id']],
  services: [['routes', 'service_id'], ['stream_routes', 'service_id']],
  plugin_configs: [['routes', 'plugin_config_id']],
};

/** The references a value makes, as store.ts's references(): [field, kind, id] (apply.ts checks them too). */
export function referencesOf(kind: Kind, value: Record<string, unknown>): Array<[string, Kind, string]> {
  if (kind !== 'routes' && kind !== 'services' && kind !== 'stream_routes') return [];
  const refs: Array<[string, Kind, string]> = [];
  if (value.upstream_id !== undefined) refs.push(['upstream_id', 'upstreams', String(value.upstream_id)]);
  if (kind !== 'services' && value.service_id !== undefined) refs.push(['service_id', 'services', String(value.service_id)]);
  if (kind === 'routes' && value.plugin_config_id !== undefined) refs.push(['plugin_config_id', 'plugin_configs', String(value.plugin_config_id)]);
  return refs;
}

export const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** Sets an own property, also for the key `__proto__` (a plain assignment would replace the prototype). */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** RFC 7386 JSON merge patch: objects merge recursively, `null` removes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else setOwn(out, k, mergePatch(Object.hasOwn(out, k) ? out[k] : undefined, v));
  }
  return out;
}

/**
 * `value` with the field at `path` (`methods`, `upstream/nodes`) replaced by `replacement`, as
 * APISIX's sub-path PATCH. Every object on the way must exist.
 */
export function replaceAtPath(value: Record<string, unknown>, path: string[], replacement: unknown): Record<string, unknown> {
  const root = structuredClone(value);
  let node: Record<string, unknown> = root;
  for (const [i, segment] of path.entries()) {
    if (i === path.length - 1) {
      setOwn(node, segment, replacement);
      break;
    }
    const next = Object.hasOwn(node, segment) ? node[segment] : undefined;
    if (!isPlainObject(next)) throw new AdminError(400, `invalid sub path: /${path.slice(0, i + 1).join('/')} is not an object`);
    node = next;
  }
  return root;
}

/**
 * An ssl object as stored: private keys given as PEM are encrypted with the keyring, as APISIX's
 * Admin API does (ssl.lua aes_encrypt_pkey), so neither etcd nor a GET shows them in the clear.
 * Keys already encrypted pass unchanged.
 */
function withEncryptedKeys(value: Record<string, unknown>): Record<string, unknown> {
  const ring = currentKeyring();
  const out = { ...value };
  if (typeof out.key === 'string') out.key = encryptKey(out.key, ring);
  if (Array.isArray(out.keys)) out.keys = out.keys.map((k) => (typeof k === 'string' ? encryptKey(k, ring) : k));
  return out;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

/** Filters and paging of APISIX v3's list (admin/v3_adapter.lua). */
class ListFilter {
  private readonly name?: ConfigRegex;
  private readonly uri?: ConfigRegex;
  private readonly label?: string;
  readonly page?: number;
  readonly pageSize?: number;

  constructor(q: ListQuery) {
    // APISIX matches name and uri as regexes (ngx.re.find); compileConfigRegex keeps matching linear
    const regex = (field: string, pattern: string | undefined) => {
      if (pattern === undefined) return undefined;
      try {
        return compileConfigRegex(pattern);
      } catch (err) {
        throw new AdminError(400, `${field}: ${(err as Error).message}`);
      }
    };
    this.name = regex('name', q.name);
    this.uri = regex('uri', q.uri);
    this.label = q.label;
    if (q.page !== undefined || q.page_size !== undefined) {
      const pageSize = q.page_size === undefined ? 10 : Number(q.page_size);
      if (!Number.isInteger(pageSize) || pageSize < 10 || pageSize > 500) throw new AdminError(400, 'page_size must be between 10 and 500');
      const page = q.page === undefined ? 1 : Number(q.page);
      if (!Number.isInteger(page)) throw new AdminError(400, 'page must be an integer >= 1');
      this.page = Math.max(1, page);
      this.pageSize = pageSize;
    }
  }

  matches(value: Record<string, unknown>): boolean {
    if (this.name && !(typeof value.name === 'string' && this.name.test(value.name))) return false;
    if (this.label !== undefined && !(isPlainObject(value.labels) && Object.hasOwn(value.labels, this.label))) return false;
    if (this.uri) {
      const uris = [value.uri, ...(Array.isArray(value.uris) ? value.uris : [])].filter((u): u is string => typeof u === 'string');
      if (!uris.some((u) => this.uri!.test(u))) return false;
    }
    return true;
  }

  /** `{total, list}`: total counts every match; a page is taken in createdIndex order, as APISIX. */
  apply<T extends { createdIndex: number; value: unknown }>(items: T[]): { total: number; list: T[] } {
    const matched = items.filter((i) => isPlainObject(i.value) && this.matches(i.value));
    if (this.page === undefined || this.pageSize === undefined) return { total: matched.length, list: matched };
    matched.sort((a, b) => a.createdIndex - b.createdIndex);
    const from = (this.page - 1) * this.pageSize;
    return { total: matched.length, list: matched.slice(from, from + this.pageSize) };
  }
}

export interface ListedItem {
  key: string;
  value: unknown;
  createdIndex: number;
  modifiedIndex: number;
}

/** Reads served from the snapshot this instance serves (config.source: file). */
export class SnapshotReader {
  constructor(
    private readonly snapshot: () => Snapshot,
    private readonly prefix: string,
  ) {}

  private item(kind: Kind, id: string, modRevision: number, value: unknown): ListedItem {
    // the file source keeps no create revision: the version's revision stands in for both
    return { key: `${this.prefix}/${kind}/${id}`, value, createdIndex: modRevision, modifiedIndex: modRevision };
  }

  get(kind: Kind, id: string): AdminResult {
    const found = (this.snapshot()[kind] as ReadonlyMap<string, { modRevision: number; value: unknown }>).get(id);
    if (!found) return notFound(`${this.prefix}/${kind}/${id}`);
    return { status: 200, body: this.item(kind, id, found.modRevision, found.value) };
  }

  list(kind: Kind, query: ListQuery): AdminResult {
    const filter = new ListFilter(query);
    const items: ListedItem[] = [];
    for (const [id, o] of this.snapshot()[kind] as ReadonlyMap<string, { modRevision: number; value: unknown }>) {
      items.push(this.item(kind, id, o.modRevision, o.value));
    }
    return { status: 200, body: filter.apply(items) };
  }
}

function notFound(key: string): AdminResult {
  // `message` is what APISIX answers; `error_msg` is what every other Admin API error carries
  return { status: 404, body: { error_msg: `${key} not found`, message: 'Key not found' } };
}

/** Attempts of a PATCH (or an unforced DELETE) whose compare lost to a concurrent write. */
const PATCH_ATTEMPTS = 10;

/**
 * Before another attempt: a random pause growing with the attempt (up to 5, 10, 20 … 200 ms).
 * Without it, writers that lost together retry together and lose together again: six concurrent
 * PATCHes of one route once used up 5 immediate attempts on a loaded machine.
 */
function backoff(attempt: number): Promise<void> {
  return new Promise((r) => setTimeout(r, Math.random() * Math.min(200, 5 * 2 ** (attempt - 1))));
}

export interface EtcdResourcesOptions {
  etcd: EtcdClient;
  /** e.g. `/apisix` (no trailing slash) */
  prefix: string;
  routerMode?: RouterMode;
}

export class EtcdResources {
  private readonly etcd: EtcdClient;
  private readonly prefix: string;
  private readonly routerMode: RouterMode | undefined;

  constructor(options: EtcdResourcesOptions) {
    this.etcd = options.etcd;
    this.prefix = options.prefix;
    this.routerMode = options.routerMode;
  }

  keyOf(kind: Kind, id: string): string {
    return `${this.prefix}/${kind}/${id}`;
  }

  private auditKey(kind: Kind, id: string): string {
    return `${this.prefix}/_audit/${kind}/${id}`;
  }

  private audit(kind: Kind, id: string, op: 'put' | 'delete', actor: AdminActor): TxnOp {
    const record = { time: new Date().toISOString(), op, key_name: actor.name, role: actor.role };
    return { put: { key: this.auditKey(kind, id), value: JSON.stringify(record) } };
  }

  private async read(kind: Kind, id: string): Promise<KeyValue | undefined> {
    const key = this.keyOf(kind, id);
    const res = await this.etcd.range(key);
    return res.kvs.find((kv) => kv.key === key);
  }

  private parseStored(kv: KeyValue): unknown {
    try {
      return JSON.parse(kv.value) as unknown;
    } catch {
      // a value written around the Admin API: shown as stored, never hidden
      return kv.value;
    }
  }

  private listed(kv: KeyValue): ListedItem {
    return { key: kv.key, value: this.parseStored(kv), createdIndex: kv.createRevision, modifiedIndex: kv.modRevision };
  }

  async get(kind: Kind, id: string): Promise<AdminResult> {
    const kv = await this.read(kind, id);
    if (!kv) return notFound(this.keyOf(kind, id));
    return { status: 200, body: this.listed(kv) };
  }

  async list(kind: Kind, query: ListQuery): Promise<AdminResult> {
    const filter = new ListFilter(query);
    const dir = `${this.prefix}/${kind}/`;
    const { kvs } = await this.etcd.rangePrefix(dir);
    // deeper keys (APISIX's consumer credentials) are not objects of this kind
    const items = kvs.filter((kv) => kv.key.length > dir.length && !kv.key.includes('/', dir.length)).map((kv) => this.listed(kv));
    return { status: 200, body: filter.apply(items) };
  }

  /** A new object with a generated id: APISIX's 20-digit zero-padded etcd revision (core/etcd.lua push). */
  async create(kind: Kind, body: unknown, ctx: WriteContext): Promise<AdminResult> {
    if (kind === 'consumers') throw new AdminError(405, 'not supported `POST` method for consumers: PUT /apisix/admin/consumers with a username');
    if (!isPlainObject(body)) throw new AdminError(400, 'invalid configuration: the body must be a JSON object');
    if (body.id !== undefined) throw new AdminError(400, `wrong ${SINGULAR[kind]} id, do not need it`);
    const header = await this.etcd.put(`${this.prefix}/_gen_id`, '1');
    const id = String(header.revision).padStart(20, '0');
    return settled(await this.write(kind, id, { ...body, id }, ctx, { mustCreate: true }));
  }

  /** PUT: create or replace. `pathId`: the id in the URL (undefined: PUT on the collection, id in the body). */
  async replace(kind: Kind, pathId: string | undefined, body: unknown, ctx: WriteContext): Promise<AdminResult> {
    if (!isPlainObject(body)) throw new AdminError(400, 'invalid configuration: the body must be a JSON object');
    const idField = kind === 'consumers' ? 'username' : 'id';
    const bodyId = body[idField] === undefined ? undefined : String(body[idField]);
    const id = pathId ?? bodyId;
    if (id === undefined) throw new AdminError(400, kind === 'consumers' ? 'missing consumer username' : `missing ${SINGULAR[kind]} id`);
    if (bodyId !== undefined && bodyId !== id) {
      throw new AdminError(400, kind === 'consumers' ? 'wrong username' : `wrong ${SINGULAR[kind]} id`);
    }
    this.checkId(kind, id);
    return settled(await this.write(kind, id, { ...body, [idField]: id }, ctx, {}));
  }

  checkId(kind: Kind, id: string): void {
    const ok = kind === 'consumers' ? USERNAME_PATTERN.test(id) : ID_PATTERN.test(id);
    if (!ok) {
      throw new AdminError(400, kind === 'consumers'
        ? `invalid consumer username '${id}': must match ^[a-zA-Z0-9_-]+$ (1-100 characters)`
        : `invalid ${SINGULAR[kind]} id '${id}': must match ^[a-zA-Z0-9-_.]+$ (1-64 characters)`);
    }
  }

  /** PATCH: merge patch of the whole object, or replacement of the field at `subPath`. */
  async patch(kind: Kind, id: string, body: unknown, subPath: string[], ctx: WriteContext): Promise<AdminResult> {
    if (subPath.length === 0 && !isPlainObject(body)) throw new AdminError(400, 'invalid configuration: a merge patch must be a JSON object');
    for (let attempt = 1; ; attempt++) {
      const kv = await this.read(kind, id);
      if (!kv) return notFound(this.keyOf(kind, id));
      if (ctx.ifMatch !== undefined && ctx.ifMatch !== kv.modRevision) return conflict(kind, id, ctx.ifMatch, kv.modRevision);
      const current = this.parseStored(kv);
      if (!isPlainObject(current)) throw new AdminError(409, `${this.keyOf(kind, id)}: the stored value is not a JSON object; replace it with PUT`);
      let next: Record<string, unknown>;
      if (subPath.length > 0) {
        next = replaceAtPath(current, subPath, body);
        next.update_time = nowSeconds();
      } else {
        next = mergePatch(current, body) as Record<string, unknown>;
        // APISIX: update_time is reset unless the patch sets it
        if ((body as Record<string, unknown>).update_time === undefined) next.update_time = nowSeconds();
      }
      if (next.create_time === undefined) next.create_time = nowSeconds();
      const result = await this.write(kind, id, next, ctx, { expectRevision: kv.modRevision, createdIndex: kv.createRevision, timestampsSet: true });
      if (result !== RETRY) return result;
      // someone wrote between our read and our swap: merge onto their version
      if (ctx.ifMatch !== undefined || attempt >= PATCH_ATTEMPTS) {
        const latest = await this.read(kind, id);
        return conflict(kind, id, ctx.ifMatch ?? kv.modRevision, latest?.modRevision ?? 0, attempt);
      }
      await backoff(attempt);
    }
  }

  /**
   * Validate, check references, then one txn. `expectRevision`: PATCH's compare-and-swap (returns
   * RETRY when it lost); `mustCreate`: POST (the key must not exist).
   */
  private async write(
    kind: Kind,
    id: string,
    value: Record<string, unknown>,
    ctx: WriteContext,
    opts: { expectRevision?: number; createdIndex?: number; mustCreate?: boolean; timestampsSet?: boolean },
  ): Promise<AdminResult | typeof RETRY> {
    const key = this.keyOf(kind, id);
    const previous = opts.expectRevision === undefined ? await this.read(kind, id) : undefined;
    if (ctx.ifMatch !== undefined && opts.expectRevision === undefined && (previous?.modRevision ?? 0) !== ctx.ifMatch) {
      return conflict(kind, id, ctx.ifMatch, previous?.modRevision ?? 0);
    }
    if (!opts.timestampsSet) {
      // APISIX (admin/utils.lua inject_timestamp): keep the stored create_time, set update_time, unless given
      const old = previous ? this.parseStored(previous) : undefined;
      if (value.create_time === undefined) {
        value.create_time = isPlainObject(old) && typeof old.create_time === 'number' ? old.create_time : nowSeconds();
      }
      if (value.update_time === undefined) value.update_time = nowSeconds();
    }
    const verdict = validateObject(kind, id, value, this.routerMode);
    if (!verdict.ok) throw new AdminError(400, verdict.rejection.reason);

    const refs = referencesOf(kind, value);
    const missing = await this.missingReference(kind, id, refs);
    if (missing) throw new AdminError(400, missing);

    const compare: Compare[] = refs.map(([, refKind, refId]) => ({ key: this.keyOf(refKind, refId), target: 'VERSION', result: 'GREATER', version: 0 }));
    const expected = opts.expectRevision ?? ctx.ifMatch ?? (opts.mustCreate ? 0 : undefined);
    if (expected !== undefined) compare.push({ key, target: 'MOD', result: 'EQUAL', modRevision: expected });
    const text = JSON.stringify(kind === 'ssls' ? withEncryptedKeys(value) : value);
    const res = await this.etcd.txn({ compare, success: [{ put: { key, value: text } }, this.audit(kind, id, 'put', ctx.actor)] });
    if (!res.succeeded) {
      // which compare failed: a reference deleted meanwhile, or the object changed
      const gone = await this.missingReference(kind, id, refs);
      if (gone) throw new AdminError(400, gone);
      if (opts.expectRevision !== undefined) return RETRY;
      const now = await this.read(kind, id);
      if (opts.mustCreate) throw new AdminError(409, `${key} already exists`);
      return conflict(kind, id, expected ?? 0, now?.modRevision ?? 0);
    }
    const revision = res.header.revision;
    const existed = opts.expectRevision !== undefined || previous !== undefined;
    return {
      status: existed ? 200 : 201,
      // APISIX v3 answers {key, value}; the indexes let a client send If-Match next
      body: { key, value: kind === 'ssls' ? JSON.parse(text) : value, createdIndex: previous?.createRevision ?? opts.createdIndex ?? revision, modifiedIndex: revision },
      revision,
    };
  }

  /** The reason the first reference that does not exist in etcd fails, or undefined. */
  private async missingReference(kind: Kind, id: string, refs: Array<[string, Kind, string]>): Promise<string | undefined> {
    for (const [field, refKind, refId] of refs) {
      if (!(await this.read(refKind, refId))) return `${kind}/${id}: /${field}: ${SINGULAR[refKind]} '${refId}' not found`;
    }
    return undefined;
  }

  /**
   * DELETE. Unless forced, the referrer scan and the delete are made atomic: the txn also compares
   * that no key of a referrer kind changed since its scan (a range compare: every mod_revision in
   * `<prefix>/routes/` below scan revision + 1), so a route written meanwhile with this upstream_id
   * sends us back to scan again rather than being left dangling. (Its own write compares the
   * upstream's existence, so whichever commits second sees the other.)
   */
  async remove(kind: Kind, id: string, ctx: WriteContext): Promise<AdminResult> {
    const key = this.keyOf(kind, id);
    for (let attempt = 1; ; attempt++) {
      const kv = await this.read(kind, id);
      if (!kv) return notFound(key);
      if (ctx.ifMatch !== undefined && ctx.ifMatch !== kv.modRevision) return conflict(kind, id, ctx.ifMatch, kv.modRevision);
      const unchanged: RawCompare[] = [];
      if (!ctx.force) {
        const { users, scanned } = await this.referrers(kind, id);
        if (users.length > 0) {
          throw new AdminError(400, `can not delete this ${SINGULAR[kind]}, ${users.join(', ')} ${users.length === 1 ? 'is' : 'are'} still using it now (use ?force=true to delete anyway)`);
        }
        for (const [dir, revision] of scanned) {
          unchanged.push({ key: encodeKey(dir), range_end: prefixRangeEnd(dir), target: 'MOD', result: 'LESS', mod_revision: String(revision + 1) });
        }
      }
      const audit = this.audit(kind, id, 'delete', ctx.actor) as { put: { key: string; value: string } };
      const res = await this.etcd.call<{ header?: RawHeader; succeeded?: boolean }>(
        '/v3/kv/txn',
        {
          compare: [{ key: encodeKey(key), target: 'MOD', result: 'EQUAL', mod_revision: String(kv.modRevision) }, ...unchanged],
          success: [
            { request_delete_range: { key: encodeKey(key) } },
            { request_put: { key: encodeKey(audit.put.key), value: encodeKey(audit.put.value) } },
          ],
          failure: [],
        },
        { idempotent: false },
      );
      if (res.succeeded === true) return { status: 200, body: { deleted: '1', key }, revision: parseHeader(res.header).revision };
      const now = await this.read(kind, id);
      if (!now) return notFound(key);
      // the object changed: with If-Match that is a conflict; else, or when referrers changed, look again
      if (now.modRevision !== kv.modRevision && ctx.ifMatch !== undefined) return conflict(kind, id, ctx.ifMatch, now.modRevision);
      if (attempt >= PATCH_ATTEMPTS) return conflict(kind, id, kv.modRevision, now.modRevision, attempt);
      await backoff(attempt);
    }
  }

  /** `route [1]`-style names of the objects in etcd that reference kind/id, and the revision of each scan. */
  private async referrers(kind: Kind, id: string): Promise<{ users: string[]; scanned: Array<[string, number]> }> {
    const users: string[] = [];
    const scanned: Array<[string, number]> = [];
    for (const [refKind, field] of REFERRERS[kind] ?? []) {
      const dir = `${this.prefix}/${refKind}/`;
      const { kvs, revision } = await this.etcd.rangePrefix(dir);
      scanned.push([dir, revision]);
      for (const kv of kvs) {
        const value = this.parseStored(kv);
        if (isPlainObject(value) && value[field] !== undefined && String(value[field]) === id) {
          users.push(`${SINGULAR[refKind]} [${kv.key.slice(dir.length)}]`);
        }
      }
    }
    return { users, scanned };
  }
}

/** A compare as etcd's JSON gateway takes it; `range_end` is what client.ts's Compare cannot express. */
interface RawCompare {
  key: string;
  range_end?: string;
  target: 'MOD';
  result: 'EQUAL' | 'LESS';
  mod_revision: string;
}

const RETRY = Symbol('retry');

/** A write without expectRevision never asks for a retry. */
function settled(result: AdminResult | typeof RETRY): AdminResult {
  if (result === RETRY) throw new Error('admin: unexpected retry of a write without compare-and-swap');
  return result;
}

function conflict(kind: Kind, id: string, expected: number, actual: number, attempts?: number): AdminResult {
  const tail = attempts !== undefined && attempts > 1 ? ` (gave up after ${attempts} attempts)` : '';
  return {
    status: 409,
    body: {
      error_msg: `${kind}/${id} was modified: expected modifiedIndex ${expected}, it is now ${actual === 0 ? 'absent' : actual}${tail}; read it again and retry`,
    },
  };
}
