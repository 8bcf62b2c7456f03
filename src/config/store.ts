import { ErrorCode } from '../errors.ts';
import { KINDS, type Change, type ChangeSet, type Kind } from './changeset.ts';
import type { RouteConfig } from './schema/route.ts';
import type { ServiceConfig } from './schema/service.ts';
import { emptyDiff, emptySnapshot, type Snapshot, type SnapshotDiff, type StoredObject } from './snapshot.ts';
import { validateObject, type ObjectValue, type Rejection } from './validate.ts';
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

export type SnapshotListener = (snapshot: Snapshot, diff: SnapshotDiff) => void;

type Entry = StoredObject<ObjectValue>;
type Table = Map<string, Entry>;

const key = (kind: Kind, id: string) => `${kind}/${id}`;

/**
 * The one place that validates, keeps the last good version of every object, resolves references
 * and publishes snapshots. Sources feed it ChangeSets; the runtime subscribes to snapshots.
 *
 * Three layers per object:
 *  - `seen`: the modRevision of the newest version the source sent, valid or not (lets a full relist
 *    skip what did not change);
 *  - `desired`: the newest schema-valid version (an invalid newer version leaves the older one here);
 *  - the snapshot: the desired version if its references resolve, else the previous version in force
 *    if that one's references resolve, else nothing. Both failures are reported, never silent.
 */
export class ConfigStore {
  private readonly seen: Record<Kind, Map<string, Seen>> = { routes: new Map(), services: new Map(), upstreams: new Map() };
  private readonly desired: Record<Kind, Table> = { routes: new Map(), services: new Map(), upstreams: new Map() };
  /** schema / parse rejections of the newest source version, by "kind/id" */
  private readonly invalid = new Map<string, RejectionRecord>();
  /** reference problems of the desired version, by "kind/id" */
  private readonly dangling = new Map<string, RejectionRecord>();
  /** "upstreams/ID" | "services/ID" -> keys of desired objects that reference it */
  private readonly dependents = new Map<string, Set<string>>();
  private current: Snapshot;
  private readonly listeners = new Set<SnapshotListener>();
  /** rejections counted since start, by code: exported as a metric */
  readonly rejectionCount = new Map<string, number>();

  constructor(source = 'none') {
    this.current = emptySnapshot(source);
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
    const reject = (r: Rejection, modRevision: number, into: Map<string, RejectionRecord>) => {
      const rec = { ...r, modRevision, at };
      into.set(key(r.kind, r.id), rec);
      rejected.push(rec);
      this.rejectionCount.set(r.code, (this.rejectionCount.get(r.code) ?? 0) + 1);
    };

    // 1. Which changes are real: a full change set is diffed against what the source sent before.
    const changes: Change[] = cs.full ? this.diffFull(cs) : cs.changes;

    // 2. Schema-validate into `desired`; remember which ids need their references re-resolved.
    const touched: Record<Kind, Set<string>> = { routes: new Set(), services: new Set(), upstreams: new Set() };
    for (const c of changes) {
      const k = key(c.kind, c.id);
      if (c.deleted) {
        this.seen[c.kind].delete(c.id);
        this.invalid.delete(k);
        this.setDesired(c.kind, c.id, undefined);
        touched[c.kind].add(c.id);
        continue;
      }
      this.seen[c.kind].set(c.id, { modRevision: c.modRevision, content: contentOf(c) });
      if (c.parseError !== undefined) {
        reject({ kind: c.kind, id: c.id, code: ErrorCode.PARSE, reason: `${k}: ${c.parseError}` }, c.modRevision, this.invalid);
        continue;
      }
      const result = validateObject(c.kind, c.id, c.value);
      if (!result.ok) {
        reject(result.rejection, c.modRevision, this.invalid);
        continue;
      }
      this.invalid.delete(k);
      this.setDesired(c.kind, c.id, { id: c.id, modRevision: c.modRevision, value: result.value });
      touched[c.kind].add(c.id);
    }

    // 3. Resolve references in dependency order: upstreams, then services, then routes.
    const prev = this.current;
    const next = { routes: prev.routes, services: prev.services, upstreams: prev.upstreams } as Record<Kind, ReadonlyMap<string, Entry>>;
    const diff = emptyDiff();
    for (const kind of KINDS_IN_ORDER) {
      // objects that refer to something whose version in force changed must be re-resolved too
      const todo = new Set(touched[kind]);
      for (const d of this.dangling.values()) if (d.kind === kind) todo.add(d.id);
      for (const target of DEPENDS_ON[kind]) {
        for (const id of diff[target]) for (const dep of this.dependents.get(key(target, id)) ?? []) {
          const [depKind, depId] = splitKey(dep);
          if (depKind === kind) todo.add(depId);
        }
      }
      if (todo.size === 0) continue;
      const edits = new Map<string, Entry | undefined>();
      for (const id of todo) {
        const want = this.desired[kind].get(id);
        const inForce = next[kind].get(id);
        let chosen: Entry | undefined;
        const k = key(kind, id);
        if (!want) {
          this.dangling.delete(k);
        } else {
          const problem = this.unresolved(kind, want.value, next);
          if (!problem) {
            this.dangling.delete(k);
            chosen = want;
          } else {
            if (!this.dangling.has(k) || this.dangling.get(k)!.reason !== `${k}: ${problem}`) {
              reject({ kind, id, code: ErrorCode.REFERENCE, reason: `${k}: ${problem}` }, want.modRevision, this.dangling);
            }
            // keep the version in force if it still resolves: the last good config keeps serving
            if (inForce && inForce !== want && !this.unresolved(kind, inForce.value, next)) chosen = inForce;
          }
        }
        if (chosen !== inForce) {
          edits.set(id, chosen);
          diff[kind].add(id);
        }
      }
      next[kind] = (next[kind] as FrozenMap<Entry>).update(edits);
    }

    this.current = {
      revision: cs.revision,
      source: cs.source,
      detail: cs.detail,
      appliedAt: at,
      routes: next.routes as Snapshot['routes'],
      services: next.services as Snapshot['services'],
      upstreams: next.upstreams as Snapshot['upstreams'],
    };
    for (const l of this.listeners) l(this.current, diff);
    return { snapshot: this.current, diff, rejected };
  }

