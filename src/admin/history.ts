/**
 * Config history over etcd's MVCC store: what changed when and by whom (`history`), the whole
 * config as of a revision (`configAt`), what differs between two revisions (`diff`, with RFC 6902
 * JSON Patches) and putting an old revision back (`rollback`). Pure functions over an EtcdClient and
 * the key prefix (e.g. "/apisix"); the HTTP endpoints and the CLI wire them.
 *
 * Model. etcd keeps every revision of the keyspace until it is compacted; it keeps no list of
 * revisions, so history is read by replaying the events of the config range `[<prefix>/a, end of
 * <prefix>/)` with a watch from an old revision up to the current one. The Admin API writes, in the
 * same txn (so the same revision) as each object change, an audit record
 * `<prefix>/_audit/<kind>/<id>` = `{time, op, key_name, role}`; a second watch over `<prefix>/_audit/`
 * joins them to the changes by (revision, kind, id). Revisions older than the compaction point are
 * gone: configAt, diff and rollback refuse them with PORTICO_ERR_ETCD_COMPACTED; history starts at
 * the compaction revision + 1 (the compaction revision itself can lose its delete events).
 */
import type { Kind } from '../config/changeset.ts';
import { isKind } from '../config/changeset.ts';
import { validateObject } from '../config/validate.ts';
import { ErrorCode, PorticoError } from '../errors.ts';
import type { RouterMode } from '../router/types.ts';
import { decodeKey, encodeKey, prefixRangeEnd, type EtcdClient, type KeyValue, type RawHeader } from '../sources/etcd/client.ts';
import { configKey, configRangeStart } from '../sources/etcd/source.ts';
import { watchPrefix, type WatchEvent } from '../sources/etcd/watch.ts';

/** Why a history operation was refused; the HTTP layer maps it to a status (see notes). */
export type HistoryRefusal = 'compacted' | 'future' | 'conflict' | 'invalid' | 'too_large' | 'timeout';

export class HistoryError extends PorticoError {
  readonly refusal: HistoryRefusal;
  constructor(refusal: HistoryRefusal, code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'HistoryError';
    this.refusal = refusal;
  }
}

export interface Actor {
  key_name: string;
  role: string;
}

export interface HistoryEntry {
  revision: number;
  /** ISO 8601: the audit record's time, else the value's update_time (unix seconds), else null */
  time: string | null;
  kind: Kind;
  id: string;
  op: 'put' | 'delete';
  /** who, from the audit record written in the same revision (absent: written around the Admin API) */
  by?: Actor;
}

export interface HistoryOptions {
  kind?: Kind;
  id?: string;
  /** newest entries returned (default 100) */
  limit?: number;
  /**
   * At most the last `maxRevisions` revisions are replayed (default 100,000): the bound on the work.
   * They are replayed newest first in windows of max(1000, 4 x limit) revisions, each four times the
   * previous, until `limit` changes are found. etcd reads every event of a window (all keys) to
   * serve the watch and sends those in the watched ranges at about 1,000 revisions per 100 ms.
   * `truncated`: fewer than `limit` changes found and older revisions were left out by this bound.
   */
  maxRevisions?: number;
  /** give up after this many ms (default 60,000) */
  timeoutMs?: number;
  /**
   * ms of silence after which the replay counts as complete once every change we know of has
   * arrived (default 300; see collectEvents). etcd sends a catching-up watch a batch every 100 ms.
   */
  settleMs?: number;
}

export interface HistoryResult {
  entries: HistoryEntry[];
  /** the revisions replayed, inclusive */
  fromRevision: number;
  toRevision: number;
  /** older revisions exist in etcd but were not replayed (maxRevisions) */
  truncated: boolean;
  /** events received from etcd (config + audit ranges) */
  eventsScanned: number;
}

