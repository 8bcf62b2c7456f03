/**
 * Declarative apply: a whole set of objects (a routes file) made the config in etcd, atomically.
 *
 * Model. `planApply` reads the config range at one revision (the base), validates every object
 * (validateObject, ids, duplicates, references against the state the apply leads to) and computes
 * the diff: added, changed, removed (only with prune: every object in etcd that the set does not
 * name) and unchanged. Values are compared as JSON ignoring `create_time`/`update_time`, so a file
 * exported and applied back is a no-op. `commitApply` writes the plan as ONE etcd txn: every
 * object and its audit record `<prefix>/_audit/<kind>/<id>` (`{time, op, key_name, role}`, as the
 * Admin API writes) share one revision. The txn is guarded by compares:
 *  - every key of the config range has mod_revision <= base (one range compare): any put after the
 *    plan was read, to any object, fails the apply, so what was shown (dry run) is what is written;
 *  - every touched key still has the mod_revision the plan read (0: still absent), which also
 *    catches a concurrent delete of a touched key;
 *  - every object referenced but not written by the apply still exists (a concurrent delete of the
 *    upstream a route needs).
 * A concurrent delete of an object that is neither touched nor referenced is not detected (etcd
 * cannot compare a range's key count): the apply commits and that object stays deleted.
 *
 * etcd refuses a txn with more than --max-txn-ops compares or ops (default 128). An apply is one
 * txn by design (a split apply would not be atomic), so above `maxTxnOps` it is refused with the
 * numbers needed, never split.
 */
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { isKind, KINDS, type Kind } from '../config/changeset.ts';
import { currentKeyring } from '../config/data-encryption.ts';
import { validateObject } from '../config/validate.ts';
import { ErrorCode, PorticoError } from '../errors.ts';
import type { RouterMode } from '../router/types.ts';
import { encryptKey } from '../server/tls/encryption.ts';
import { encodeKey, parseHeader, prefixRangeEnd, type EtcdClient, type KeyValue, type RawHeader } from '../sources/etcd/client.ts';
import { configKey, configRangeStart } from '../sources/etcd/source.ts';
import { FileListing } from '../sources/file-listing.ts';
import { guardedConfigTxn, jsonEqual, jsonPatch, type Actor, type JsonPatchOp } from './history.ts';
import { ID_PATTERN, referencesOf, SINGULAR, USERNAME_PATTERN, type AdminResult } from './resources.ts';

export interface ApplyObject {
  kind: Kind;
  id: string;
  value: unknown;
}

/** Why an apply was refused: `invalid` (400), `conflict` (409), `too_large` (413). */
export type ApplyRefusal = 'invalid' | 'conflict' | 'too_large';

export class ApplyError extends PorticoError {
  readonly refusal: ApplyRefusal;
  /** every reason (invalid: one per rejected object) */
  readonly reasons: string[];
  constructor(refusal: ApplyRefusal, code: ErrorCode, message: string, reasons: string[] = [message], options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ApplyError';
    this.refusal = refusal;
    this.reasons = reasons;
  }
}

export const APPLY_STATUS: Record<ApplyRefusal, number> = { invalid: 400, conflict: 409, too_large: 413 };

export interface ApplyOptions {
  /** delete every object in etcd that `objects` does not name */
  prune?: boolean;
  /** plan and report only: nothing is written */
  dryRun?: boolean;
  /** who applies, for the audit records */
  by: Actor;
  /** the gateways' router mode, for validateObject (absent: each object must compile in every mode) */
  routerMode?: RouterMode;
  /** etcd's --max-txn-ops (default 128, etcd's default) */
  maxTxnOps?: number;
}

export interface ApplyEntry {
  kind: Kind;
  id: string;
}

