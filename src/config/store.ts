import { ErrorCode } from '../errors.ts';
import { log } from '../observability/log.ts';
import type { RouterMode } from '../router/types.ts';
import type { CompileFailure } from '../runtime/types.ts';
import { checkValueLimits } from '../security/limits.ts';
import { KINDS, perKind, type Change, type ChangeSet, type Kind } from './changeset.ts';
import type { RouteConfig } from './schema/route.ts';
import type { ServiceConfig } from './schema/service.ts';
import { emptyDiff, emptySnapshot, type Snapshot, type SnapshotDiff, type SnapshotObjects, type StoredObject } from './snapshot.ts';
import { fingerprint } from './fingerprint.ts';
import { validateBounded, type ObjectValue, type Rejection, type Verdict } from './validate.ts';
import type { FrozenMap } from './frozen-map.ts';

/** A rejection as /status shows it. */
export interface RejectionRecord extends Rejection {
  /** source revision of the rejected version */
  modRevision: number;
  /** ISO time it was rejected */
  at: string;
}

export interface ApplyResult {
  snapshot: Snapshot;
  diff: SnapshotDiff;
  /** rejections raised by this change set */
  rejected: RejectionRecord[];
}

/** A schema-valid object of a listing (ConfigStore.prevalidate). */
export interface ValidObject {
  kind: Kind;
  id: string;
  modRevision: number;
  value: unknown;
  /** the value's JSON text as the source stored it (Change.text), when it came with one */
  text?: string;
}

/**
 * Receives each published snapshot. A listener that compiles it (the data plane) returns what it
 * could not compile; the store rejects those objects and publishes again without them.
 */
export type SnapshotListener = (snapshot: Snapshot, diff: SnapshotDiff) => readonly CompileFailure[] | void;

export interface ConfigStoreOptions {
  /** the router mode objects are compiled for; without one, routes must compile in every mode */
  routerMode?: RouterMode;
}

/** a desired (and published) object, with the fingerprint of the source's text it came from */
type Entry = StoredObject<ObjectValue> & Seen;
type Table = Map<string, Entry>;

const key = (kind: Kind, id: string) => `${kind}/${id}`;

/**
 * The one place that validates, keeps the last good version of every object, resolves references
 * and publishes snapshots. Sources feed it ChangeSets; the runtime subscribes to snapshots.
 *
 * Three layers per object:
 *  - what the source last sent (modRevision and content fingerprint: lets a full relist skip what
 *    did not change): the `desired` entry itself when that version was valid, else in `seen`
 *    (so 50,000 valid routes carry no second record each);
 *  - `desired`: the newest schema-valid version (an invalid newer version leaves the older one here);
 *  - the snapshot: the desired version if its references resolve, else the previous version in force
 *    if that one's references resolve, else nothing. Both failures are reported, never silent.
 *
 * One bad object never costs the others: a value over the size/depth limits is rejected before
 * anything recursive reads it, an exception while validating one object rejects that object, and
 * an object the data plane could not compile (reported by a listener or a worker) is rejected and
 * taken out of the snapshot. apply() does not throw on any input.
 */
export class ConfigStore {
  /** the versions the source sent last that are not the desired entry (invalid, unparsable, or failed to compile) */
  private readonly seen: Record<Kind, Map<string, Seen>> = perKind(() => new Map());
  private readonly desired: Record<Kind, Table> = perKind(() => new Map());
  /** schema / parse rejections of the newest source version, by "kind/id" */
  private readonly invalid = new Map<string, RejectionRecord>();
  /** reference problems of the desired version, by "kind/id" */
  private readonly dangling = new Map<string, RejectionRecord>();
  /**
   * "upstreams/ID" | "services/ID" | "plugin_configs/ID" -> the ids of the desired objects that
   * reference it, by their kind (ids as they are: no "kind/id" string per reference, 50,000 of
   * them for routes on one upstream)
   */
  private readonly dependents = new Map<string, Map<Kind, Set<string>>>();
  private current: Snapshot;
  private readonly listeners = new Set<SnapshotListener>();
  /**
   * verdicts of prevalidate(), by kind and value object, until apply() uses them (weak: gone with
   * the values): the object's id when it is valid (no object per verdict: at 50,000 routes those
   * outlived the listing as ~5 MB of garbage), the rejection otherwise
   */
  private readonly prevalidated: Record<Kind, WeakMap<object, string | Verdict>> = perKind(() => new WeakMap());
  /** rejections counted since start, by code: exported as a metric */
  readonly rejectionCount = new Map<string, number>();
  /** a first listing taken in page by page while it goes on (stage()), until apply() takes it */
  private staging: Staging | undefined;
  /** apply() ran once: stage() only takes a first listing into a store that holds nothing */
  private applied = false;