export interface ConfigObject {
  kind: Kind;
  id: string;
  /** the parsed JSON value; the raw text when it is not JSON */
  value: unknown;
  /** the value exactly as stored */
  raw: string;
  modRevision: number;
}

export type JsonPatchOp =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'replace'; path: string; value: unknown };

export interface ConfigDiff {
  from: number;
  to: number;
  added: ConfigObject[];
  removed: ConfigObject[];
  changed: { kind: Kind; id: string; from: ConfigObject; to: ConfigObject; patch: JsonPatchOp[] }[];
}

/** `/apisix` or `/apisix/` -> `/apisix/` */
function keyPrefixOf(prefix: string): string {
  return `${prefix.replace(/\/+$/, '')}/`;
}

/** The exclusive end of `[start, end of keyPrefix)` as a key string. */
function rangeEndOf(keyPrefix: string): string {
  return decodeKey(prefixRangeEnd(keyPrefix));
}

function compactedError(revision: number, err: unknown): HistoryError {
  return new HistoryError(
    'compacted',
    ErrorCode.ETCD_COMPACTED,
    `revision ${revision} is older than etcd's compaction point: its config is no longer kept`,
    { cause: err },
  );
}

/** etcd's own refusals of a revision, turned into messages a user can act on. */
function revisionError(err: unknown, revision: number): unknown {
  const msg = (err as Error)?.message ?? '';
  if (/required revision has been compacted/.test(msg)) return compactedError(revision, err);
  if (/required revision is a future revision/.test(msg)) {
    return new HistoryError('future', ErrorCode.REVISION, `revision ${revision} is newer than etcd's current revision`, { cause: err });
  }
  return err;
}

/**
 * Every key in [start, end) at `revision` (0: the latest), read in pages pinned to one revision so
 * the result is a consistent snapshot. Returns the revision it was read at.
 */
async function rangeAll(client: EtcdClient, start: string, end: string, revision: number): Promise<{ revision: number; kvs: KeyValue[] }> {
  const kvs: KeyValue[] = [];
  let from = start;
  let at = revision;
  for (;;) {
    let page;
    try {
      page = await client.range(from, { rangeEnd: end, limit: 1000, revision: at });
    } catch (err) {
      throw revisionError(err, revision);
    }
    if (at === 0) at = page.header.revision;
    for (const kv of page.kvs) kvs.push(kv);
    if (!page.more || page.kvs.length === 0) return { revision: at, kvs };
    from = `${page.kvs[page.kvs.length - 1]!.key}\u0000`;
  }
}

function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return raw;
  }
}

/** The current store revision. */
async function currentRevision(client: EtcdClient, keyPrefix: string): Promise<number> {
  return (await client.range(keyPrefix, { countOnly: true })).header.revision;
}

/**
 * Every config object (known kinds only) as of `revision`. A compacted revision is refused with
 * PORTICO_ERR_ETCD_COMPACTED; keys in the config range that are not `<kind>/<id>` of a known kind
 * are left out, as the gateways leave them out.
 */
export async function configAt(client: EtcdClient, prefix: string, revision: number): Promise<ConfigObject[]> {
  if (!Number.isSafeInteger(revision) || revision < 1) {
    throw new HistoryError('future', ErrorCode.REVISION, `revision must be a positive integer (got ${revision})`);
  }
  const keyPrefix = keyPrefixOf(prefix);
  const { kvs } = await rangeAll(client, configRangeStart(keyPrefix), rangeEndOf(keyPrefix), revision);
  return toObjects(keyPrefix, kvs);
}

function toObjects(keyPrefix: string, kvs: KeyValue[]): ConfigObject[] {
  const out: ConfigObject[] = [];
  for (const kv of kvs) {
    const key = configKey(keyPrefix, kv.key);
    if (key) out.push({ kind: key.kind, id: key.id, value: parseValue(kv.value), raw: kv.value, modRevision: kv.modRevision });
  }
  return out;
}

const objectKey = (o: { kind: string; id: string }) => `${o.kind}/${o.id}`;