export interface ApplyResult {
  dry_run: boolean;
  /** the revision the current config was read at */
  base: number;
  /** the revision of the apply's txn; the base revision when nothing was written */
  revision: number;
  added: ApplyEntry[];
  /** `patch`: RFC 6902 ops from the stored value to the applied one (timestamps left out) */
  changed: (ApplyEntry & { patch: JsonPatchOp[] })[];
  removed: ApplyEntry[];
  unchanged: number;
}

interface PlannedPut {
  kind: Kind;
  id: string;
  /** the text to store */
  text: string;
  /** 0: the key is absent */
  currentModRevision: number;
}

export interface ApplyPlan {
  base: number;
  puts: PlannedPut[];
  deletes: { kind: Kind; id: string; currentModRevision: number }[];
  /** keys referenced by the result but not written: they must still exist at commit */
  mustExist: string[];
  result: ApplyResult;
}

const DEFAULT_MAX_TXN_OPS = 128;

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const objectKey = (o: { kind: string; id: string }) => `${o.kind}/${o.id}`;
const keyPrefixOf = (prefix: string) => `${prefix.replace(/\/+$/, '')}/`;
const kindOrder = (k: Kind) => KINDS.indexOf(k);
const byKindThenId = (a: ApplyEntry, b: ApplyEntry) => kindOrder(a.kind) - kindOrder(b.kind) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** The value without the timestamps the Admin API stamps, for comparisons. */
function withoutTimestamps(v: unknown): unknown {
  if (!isPlainObject(v)) return v;
  const { create_time: _c, update_time: _u, ...rest } = v;
  return rest;
}

/** ssl private keys as stored: encrypted with the keyring, as the Admin API stores them (already encrypted ones pass). */
function storedForm(kind: Kind, value: Record<string, unknown>): Record<string, unknown> {
  if (kind !== 'ssls') return value;
  const ring = currentKeyring();
  const out = { ...value };
  if (typeof out.key === 'string') out.key = encryptKey(out.key, ring);
  if (Array.isArray(out.keys)) out.keys = out.keys.map((k) => (typeof k === 'string' ? encryptKey(k, ring) : k));
  return out;
}