  private readonly routerMode: RouterMode | undefined;

  constructor(source = 'none', options: ConfigStoreOptions = {}) {
    this.current = emptySnapshot(source);
    this.routerMode = options.routerMode;
  }

  get snapshot(): Snapshot {
    return this.current;
  }

  /** Every object currently not in force as the source wrote it, with the reason. */
  rejections(): RejectionRecord[] {
    return [...this.invalid.values(), ...this.dangling.values()].sort((a, b) =>
      a.kind === b.kind ? a.id.localeCompare(b.id, 'en', { numeric: true }) : a.kind.localeCompare(b.kind),
    );
  }

  subscribe(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  apply(cs: ChangeSet): ApplyResult {
    const at = new Date().toISOString();
    const rejected: RejectionRecord[] = [];
    const reject = this.rejecter(at, rejected);
    this.applied = true;
    const staged = this.takeStaging(cs);
    if (staged !== undefined) {
      // the listing's objects are in `desired` (and `seen`) already: their rejections count now
      for (const r of staged.invalid) reject(r, r.modRevision, this.invalid);
      const diff = this.publish(staged.touched, { revision: cs.revision, source: cs.source, detail: cs.detail }, at, rejected);
      return { snapshot: this.current, diff, rejected };
    }

    // 1. Which changes are real: a full change set is diffed against what the source sent before.
    //    Bounds first: the diff serializes values, and JSON.stringify recurses.
    // (prevalidate() admitted those it validated: their limits are not walked again)
    const admitted = cs.changes.map((c) => (c.value !== null && typeof c.value === 'object' && this.prevalidated[c.kind].has(c.value) ? c : admit(c)));
    const changes: Change[] = cs.full ? this.diffFull(admitted, cs.revision) : admitted;

    // 2. Schema-validate into `desired`; remember which ids need their references re-resolved.
    const touched: Record<Kind, Set<string>> = perKind(() => new Set());
    for (const c of changes) {
      if (c.deleted) {
        this.seen[c.kind].delete(c.id);
        this.invalid.delete(key(c.kind, c.id));
        this.setDesired(c.kind, c.id, undefined);
        touched[c.kind].add(c.id);
        continue;
      }
      let result: Verdict;
      if (c.parseError !== undefined) result = parseRejected(c);
      else {
        // admit() checked the limits
        const early = this.prevalidated[c.kind].get(c.value as object);
        if (early === c.id) result = { ok: true, value: c.value as ObjectValue };
        else if (early !== undefined && typeof early !== 'string' && !early.ok && early.rejection.id === c.id) result = early;
        else result = this.validate(c);
        if (early !== undefined) this.prevalidated[c.kind].delete(c.value as object);
      }
      this.enter(c, result);
      if (result.ok) touched[c.kind].add(c.id);
      else reject(result.rejection, c.modRevision, this.invalid);
    }

    const diff = this.publish(touched, { revision: cs.revision, source: cs.source, detail: cs.detail }, at, rejected);
    return { snapshot: this.current, diff, rejected };
  }

  /**
   * Enters an admitted change that is not a deletion, by its verdict: as the desired object, or as
   * what the source sent last, rejected (the desired object, if any, stays: an invalid newer version
   * leaves the older one in force). Recording the rejection is the caller's.
   */
  private enter(c: Change, verdict: Verdict): void {
    const seen = seenOf(c);
    if (!verdict.ok) {
      this.seen[c.kind].set(c.id, seen);
      return;
    }
    // (no "kind/id" string per object while nothing is rejected: a first listing of 50,000)
    if (this.invalid.size > 0) this.invalid.delete(key(c.kind, c.id));
    this.seen[c.kind].delete(c.id); // the desired entry records it
    this.setDesired(c.kind, c.id, { id: c.id, modRevision: c.modRevision, value: verdict.value, h1: seen.h1, h2: seen.h2 });
  }

  /** validateBounded, where a validator bug costs this object only, never the rest of the change set. */
  private validate(c: Change): Verdict {
    try {
      return validateBounded(c.kind, c.id, c.value, this.routerMode);
    } catch (err) {
      const reason = `${key(c.kind, c.id)}: /: could not be validated: ${(err as Error)?.message ?? String(err)}`;
      return { ok: false, rejection: { kind: c.kind, id: c.id, code: ErrorCode.COMPILE, reason } };
    }
  }

  /**
   * Validates changes that a coming ChangeSet will carry (a source's initial list, page by page,
   * while the next page is fetched). apply() then finds the verdict of the very same value object
   * instead of validating it again. Verdicts depend only on kind, id, value and router mode.
   *
   * `valid`: gets each change that passed, as the object it will be in the snapshot unless its
   * references do not resolve (worker processes build their tables from them while the listing
   * goes on: server/listing-ahead.ts).
   */
  prevalidate(changes: readonly Change[], valid?: ValidObject[]): void {
    for (const raw of changes) {
      if (raw.deleted || raw.parseError !== undefined || raw.value === null || typeof raw.value !== 'object') continue;
      const c = admit(raw);
      if (c.parseError !== undefined) continue;
      const verdict = this.validate(c);
      this.prevalidated[c.kind].set(c.value as object, verdict.ok && verdict.value === c.value ? c.id : verdict);
      if (verdict.ok && valid !== undefined) valid.push({ kind: c.kind, id: c.id, modRevision: c.modRevision, value: verdict.value, text: c.text });
    }
  }

  /**
   * Takes a page of a store's first listing in while the listing goes on: each change validated
   * (as prevalidate() does, `valid` likewise) and entered as the store's desired object, or as
   * rejected, so that apply() of the full ChangeSet made of exactly these changes only resolves
   * references and publishes — the work of the listing's last page, not of all 50,000 objects, is
   * left between the end of the listing and the first snapshot. Nothing is visible before that
   * apply(): the snapshot and the rejections are unchanged until then.
   *
   * A store that applied anything already (a relist, or a snapshot from disk served while the
   * source was down) only prevalidates: a relist's objects must be compared with what is in force.
   * apply() of any other ChangeSet drops what was staged (a listing that failed half way, then was
   * listed again: its pages are staged again, but the first attempt's would be stale).
   */
  stage(changes: readonly Change[], valid?: ValidObject[]): void {
    if (this.staging === undefined) {
      if (this.applied) return this.prevalidate(changes, valid);
      this.staging = { changes: new Set(), touched: perKind(() => new Set()), invalid: [] };
    }
    const { changes: staged, touched, invalid } = this.staging;
    for (const raw of changes) {
      staged.add(raw);
      // (a listing carries no deletions; an apply() of one that did would not match the staging)
      if (raw.deleted) continue;
      const c = admit(raw);
      const result = c.parseError !== undefined ? parseRejected(c) : this.validate(c);
      this.enter(c, result);
      if (!result.ok) {
        invalid.push({ ...result.rejection, modRevision: c.modRevision });
        continue;
      }
      touched[c.kind].add(c.id);
      if (valid !== undefined) valid.push({ kind: c.kind, id: c.id, modRevision: c.modRevision, value: result.value, text: c.text });
    }
  }

  /**
   * The staging, when `cs` is the full ChangeSet made of exactly the staged changes; any other
   * ChangeSet drops it (the store held nothing before it, so nothing else is lost).
   */
  private takeStaging(cs: ChangeSet): Staging | undefined {
    const staging = this.staging;
    if (staging === undefined) return undefined;
    this.staging = undefined;
    if (cs.full && cs.changes.length === staging.changes.size && cs.changes.every((c) => staging.changes.has(c))) return staging;
    for (const kind of KINDS) {
      this.desired[kind].clear();
      this.seen[kind].clear();
    }
    this.dependents.clear();
    return undefined;
  }

  /**
   * Rejects objects the data plane could not compile (PORTICO_ERR_COMPILE) and publishes a snapshot
   * without them. A failure for a version that is no longer in force is ignored (a worker's report
   * can arrive after a newer version). Returns the new rejections.
   */
  rejectCompileFailures(failures: readonly CompileFailure[]): RejectionRecord[] {
    const rejected: RejectionRecord[] = [];
    this.rejectFailed(failures, new Date().toISOString(), rejected);
    return rejected;
  }

  /** Returns the diff of the snapshot published without the failed objects, if any was. */
  private rejectFailed(failures: readonly CompileFailure[], at: string, rejected: RejectionRecord[]): SnapshotDiff | undefined {
    const reject = this.rejecter(at, rejected);
    let any = false;
    const touched: Record<Kind, Set<string>> = perKind(() => new Set());
    for (const f of failures) {
      const inForce = this.current[f.kind].get(f.id);
      if (!inForce || inForce.modRevision !== f.modRevision) continue;
      reject({ kind: f.kind, id: f.id, code: ErrorCode.COMPILE, reason: f.reason }, f.modRevision, this.invalid);
      const failed = this.desired[f.kind].get(f.id);
      if (failed?.modRevision === f.modRevision) {
        // still what the source sent last: a relist must not take it as new
        if (!this.seen[f.kind].has(f.id)) this.seen[f.kind].set(f.id, { modRevision: failed.modRevision, h1: failed.h1, h2: failed.h2 });
        this.setDesired(f.kind, f.id, undefined);
      }
      touched[f.kind].add(f.id);
      any = true;
    }
    if (!any) return undefined;
    // the version in force is the one that failed: it must not stay as a fallback either
    const s = this.current;
    this.current = { ...s, ...without(s, touched) };
    return this.publish(touched, { revision: s.revision, source: s.source, detail: s.detail }, at, rejected, true);
  }

  private rejecter(at: string, rejected: RejectionRecord[]) {
    return (r: Rejection, modRevision: number, into: Map<string, RejectionRecord>) => {
      const rec = { ...r, modRevision, at };
      into.set(key(r.kind, r.id), rec);
      rejected.push(rec);
      this.rejectionCount.set(r.code, (this.rejectionCount.get(r.code) ?? 0) + 1);
    };
  }

  /**
   * Resolves references of what changed (and of what depends on it), publishes the snapshot, and
   * rejects whatever a listener could not compile. `removed`: the touched ids were already taken
   * out of `this.current` (they count as changed even though the resolve step finds them absent).
   * `touched` is taken over: each kind's set grows with the objects to re-resolve. Returns what
   * changed in force, over every snapshot published on the way.
   */
  private publish(
    touched: Record<Kind, Set<string>>,
    head: { revision: number; source: string; detail?: string },
    at: string,
    rejected: RejectionRecord[],
    removed = false,
  ): SnapshotDiff {
    const reject = this.rejecter(at, rejected);
    // 3. Resolve references in dependency order: upstreams, then services, then routes.
    const prev = this.current;
    const next = perKind((kind) => prev[kind]) as Record<Kind, ReadonlyMap<string, Entry>>;
    const diff = emptyDiff();
    if (removed) for (const kind of KINDS) for (const id of touched[kind]) diff[kind].add(id);
    for (const kind of KINDS_IN_ORDER) {
      // objects that refer to something whose version in force changed must be re-resolved too
      // (the caller's set, taken over: no copy of a first listing's 50,000 ids)
      const todo = touched[kind];
      if (this.dangling.size > 0) for (const d of this.dangling.values()) if (d.kind === kind) todo.add(d.id);
      for (const target of DEPENDS_ON[kind]) {
        // a reference resolves by existence: only a target that appeared or went away changes
        // anything for its dependents (a new version of an upstream 50,000 routes use must not
        // re-resolve them all: 71 ms, measured)
        for (const id of diff[target]) {
          // (`removed`: the caller took the ids out of the snapshot before this: they went away)
          if (!removed && (prev[target].get(id) === undefined) === (next[target].get(id) === undefined)) continue;
          for (const depId of this.dependents.get(key(target, id))?.get(kind) ?? []) todo.add(depId);
        }
      }
      if (todo.size === 0) continue;
      const edits = new Map<string, Entry | undefined>();
      for (const id of todo) {
        const want = this.desired[kind].get(id);
        const inForce = next[kind].get(id);
        let chosen: Entry | undefined;
        const problem = want && this.unresolved(kind, want.value, next);
        if (!want || !problem) {
          // (no "kind/id" string per object while nothing dangles: a first listing of 50,000)
          if (this.dangling.size > 0) this.dangling.delete(key(kind, id));
          chosen = want;
        } else {
          const k = key(kind, id);
          if (!this.dangling.has(k) || this.dangling.get(k)!.reason !== `${k}: ${problem}`) {
            reject({ kind, id, code: ErrorCode.REFERENCE, reason: `${k}: ${problem}` }, want.modRevision, this.dangling);
          }
          // keep the version in force if it still resolves: the last good config keeps serving
          if (inForce && inForce !== want && !this.unresolved(kind, inForce.value, next)) chosen = inForce;
        }
        if (chosen !== inForce) {
          edits.set(id, chosen);
          diff[kind].add(id);
        }
      }
      next[kind] = (next[kind] as FrozenMap<Entry>).update(edits);
    }

    this.current = {
      revision: head.revision,
      source: head.source,
      detail: head.detail,
      appliedAt: at,
      ...(next as unknown as SnapshotObjects),
    };
    const failures: CompileFailure[] = [];
    for (const l of this.listeners) {
      try {
        const f = l(this.current, diff);
        if (f) failures.push(...f);
      } catch (err) {
        // a listener must not stop the others from seeing the snapshot
        log.error({ err }, 'snapshot listener failed');
      }
    }
    // each round takes objects out, so this ends
    const more = failures.length > 0 ? this.rejectFailed(failures, at, rejected) : undefined;
    if (!more) return diff;
    const union = emptyDiff();
    for (const kind of KINDS) for (const id of [...diff[kind], ...more[kind]]) union[kind].add(id);
    return union;
  }

  /** Turns a complete listing into the changes against what the source sent before. */
  private diffFull(listing: readonly Change[], revision: number): Change[] {
    const out: Change[] = [];
    // what the listing lacks is deleted: only objects known before can be (none at the first listing)
    const known = KINDS.some((kind) => this.seen[kind].size > 0 || this.desired[kind].size > 0);
    const listed: Record<Kind, Set<string>> = perKind(() => new Set());
    for (const c of listing) {
      if (c.deleted) continue;
      if (known) listed[c.kind].add(c.id);
      const before = this.seen[c.kind].get(c.id) ?? this.desired[c.kind].get(c.id);
      // Unchanged objects are not revalidated nor recompiled. The same mod_revision alone does not
      // prove the same content: after etcd was wiped or restored from a backup, revisions count
      // from 1 again, and a key rewritten at an old revision number may hold another value.
      if (before !== undefined && before.modRevision === c.modRevision && sameContent(before, seenOf(c))) continue;
      out.push(c);
    }
    if (known) for (const kind of KINDS) {
      for (const id of new Set([...this.seen[kind].keys(), ...this.desired[kind].keys()])) {
        if (!listed[kind].has(id)) out.push({ kind, id, modRevision: revision, deleted: true });
      }
    }
    return out;
  }

  private setDesired(kind: Kind, id: string, entry: Entry | undefined): void {
    const old = this.desired[kind].get(id);
    if (old) for (const ref of references(kind, old.value)) this.dependents.get(ref)?.get(kind)?.delete(id);
    if (!entry) {
      this.desired[kind].delete(id);
      return;
    }
    this.desired[kind].set(id, entry);
    for (const ref of references(kind, entry.value)) {
      let byKind = this.dependents.get(ref);
      if (!byKind) this.dependents.set(ref, (byKind = new Map()));
      let ids = byKind.get(kind);
      if (!ids) byKind.set(kind, (ids = new Set()));
      ids.add(id);
    }
  }

  /** Why an object's references do not resolve against the objects in force, or undefined. */
  private unresolved(kind: Kind, value: ObjectValue, inForce: Record<Kind, ReadonlyMap<string, Entry>>): string | undefined {
    if (kind !== 'routes' && kind !== 'services' && kind !== 'stream_routes') return undefined;
    const v = value as RouteConfig & ServiceConfig;
    if (kind === 'stream_routes') {
      if (v.upstream_id !== undefined && !inForce.upstreams.has(String(v.upstream_id))) return `/upstream_id: upstream '${v.upstream_id}' not found`;
      if (v.service_id === undefined) return undefined;
      const service = inForce.services.get(String(v.service_id));
      if (!service) return `/service_id: service '${v.service_id}' not found`;
      const s = service.value as ServiceConfig;
      if (!v.upstream && v.upstream_id === undefined && !s.upstream && s.upstream_id === undefined) {
        return `/service_id: neither the stream route nor service '${v.service_id}' has an upstream`;
      }
      return undefined;
    }
    if (kind === 'routes' && v.plugin_config_id !== undefined && !inForce.plugin_configs.has(String(v.plugin_config_id))) {
      return `/plugin_config_id: plugin_config '${v.plugin_config_id}' not found`;
    }
    if (v.upstream_id !== undefined && !inForce.upstreams.has(String(v.upstream_id))) {
      return `/upstream_id: upstream '${v.upstream_id}' not found`;
    }
    if (kind === 'routes' && v.service_id !== undefined) {
      const service = inForce.services.get(String(v.service_id));
      if (!service) return `/service_id: service '${v.service_id}' not found`;
      const s = service.value as ServiceConfig;
      if (!v.upstream && v.upstream_id === undefined && !s.upstream && s.upstream_id === undefined && !v.plugins && !s.plugins) {
        return `/service_id: neither the route nor service '${v.service_id}' has an upstream`;
      }
    }
    return undefined;
  }
}

/** A first listing staged page by page (ConfigStore.stage). */
interface Staging {
  /** the staged changes, by identity: apply() takes the staging for the ChangeSet made of exactly these */
  changes: Set<Change>;
  /** the valid objects, entered into `desired`: what the first snapshot resolves and publishes */
  touched: Record<Kind, Set<string>>;
  /** schema and parse rejections, recorded (and counted) when the listing is applied */
  invalid: Array<Rejection & { modRevision: number }>;
}

/**
 * What the source last sent for an object: its revision and a 64-bit fingerprint of its content
 * (two int32 halves: small integers are stored inline, where the text itself was the largest
 * string per object — ~5 MB at 50,000 routes — kept only to be compared on a relist).
 */
interface Seen {
  modRevision: number;
  h1: number;
  h2: number;
}

/**
 * A change whose value is over the size/depth limits becomes a rejection-to-be that no longer
 * holds the value: nothing after this point can recurse into it.
 */
function admit(c: Change): Change {
  if (c.deleted || c.parseError !== undefined) return c;
  let over: string | undefined;
  let code: ErrorCode = ErrorCode.LIMIT;
  try {
    over = checkValueLimits(c.value);
  } catch (err) {
    // not plain data (a throwing getter): no source produces that, but it must cost only itself
    over = `/: could not be read: ${(err as Error)?.message ?? String(err)}`;
    code = ErrorCode.COMPILE;
  }
  if (over === undefined) return c;
  return { kind: c.kind, id: c.id, modRevision: c.modRevision, parseError: over, parseErrorCode: code };
}

/** The rejection of a change its source could not parse (or admit() refused). */
function parseRejected(c: Change): Verdict {
  const reason = `${key(c.kind, c.id)}: ${c.parseError}`;
  return { ok: false, rejection: { kind: c.kind, id: c.id, code: c.parseErrorCode ?? ErrorCode.PARSE, reason } };
}

/** The snapshot's maps without the given ids. */
function without(s: Snapshot, ids: Record<Kind, Set<string>>): Pick<Snapshot, Kind> {
  const drop = (kind: Kind) => {
    const edits = new Map<string, undefined>();
    for (const id of ids[kind]) edits.set(id, undefined);
    return (s[kind] as FrozenMap<Entry>).update(edits);
  };
  return perKind(drop) as unknown as Pick<Snapshot, Kind>;
}

/**
 * What a full relist compares to tell an unchanged object: the fingerprint the source took of its
 * text when it has one (no serializing again), else of the value serialized; a parse error by its
 * reason.
 */
function seenOf(c: Change): Seen {
  const { h1, h2 } = c.parseError !== undefined ? fingerprint(`!${c.parseError}`) : (c.fingerprint ?? fingerprint(JSON.stringify(c.value)));
  return { modRevision: c.modRevision, h1, h2 };
}

function sameContent(a: Seen, b: Seen): boolean {
  return a.h1 === b.h1 && a.h2 === b.h2;
}

const KINDS_IN_ORDER: readonly Kind[] = ['upstreams', 'consumers', 'plugin_configs', 'global_rules', 'ssls', 'services', 'routes', 'stream_routes'];
/** which kinds an object of a kind can reference */
const DEPENDS_ON: Record<Kind, readonly Kind[]> = {
  upstreams: [],
  consumers: [],
  plugin_configs: [],
  global_rules: [],
  services: ['upstreams'],
  routes: ['upstreams', 'services', 'plugin_configs'],
  ssls: [],
  stream_routes: ['upstreams', 'services'],
};

function references(kind: Kind, value: ObjectValue): string[] {
  if (kind !== 'routes' && kind !== 'services' && kind !== 'stream_routes') return [];
  const v = value as RouteConfig;
  const refs: string[] = [];
  if (v.upstream_id !== undefined) refs.push(key('upstreams', String(v.upstream_id)));
  if (kind !== 'services' && v.service_id !== undefined) refs.push(key('services', String(v.service_id)));
  if (kind === 'routes' && v.plugin_config_id !== undefined) refs.push(key('plugin_configs', String(v.plugin_config_id)));
  return refs;
}