  /** Turns a complete listing into the changes against what the source sent before. */
  private diffFull(cs: ChangeSet): Change[] {
    const out: Change[] = [];
    const listed: Record<Kind, Set<string>> = { routes: new Set(), services: new Set(), upstreams: new Set() };
    for (const c of cs.changes) {
      if (c.deleted) continue;
      listed[c.kind].add(c.id);
      const before = this.seen[c.kind].get(c.id);
      // Unchanged objects are not revalidated nor recompiled. The same mod_revision alone does not
      // prove the same content: after etcd was wiped or restored from a backup, revisions count
      // from 1 again, and a key rewritten at an old revision number may hold another value.
      if (before !== undefined && before.modRevision === c.modRevision && before.content === contentOf(c)) continue;
      out.push(c);
    }
    for (const kind of KINDS) {
      for (const id of new Set([...this.seen[kind].keys(), ...this.desired[kind].keys()])) {
        if (!listed[kind].has(id)) out.push({ kind, id, modRevision: cs.revision, deleted: true });
      }
    }
    return out;
  }

  private setDesired(kind: Kind, id: string, entry: Entry | undefined): void {
    const k = key(kind, id);
    const old = this.desired[kind].get(id);
    if (old) for (const ref of references(kind, old.value)) this.dependents.get(ref)?.delete(k);
    if (!entry) {
      this.desired[kind].delete(id);
      return;
    }
    this.desired[kind].set(id, entry);
    for (const ref of references(kind, entry.value)) {
      let set = this.dependents.get(ref);
      if (!set) this.dependents.set(ref, (set = new Set()));
      set.add(k);
    }
  }

  /** Why an object's references do not resolve against the objects in force, or undefined. */
  private unresolved(kind: Kind, value: ObjectValue, inForce: Record<Kind, ReadonlyMap<string, Entry>>): string | undefined {
    if (kind === 'upstreams') return undefined;
    const v = value as RouteConfig & ServiceConfig;
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

/** What the source last sent for an object: its revision and its content, as canonical text. */
interface Seen {
  modRevision: number;
  content: string;
}

function contentOf(c: Change): string {
  return c.parseError !== undefined ? `!${c.parseError}` : JSON.stringify(c.value);
}

const KINDS_IN_ORDER: readonly Kind[] = ['upstreams', 'services', 'routes'];
/** which kinds an object of a kind can reference */
const DEPENDS_ON: Record<Kind, readonly Kind[]> = { upstreams: [], services: ['upstreams'], routes: ['upstreams', 'services'] };

function references(kind: Kind, value: ObjectValue): string[] {
  if (kind === 'upstreams') return [];
  const v = value as RouteConfig;
  const refs: string[] = [];
  if (v.upstream_id !== undefined) refs.push(key('upstreams', String(v.upstream_id)));
  if (kind === 'routes' && v.service_id !== undefined) refs.push(key('services', String(v.service_id)));
  return refs;
}

function splitKey(k: string): [Kind, string] {
  const i = k.indexOf('/');
  return [k.slice(0, i) as Kind, k.slice(i + 1)];
}