/**
 * Objects added, removed and changed from revision `from` to revision `to`. An object counts as
 * changed when its JSON value differs (a re-put of an equal value is not a change); `patch` turns
 * the `from` value into the `to` value.
 */
export async function diff(client: EtcdClient, prefix: string, from: number, to: number): Promise<ConfigDiff> {
  const [a, b] = await Promise.all([configAt(client, prefix, from), configAt(client, prefix, to)]);
  const before = new Map(a.map((o) => [objectKey(o), o]));
  const after = new Map(b.map((o) => [objectKey(o), o]));
  const out: ConfigDiff = { from, to, added: [], removed: [], changed: [] };
  for (const [k, o] of after) {
    const old = before.get(k);
    if (!old) out.added.push(o);
    else if (old.raw !== o.raw) {
      const patch = jsonPatch(old.value, o.value);
      if (patch.length > 0) out.changed.push({ kind: o.kind, id: o.id, from: old, to: o, patch });
    }
  }
  for (const [k, o] of before) if (!after.has(k)) out.removed.push(o);
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON Patch (RFC 6902): diff and apply, for plain JSON values

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/** RFC 6901: `~` -> `~0`, `/` -> `~1`. */
function escapeToken(t: string): string {
  return t.replace(/~/g, '~0').replace(/\//g, '~1');
}
function unescapeToken(t: string): string {
  return t.replace(/~1/g, '/').replace(/~0/g, '~');
}

/**
 * The RFC 6902 operations that turn `from` into `to`. Objects are compared key by key (removals,
 * then changes, then additions, keys sorted so the output is stable); arrays index by index, the
 * tail removed from the end backwards or appended, so every op's index is valid when it applies.
 * No `move`/`copy`: an inserted array element shows as changes of the elements after it, which is
 * longer than needed but always correct.
 */
export function jsonPatch(from: unknown, to: unknown, path = ''): JsonPatchOp[] {
  if (jsonEqual(from, to)) return [];
  if (isPlainObject(from) && isPlainObject(to)) {
    const ops: JsonPatchOp[] = [];
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    for (const k of keys) if (!Object.hasOwn(to, k)) ops.push({ op: 'remove', path: `${path}/${escapeToken(k)}` });
    for (const k of keys) {
      if (Object.hasOwn(from, k) && Object.hasOwn(to, k)) ops.push(...jsonPatch(from[k], to[k], `${path}/${escapeToken(k)}`));
    }
    for (const k of keys) if (!Object.hasOwn(from, k)) ops.push({ op: 'add', path: `${path}/${escapeToken(k)}`, value: to[k] });
    return ops;
  }
  if (Array.isArray(from) && Array.isArray(to)) {
    const ops: JsonPatchOp[] = [];
    const common = Math.min(from.length, to.length);
    for (let i = 0; i < common; i++) ops.push(...jsonPatch(from[i], to[i], `${path}/${i}`));
    for (let i = from.length - 1; i >= to.length; i--) ops.push({ op: 'remove', path: `${path}/${i}` });
    for (let i = from.length; i < to.length; i++) ops.push({ op: 'add', path: `${path}/${i}`, value: to[i] });
    return ops;
  }
  return [{ op: 'replace', path, value: to }];
}

/** Applies RFC 6902 add/remove/replace ops to a copy of `doc` (throws on a path that does not resolve). */
export function applyJsonPatch(doc: unknown, ops: JsonPatchOp[]): unknown {
  let root = structuredClone(doc);
  for (const op of ops) {
    if (op.path === '') {
      if (op.op === 'remove') throw new Error('cannot remove the root');
      root = structuredClone(op.value);
      continue;
    }
    const tokens = op.path.split('/').slice(1).map(unescapeToken);
    const last = tokens.pop()!;
    let parent: unknown = root;
    for (const t of tokens) {
      parent = Array.isArray(parent) ? parent[Number(t)] : isPlainObject(parent) ? parent[t] : undefined;
      if (parent === undefined) throw new Error(`${op.path}: no such path`);
    }
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      if (!Number.isInteger(i) || i < 0 || i > parent.length || (op.op !== 'add' && i === parent.length)) {
        throw new Error(`${op.path}: index out of range`);
      }
      if (op.op === 'add') parent.splice(i, 0, structuredClone(op.value));
      else if (op.op === 'remove') parent.splice(i, 1);
      else parent[i] = structuredClone(op.value);
    } else if (isPlainObject(parent)) {
      if (op.op !== 'add' && !Object.hasOwn(parent, last)) throw new Error(`${op.path}: no such member`);
      if (op.op === 'remove') delete parent[last];
      else parent[last] = structuredClone(op.value);
    } else {
      throw new Error(`${op.path}: parent is not a container`);
    }
  }
  return root;
}

// ---------------------------------------------------------------------------------------------
// history

interface RangeReplay {
  events: WatchEvent[];
}

/**
 * Replays the events of [start, end) from `startRevision` to `endRevision` with one watch, then
 * stops it. The trap: a watch never says "you are caught up" (etcd < 3.4.26 answers a progress
 * request at once with the current revision, before the catch-up events, so it cannot be trusted;
 * periodic progress notifications come every 10 minutes by default). So the replay ends when
 *  - an event at `endRevision` or later arrives (certain), or
 *  - the newest change still visible at `endRevision` (the range's highest mod_revision, read
 *    first) has arrived and etcd then sent nothing for `settleMs`. Only changes after that one can
 *    be missed this way: deletes (and objects created and deleted again) after the last surviving
 *    put, made outside the Admin API (its audit record is a surviving put of the same revision),
 *    and only if etcd took longer than settleMs to send its next catch-up batch.
 */
async function replayRange(
  client: EtcdClient,
  opts: { start: string; keyPrefix: string; startRevision: number; endRevision: number; settleMs: number; signal: AbortSignal },
): Promise<RangeReplay | { compactRevision: number }> {
  const end = rangeEndOf(opts.keyPrefix);
  const events: WatchEvent[] = [];
  if (opts.startRevision > opts.endRevision) return { events };
  // the newest surviving change in the range as of endRevision: it must arrive before we may stop
  let mustSee: number;
  try {
    const newest = await client.call<{ kvs?: { mod_revision?: string }[] }>(
      '/v3/kv/range',
      {
        key: encodeKey(opts.start),
        range_end: encodeKey(end),
        revision: opts.endRevision,
        sort_order: 'DESCEND',
        sort_target: 'MOD',
        limit: 1,
        keys_only: true,
      },
      { idempotent: true, signal: opts.signal },
    );
    mustSee = Number(newest.kvs?.[0]?.mod_revision ?? 0);
  } catch (err) {
    if (!/required revision has been compacted/.test((err as Error)?.message ?? '')) throw err;
    // the watch below is cancelled at once and says where the history now starts
    mustSee = Number.MAX_SAFE_INTEGER;
  }
  const stop = new AbortController();
  const onOuter = () => stop.abort();
  opts.signal.addEventListener('abort', onOuter, { once: true });
  let lastSeen = 0;
  let lastMessageAt = Date.now();
  let complete = false;
  const settle = setInterval(() => {
    if (lastSeen >= mustSee || mustSee < opts.startRevision) {
      if (Date.now() - lastMessageAt >= opts.settleMs) {
        complete = true;
        stop.abort();
      }
    }
  }, Math.max(10, Math.min(50, opts.settleMs / 4)));
  try {
    const ended = await watchPrefix(client, {
      prefix: opts.keyPrefix,
      from: opts.start,
      startRevision: opts.startRevision,
      endpoint: client.endpoint,
      probeInterval: 0,
      signal: stop.signal,
      onCreated: () => {
        lastMessageAt = Date.now();
      },
      onEvents: (evs) => {
        lastMessageAt = Date.now();
        for (const ev of evs) {
          if (ev.kv.modRevision > opts.endRevision) {
            complete = true;
            stop.abort();
            return;
          }
          events.push(ev);
          lastSeen = ev.kv.modRevision;
          if (ev.kv.modRevision === opts.endRevision) complete = true;
        }
        if (complete) stop.abort();
      },
      onProgress: () => {
        lastMessageAt = Date.now();
      },
    });
    if (ended.reason === 'compacted') return { compactRevision: ended.compactRevision };
    if (complete) return { events };
    if (ended.reason === 'aborted') {
      throw new HistoryError('timeout', ErrorCode.ETCD_UNAVAILABLE, 'history: gave up replaying etcd events (timeout)');
    }
    throw ended.error;
  } finally {
    clearInterval(settle);
    opts.signal.removeEventListener('abort', onOuter);
  }
}

function isoOf(seconds: unknown): string | null {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return null;
  const d = new Date(seconds * 1000);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/**
 * Config changes, newest first, as `{revision, time, kind, id, op, by?}`, from the last
 * `maxRevisions` revisions that etcd still has (see replayRange for how the replay ends).
 * `kind`/`id` narrow the watched ranges, so etcd sends only that object's events.
 */
export async function history(client: EtcdClient, prefix: string, opts: HistoryOptions = {}): Promise<HistoryResult> {
  const limit = opts.limit ?? 100;
  const maxRevisions = opts.maxRevisions ?? 100_000;
  const keyPrefix = keyPrefixOf(prefix);
  if (opts.id !== undefined && opts.kind === undefined) {
    throw new HistoryError('invalid', ErrorCode.CONFIG_INVALID, 'history: an id needs a kind');
  }
  if (opts.kind !== undefined && !isKind(opts.kind)) {
    throw new HistoryError('invalid', ErrorCode.CONFIG_INVALID, `history: unknown kind '${String(opts.kind)}'`);
  }
  // the watched ranges: the whole config range, one kind's keys, or one object's key (its prefix
  // also covers ids that start with it: filtered below)
  const narrow = opts.kind === undefined ? '' : `${opts.kind}/${opts.id ?? ''}`;
  const configStart = narrow ? `${keyPrefix}${narrow}` : configRangeStart(keyPrefix);
  const configPrefix = narrow ? (opts.id === undefined ? `${keyPrefix}${opts.kind}/` : `${keyPrefix}${narrow}`) : keyPrefix;
  const auditPrefix = `${keyPrefix}_audit/${narrow}`;
  const toRevision = await currentRevision(client, keyPrefix);
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? 60_000);
  const settleMs = opts.settleMs ?? 300;
  const timedOut = () => new HistoryError('timeout', ErrorCode.ETCD_UNAVAILABLE, 'history: gave up replaying etcd events (timeout)');

  // Replayed newest window first, each four times the previous, until `limit` changes are found: a
  // catching-up watch gets about 1,000 revisions per 100 ms from etcd, so the usual question
  // (the last 100 changes) costs one small window instead of the whole retained history.
  let oldest = Math.max(1, toRevision - maxRevisions + 1);
  let hi = toRevision;
  let window = Math.max(1000, 4 * limit);
  let compactions = 0;
  let matches: WatchEvent[] = [];
  const audit: WatchEvent[] = [];
  let eventsScanned = 0;
  let fromRevision = toRevision + 1;
  while (hi >= oldest && matches.length < limit) {
    const lo = Math.max(oldest, hi - window + 1);
    const restart = new AbortController();
    const signal = AbortSignal.any([timeout, restart.signal]);
    const run = async (start: string, rangePrefix: string) => {
      const r = await replayRange(client, { start, keyPrefix: rangePrefix, startRevision: lo, endRevision: hi, settleMs, signal });
      // one range compacted: the other's replay is useless, both restart from the compaction point
      if ('compactRevision' in r) restart.abort();
      return r;
    };
    const [c, a] = await Promise.allSettled([run(configStart, configPrefix), run(auditPrefix, auditPrefix)]);
    if (timeout.aborted) throw timedOut();
    const compacted = [c, a].flatMap((r) => (r.status === 'fulfilled' && 'compactRevision' in r.value ? [r.value.compactRevision] : []));
    if (compacted.length > 0) {
      // the compaction revision itself can have lost its delete events: start after it
      if (++compactions > 3) throw compactedError(lo, undefined);
      oldest = Math.max(oldest, ...compacted.map((cr) => cr + 1));
      continue;
    }
    for (const r of [c, a]) if (r.status === 'rejected') throw r.reason;
    const configEvents = (c as PromiseFulfilledResult<RangeReplay>).value.events;
    const auditEvents = (a as PromiseFulfilledResult<RangeReplay>).value.events;
    eventsScanned += configEvents.length + auditEvents.length;
    const found: WatchEvent[] = [];
    for (const ev of configEvents) {
      const key = configKey(keyPrefix, ev.kv.key);
      if (!key) continue;
      if (opts.id !== undefined && key.id !== opts.id) continue;
      found.push(ev);
    }
    matches = found.concat(matches);
    for (const ev of auditEvents) audit.push(ev);
    fromRevision = lo;
    hi = lo - 1;
    window *= 4;
  }
  // fewer than asked for, and the maxRevisions bound (not a compaction) ended the scan: older
  // revisions may still hold changes
  const truncated = matches.length < limit && compactions === 0 && oldest > 1;

  // audit records by revision and object
  const auditAt = new Map<string, { time?: unknown; key_name?: unknown; role?: unknown }>();
  for (const ev of audit) {
    if (ev.type !== 'PUT') continue;
    const rest = ev.kv.key.slice(`${keyPrefix}_audit/`.length);
    const v = parseValue(ev.kv.value);
    if (isPlainObject(v)) auditAt.set(`${ev.kv.modRevision} ${rest}`, v);
  }
  const newest = matches.slice(-limit).reverse();
  const entries = newest.map((ev): HistoryEntry => {
    const { kind, id } = configKey(keyPrefix, ev.kv.key)!;
    const rec = auditAt.get(`${ev.kv.modRevision} ${kind}/${id}`);
    let time: string | null = null;
    if (rec && typeof rec.time === 'string' && !Number.isNaN(Date.parse(rec.time))) time = new Date(Date.parse(rec.time)).toISOString();
    else if (rec && typeof rec.time === 'number') time = isoOf(rec.time);
    else if (ev.type === 'PUT') {
      const v = parseValue(ev.kv.value);
      if (isPlainObject(v)) time = isoOf(v.update_time);
    }
    const entry: HistoryEntry = { revision: ev.kv.modRevision, time, kind, id, op: ev.type === 'DELETE' ? 'delete' : 'put' };
    if (rec && typeof rec.key_name === 'string' && typeof rec.role === 'string') entry.by = { key_name: rec.key_name, role: rec.role };
    return entry;
  });
  return { entries, fromRevision: Math.min(fromRevision, toRevision), toRevision, truncated, eventsScanned };
}

// ---------------------------------------------------------------------------------------------
// rollback

export interface RollbackOptions {
  by: Actor;
  /**
   * etcd's --max-txn-ops (default 128 in etcd 3.4/3.5). A rollback is one txn of 2 ops per touched
   * object (the object and its audit record) and 1 + touched compares; above the limit it is
   * refused rather than split, because a split rollback would not be atomic.
   */
  maxTxnOps?: number;
  /** the gateways' router mode, for validateObject (absent: the object must compile in every mode) */
  routerMode?: RouterMode;
}

export interface RollbackPlan {
  /** the revision being restored */
  revision: number;
  /** the revision the current config was read at; the txn fails if the config range changed since */
  base: number;
  puts: { kind: Kind; id: string; raw: string; currentModRevision: number }[];
  deletes: { kind: Kind; id: string; currentModRevision: number }[];
}

export interface RollbackResult {
  /** the revision of the rollback txn (the base revision when there was nothing to change) */
  revision: number;
  restored: string[];
  deleted: string[];
}

/**
 * What a rollback to `revision` would write, checked: the revision is not compacted, every object
 * to restore still validates, and the txn fits in `maxTxnOps`. Nothing is written.
 */
export async function planRollback(client: EtcdClient, prefix: string, revision: number, opts: Omit<RollbackOptions, 'by'> = {}): Promise<RollbackPlan> {
  const keyPrefix = keyPrefixOf(prefix);
  const now = await rangeAll(client, configRangeStart(keyPrefix), rangeEndOf(keyPrefix), 0);
  if (revision > now.revision) {
    throw new HistoryError('future', ErrorCode.REVISION, `rollback: revision ${revision} is newer than etcd's current revision ${now.revision}`);
  }
  const old = await configAt(client, prefix, revision);
  const current = new Map(toObjects(keyPrefix, now.kvs).map((o) => [objectKey(o), o]));
  const plan: RollbackPlan = { revision, base: now.revision, puts: [], deletes: [] };
  const invalid: string[] = [];
  for (const o of old) {
    const cur = current.get(objectKey(o));
    if (cur && cur.raw === o.raw) continue;
    if (!isJsonText(o.raw)) invalid.push(`${o.kind}/${o.id}: not valid JSON`);
    else {
      const verdict = validateObject(o.kind, o.id, o.value, opts.routerMode);
      if (!verdict.ok) invalid.push(verdict.rejection.reason);
    }
    plan.puts.push({ kind: o.kind, id: o.id, raw: o.raw, currentModRevision: cur?.modRevision ?? 0 });
  }
  if (invalid.length > 0) {
    throw new HistoryError(
      'invalid',
      ErrorCode.SCHEMA,
      `rollback to revision ${revision} refused: ${invalid.length === 1 ? 'an object' : `${invalid.length} objects`} of that revision no longer validate: ${invalid.join('; ')}`,
    );
  }
  const restored = new Set(old.map(objectKey));
  for (const [k, cur] of current) if (!restored.has(k)) plan.deletes.push({ kind: cur.kind, id: cur.id, currentModRevision: cur.modRevision });
  const touched = plan.puts.length + plan.deletes.length;
  const max = opts.maxTxnOps ?? 128;
  if (2 * touched > max || touched + 1 > max) {
    throw new HistoryError(
      'too_large',
      ErrorCode.LIMIT,
      `rollback to revision ${revision} touches ${touched} objects: ${2 * touched} txn ops (object + audit record each) and ${touched + 1} compares, over etcd's --max-txn-ops ${max}; it is one atomic txn and is not split: raise --max-txn-ops on every etcd member (and maxTxnOps here) to at least ${2 * touched}`,
    );
  }
  return plan;
}

function isJsonText(raw: string): boolean {
  try {
    JSON.parse(raw);
    return true;
  } catch {
    return false;
  }
}

/**
 * Writes a plan as ONE etcd txn: the old values back, deletes for objects that did not exist at
 * the revision, and an audit record per object. Guarded by compares:
 *  - every key of the config range has mod_revision <= plan.base (one range compare): any put
 *    after the plan was read — to a touched key, a new key, or an untouched one — fails it;
 *  - every touched key still has the mod_revision the plan read (0: still absent), which also
 *    catches a concurrent delete of a touched key.
 * A concurrent DELETE of an untouched object is not detected (etcd cannot compare a range's key
 * count): the rollback commits and that object stays deleted, as if the delete came just after.
 */
/**
 * The one etcd txn an apply or a rollback writes: each put and delete with its audit record
 * (`<prefix>/_audit/<kind>/<id>`: time, op and `audit`'s fields), guarded so that any write to the
 * config range after `base` fails it (a range compare), as does a touched key whose mod_revision
 * is not the one read (0: absent).
 */
export function guardedConfigTxn(
  keyPrefix: string,
  base: number,
  puts: ReadonlyArray<{ kind: Kind; id: string; text: string; currentModRevision: number }>,
  deletes: ReadonlyArray<{ kind: Kind; id: string; currentModRevision: number }>,
  audit: Record<string, unknown>,
): { compare: unknown[]; success: unknown[] } {
  const time = new Date().toISOString();
  const auditPut = (kind: Kind, id: string, op: 'put' | 'delete') => ({
    request_put: { key: encodeKey(`${keyPrefix}_audit/${kind}/${id}`), value: encodeKey(JSON.stringify({ time, op, ...audit })) },
  });
  const compare: unknown[] = [
    { key: encodeKey(configRangeStart(keyPrefix)), range_end: prefixRangeEnd(keyPrefix), target: 'MOD', result: 'LESS', mod_revision: String(base + 1) },
  ];
  const success: unknown[] = [];
  for (const p of puts) {
    const key = encodeKey(`${keyPrefix}${p.kind}/${p.id}`);
    compare.push({ key, target: 'MOD', result: 'EQUAL', mod_revision: String(p.currentModRevision) });
    success.push({ request_put: { key, value: encodeKey(p.text) } }, auditPut(p.kind, p.id, 'put'));
  }
  for (const d of deletes) {
    const key = encodeKey(`${keyPrefix}${d.kind}/${d.id}`);
    compare.push({ key, target: 'MOD', result: 'EQUAL', mod_revision: String(d.currentModRevision) });
    success.push({ request_delete_range: { key } }, auditPut(d.kind, d.id, 'delete'));
  }
  return { compare, success };
}

export async function commitRollback(client: EtcdClient, prefix: string, plan: RollbackPlan, by: Actor): Promise<RollbackResult> {
  const keyPrefix = keyPrefixOf(prefix);
  const restored = plan.puts.map(objectKey);
  const deleted = plan.deletes.map(objectKey);
  if (plan.puts.length + plan.deletes.length === 0) return { revision: plan.base, restored, deleted };
  const { compare, success } = guardedConfigTxn(keyPrefix, plan.base, plan.puts.map((p) => ({ ...p, text: p.raw })), plan.deletes, {
    key_name: by.key_name,
    role: by.role,
    rollback_to: plan.revision,
  });
  let res: { header?: RawHeader; succeeded?: boolean };
  try {
    res = await client.call('/v3/kv/txn', { compare, success, failure: [] }, { idempotent: false });
  } catch (err) {
    if (/too many operations in txn request/.test((err as Error)?.message ?? '')) {
      throw new HistoryError(
        'too_large',
        ErrorCode.LIMIT,
        `rollback to revision ${plan.revision}: etcd refused the txn of ${success.length} ops (too many operations): its --max-txn-ops is lower than the maxTxnOps given here`,
        { cause: err },
      );
    }
    throw err;
  }
  if (res.succeeded !== true) {
    throw new HistoryError(
      'conflict',
      ErrorCode.CONFLICT,
      `rollback to revision ${plan.revision}: the config changed after revision ${plan.base} (a concurrent write); nothing was written, retry`,
    );
  }
  return { revision: Number(res.header?.revision ?? 0), restored, deleted };
}

/** planRollback then commitRollback: the config as of `revision` back, atomically, or nothing. */
export async function rollback(client: EtcdClient, prefix: string, revision: number, opts: RollbackOptions): Promise<RollbackResult> {
  const plan = await planRollback(client, prefix, revision, opts);
  return commitRollback(client, prefix, plan, opts.by);
}