function parseStored(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

/** The config range read at one revision, in pages pinned to it. */
async function readConfig(client: EtcdClient, keyPrefix: string): Promise<{ revision: number; kvs: KeyValue[] }> {
  const end = Buffer.from(prefixRangeEnd(keyPrefix), 'base64').toString('utf8');
  const kvs: KeyValue[] = [];
  let from = configRangeStart(keyPrefix);
  let at = 0;
  for (;;) {
    const page = await client.range(from, { rangeEnd: end, limit: 2000, revision: at });
    if (at === 0) at = page.header.revision;
    kvs.push(...page.kvs);
    if (!page.more || page.kvs.length === 0) return { revision: at, kvs };
    from = `${page.kvs[page.kvs.length - 1]!.key}\u0000`;
  }
}

/**
 * What applying `objects` would write, checked: every object valid, every reference resolved in
 * the resulting config, the txn within `maxTxnOps`. Nothing is written. Throws ApplyError
 * (`invalid` with every reason, or `too_large`).
 */
export async function planApply(client: EtcdClient, prefix: string, objects: readonly ApplyObject[], opts: Omit<ApplyOptions, 'by' | 'dryRun'> = {}): Promise<ApplyPlan> {
  const keyPrefix = keyPrefixOf(prefix);
  const invalid: string[] = [];
  const desired = new Map<string, { kind: Kind; id: string; value: Record<string, unknown> }>();
  for (const [i, o] of objects.entries()) {
    if (!isPlainObject(o)) {
      invalid.push(`objects[${i}]: must be {"kind", "id", "value"}`);
      continue;
    }
    const kind = (o as { kind?: unknown }).kind;
    const rawId = (o as { id?: unknown }).id;
    if (typeof kind !== 'string' || !isKind(kind)) {
      invalid.push(`objects[${i}]: unknown kind '${String(kind)}' (known: ${KINDS.join(', ')})`);
      continue;
    }
    if (typeof rawId !== 'string' && typeof rawId !== 'number') {
      invalid.push(`objects[${i}]: ${kind}: missing ${kind === 'consumers' ? 'username' : 'id'}`);
      continue;
    }
    const id = String(rawId);
    if (!(kind === 'consumers' ? USERNAME_PATTERN : ID_PATTERN).test(id)) {
      invalid.push(kind === 'consumers'
        ? `${kind}/${id}: invalid consumer username: must match ^[a-zA-Z0-9_-]+$ (1-100 characters)`
        : `${kind}/${id}: invalid ${SINGULAR[kind]} id: must match ^[a-zA-Z0-9-_.]+$ (1-64 characters)`);
      continue;
    }
    if (desired.has(`${kind}/${id}`)) {
      invalid.push(`${kind}/${id}: given twice`);
      continue;
    }
    const verdict = validateObject(kind, id, o.value, opts.routerMode);
    if (!verdict.ok) {
      invalid.push(verdict.rejection.reason);
      continue;
    }
    // the id travels in the value, as the Admin API stores it
    const idField = kind === 'consumers' ? 'username' : 'id';
    const value = o.value as Record<string, unknown>;
    desired.set(`${kind}/${id}`, { kind, id, value: { ...value, [idField]: value[idField] ?? id } });
  }

  const { revision: base, kvs } = await readConfig(client, keyPrefix);
  const current = new Map<string, { kind: Kind; id: string; kv: KeyValue }>();
  for (const kv of kvs) {
    const k = configKey(keyPrefix, kv.key);
    if (k) current.set(objectKey(k), { ...k, kv });
  }

  // references must resolve in the config the apply leads to: the set, plus (without prune) etcd
  const exists = (kind: Kind, id: string) => desired.has(`${kind}/${id}`) || (!opts.prune && current.has(`${kind}/${id}`));
  const mustExist = new Set<string>();
  for (const d of desired.values()) {
    for (const [field, refKind, refId] of referencesOf(d.kind, d.value)) {
      if (!exists(refKind, refId)) invalid.push(`${d.kind}/${d.id}: /${field}: ${SINGULAR[refKind]} '${refId}' not found`);
      else if (!desired.has(`${refKind}/${refId}`)) mustExist.add(`${keyPrefix}${refKind}/${refId}`);
    }
  }
  if (invalid.length > 0) {
    throw new ApplyError(
      'invalid',
      ErrorCode.SCHEMA,
      `apply refused, nothing written: ${invalid.length === 1 ? '1 object is' : `${invalid.length} objects are`} invalid: ${invalid.join('; ')}`,
      invalid,
    );
  }

  const now = Math.floor(Date.now() / 1000);
  const result: ApplyResult = { dry_run: true, base, revision: base, added: [], changed: [], removed: [], unchanged: 0 };
  const puts: PlannedPut[] = [];
  for (const d of desired.values()) {
    const cur = current.get(`${d.kind}/${d.id}`);
    const old = cur ? parseStored(cur.kv.value) : undefined;
    const next = storedForm(d.kind, d.value);
    if (cur && jsonEqual(withoutTimestamps(old), withoutTimestamps(next))) {
      result.unchanged++;
      continue;
    }
    // APISIX's timestamps (admin/utils.lua inject_timestamp): the stored create_time kept, update_time now, unless given
    const stamped = { ...next };
    if (stamped.create_time === undefined) stamped.create_time = isPlainObject(old) && typeof old.create_time === 'number' ? old.create_time : now;
    if (stamped.update_time === undefined) stamped.update_time = now;
    puts.push({ kind: d.kind, id: d.id, text: JSON.stringify(stamped), currentModRevision: cur?.kv.modRevision ?? 0 });
    if (cur) result.changed.push({ kind: d.kind, id: d.id, patch: jsonPatch(withoutTimestamps(old), withoutTimestamps(next)) });
    else result.added.push({ kind: d.kind, id: d.id });
  }
  const deletes: ApplyPlan['deletes'] = [];
  if (opts.prune) {
    for (const [k, cur] of current) {
      if (desired.has(k)) continue;
      deletes.push({ kind: cur.kind, id: cur.id, currentModRevision: cur.kv.modRevision });
      result.removed.push({ kind: cur.kind, id: cur.id });
    }
  }
  result.added.sort(byKindThenId);
  result.changed.sort(byKindThenId);
  result.removed.sort(byKindThenId);

  const touched = puts.length + deletes.length;
  const max = opts.maxTxnOps ?? DEFAULT_MAX_TXN_OPS;
  const ops = 2 * touched;
  const compares = touched + 1 + mustExist.size;
  if (touched > 0 && (ops > max || compares > max)) {
    const needed = Math.max(ops, compares);
    throw new ApplyError(
      'too_large',
      ErrorCode.LIMIT,
      `apply refused, nothing written: it touches ${touched} objects (${result.added.length} added, ${result.changed.length} changed, ${result.removed.length} removed): ` +
        `${ops} txn ops (object + audit record each) and ${compares} compares, over etcd's --max-txn-ops ${max}; an apply is one atomic txn and is not split: ` +
        `raise --max-txn-ops on every etcd member (and the gateway's limit) to at least ${needed}, or apply a smaller file`,
    );
  }
  return { base, puts, deletes, mustExist: [...mustExist], result };
}

/** Writes a plan as ONE guarded etcd txn (see the module comment). Throws ApplyError `conflict` or `too_large`. */
export async function commitApply(client: EtcdClient, prefix: string, plan: ApplyPlan, by: Actor): Promise<ApplyResult> {
  const keyPrefix = keyPrefixOf(prefix);
  const result: ApplyResult = { ...plan.result, dry_run: false };
  if (plan.puts.length + plan.deletes.length === 0) return result;
  const { compare, success } = guardedConfigTxn(keyPrefix, plan.base, plan.puts, plan.deletes, { key_name: by.key_name, role: by.role });
  for (const key of plan.mustExist) compare.push({ key: encodeKey(key), target: 'VERSION', result: 'GREATER', version: '0' });
  let res: { header?: RawHeader; succeeded?: boolean };
  try {
    res = await client.call('/v3/kv/txn', { compare, success, failure: [] }, { idempotent: false });
  } catch (err) {
    const message = (err as Error)?.message ?? '';
    if (/too many operations in txn request/.test(message)) {
      throw new ApplyError('too_large', ErrorCode.LIMIT, `apply refused by etcd, nothing written: ${success.length} ops in one txn is over its --max-txn-ops (lower than the maxTxnOps given here)`, undefined, { cause: err });
    }
    if (/request is too large/.test(message)) {
      throw new ApplyError('too_large', ErrorCode.LIMIT, `apply refused by etcd, nothing written: the txn is over its --max-request-bytes (default 1.5 MiB); raise it on every member or apply a smaller file`, undefined, { cause: err });
    }
    throw err;
  }
  if (res.succeeded !== true) {
    throw new ApplyError('conflict', ErrorCode.CONFLICT, `apply: the config changed after revision ${plan.base} (a concurrent write); nothing was written: run it again`);
  }
  result.revision = parseHeader(res.header).revision;
  return result;
}

/** planApply, then (unless dryRun) commitApply: the set applied atomically, or nothing. */
export async function applyObjects(client: EtcdClient, prefix: string, objects: readonly ApplyObject[], opts: ApplyOptions): Promise<ApplyResult> {
  const plan = await planApply(client, prefix, objects, opts);
  if (opts.dryRun) return plan.result;
  return commitApply(client, prefix, plan, opts.by);
}

/**
 * The `POST /portico/admin/apply` endpoint: body `{objects: [{kind, id, value}], prune?, dry_run?}`,
 * answered with the ApplyResult (200) or `{error_msg, reasons}` (400 invalid, 409 conflict, 413 too
 * large). Other errors (etcd unreachable) are thrown for the server's own mapping.
 */
export async function applyRequest(
  client: EtcdClient,
  prefix: string,
  body: unknown,
  by: Actor,
  opts: { routerMode?: RouterMode; maxTxnOps?: number } = {},
): Promise<AdminResult> {
  if (!isPlainObject(body) || !Array.isArray(body.objects)) {
    return { status: 400, body: { error_msg: 'body: {"objects": [{"kind", "id", "value"}, ...], "prune"?: bool, "dry_run"?: bool} is required' } };
  }
  for (const flag of ['prune', 'dry_run'] as const) {
    if (body[flag] !== undefined && typeof body[flag] !== 'boolean') return { status: 400, body: { error_msg: `body: ${flag} must be a boolean` } };
  }
  try {
    const result = await applyObjects(client, prefix, body.objects as ApplyObject[], {
      prune: body.prune === true,
      dryRun: body.dry_run === true,
      by,
      routerMode: opts.routerMode,
      maxTxnOps: opts.maxTxnOps,
    });
    return { status: 200, body: result, ...(result.dry_run || result.revision === result.base ? {} : { revision: result.revision }) };
  } catch (err) {
    if (err instanceof ApplyError) return { status: APPLY_STATUS[err.refusal], body: { error_msg: err.message, reasons: err.reasons } };
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// routes files: parse into objects, and the config back into a file

/**
 * The objects of a routes file (YAML with top-level lists per kind, as the file source reads it),
 * or the reasons it cannot be read (parse errors, unknown top-level keys, items without id,
 * duplicates, values over the limits): all of them, so a user fixes the file in one go.
 */
export function routesFileObjects(text: string, name = 'routes file'): { ok: true; objects: ApplyObject[] } | { ok: false; reasons: string[] } {
  const read = new FileListing(name).read(text, 1);
  if (read.type === 'failed') return { ok: false, reasons: [read.message] };
  if (read.type === 'unchanged') return { ok: true, objects: [] };
  const reasons: string[] = [];
  const objects: ApplyObject[] = [];
  for (const c of read.changes) {
    if (c.parseError !== undefined) reasons.push(c.parseError.startsWith(c.kind) ? c.parseError : `${c.kind}/${c.id}: ${c.parseError}`);
    else if (!c.deleted) objects.push({ kind: c.kind, id: c.id, value: c.value });
  }
  return reasons.length > 0 ? { ok: false, reasons } : { ok: true, objects };
}

/**
 * A routes file holding `objects` (as `configAt` or the Admin API lists them), which
 * routesFileObjects reads back to the same objects: ids set from the key when the value lacks one,
 * timestamps left out (apply ignores them; a file keeping them would pin update_time). Values that
 * are not JSON objects cannot be written as a file item: they are returned in `skipped`.
 */
export function routesFileOf(objects: readonly { kind: Kind; id: string; value: unknown }[]): { text: string; skipped: string[] } {
  const doc: Partial<Record<Kind, Record<string, unknown>[]>> = {};
  const skipped: string[] = [];
  const sorted = [...objects].sort(byKindThenId);
  for (const o of sorted) {
    if (!isPlainObject(o.value)) {
      skipped.push(`${o.kind}/${o.id}: the stored value is not a JSON object`);
      continue;
    }
    const idField = o.kind === 'consumers' ? 'username' : 'id';
    const { [idField]: _id, create_time: _c, update_time: _u, ...rest } = o.value;
    // the stored id as stored (a number stays a number), so the file reads back to the same value
    (doc[o.kind] ??= []).push({ [idField]: o.value[idField] ?? o.id, ...rest });
  }
  return { text: stringifyYaml(doc, { lineWidth: 0, aliasDuplicateObjects: false }), skipped };
}

/** A single object from a file (JSON or YAML), for `put`. */
export function parseObjectText(text: string): unknown {
  return parseYaml(text, { uniqueKeys: true }) as unknown;
}
