import { KINDS, perKind, type Kind } from './changeset.ts';
import { FrozenMap } from './frozen-map.ts';
import { emptyDiff, emptySnapshot, type Snapshot, type SnapshotDiff, type SnapshotObjects, type StoredObject } from './snapshot.ts';

/**
 * A published snapshot's change, as sent to worker processes: the objects whose version in force
 * changed (null: removed), or with `full`, every object in force (what is not listed is removed).
 * Workers do not validate again: they receive the store's output, not the source's input.
 */
export interface SnapshotUpdate {
  full: boolean;
  revision: number;
  source: string;
  detail?: string;
  appliedAt: string;
  changes: Array<{ kind: Kind; id: string; object: StoredObject<unknown> | null }>;
}

export function updateOf(snapshot: Snapshot, diff: SnapshotDiff | undefined): SnapshotUpdate {
  const changes: SnapshotUpdate['changes'] = [];
  for (const kind of KINDS) {
    const ids = diff ? diff[kind] : snapshot[kind].keys();
    for (const id of ids) {
      const o = snapshot[kind].get(id);
      // the stored object's own fields only (the store's bookkeeping stays in its process)
      changes.push({ kind, id, object: o === undefined ? null : { id: o.id, modRevision: o.modRevision, value: o.value } });
    }
  }
  const { revision, source, detail, appliedAt } = snapshot;
  return { full: diff === undefined, revision, source, detail, appliedAt, changes };
}

/** Rebuilds snapshots from updates, in another process. */
export class SnapshotReplica {
  snapshot: Snapshot = emptySnapshot('none');
  /** tables changed in place by applyDraft() until the next apply() freezes them */
  private draft: Record<Kind, Map<string, StoredObject<unknown>>> | undefined;

  /**
   * Applies objects that are not in force yet (a worker's listing before its first snapshot, which
   * is never served): the tables are changed in place, not copied per update as published snapshots
   * must be. The next apply() freezes them and goes on from there.
   */
  applyDraft(update: SnapshotUpdate): { snapshot: Snapshot; diff: SnapshotDiff } {
    const prev = this.snapshot;
    this.draft ??= perKind((kind) => new Map(prev[kind] as ReadonlyMap<string, StoredObject<unknown>>));
    const tables = this.draft;
    const diff = emptyDiff();
    for (const c of update.changes) {
      if (c.object === null) tables[c.kind].delete(c.id);
      else tables[c.kind].set(c.id, c.object);
      diff[c.kind].add(c.id);
    }
    const { revision, source, detail, appliedAt } = update;
    this.snapshot = { revision, source, detail, appliedAt, ...(tables as unknown as SnapshotObjects) };
    return { snapshot: this.snapshot, diff };
  }

  apply(update: SnapshotUpdate): { snapshot: Snapshot; diff: SnapshotDiff } {
    if (this.draft !== undefined) {
      const tables = this.draft;
      this.draft = undefined;
      this.snapshot = { ...this.snapshot, ...(perKind((kind) => FrozenMap.adopt(tables[kind])) as unknown as SnapshotObjects) };
    }
    const diff = emptyDiff();
    type Edits = Map<string, StoredObject<unknown> | undefined>;
    const edits: Record<Kind, Edits> = perKind(() => new Map());
    for (const c of update.changes) {
      edits[c.kind].set(c.id, c.object ?? undefined);
      diff[c.kind].add(c.id);
    }
    if (update.full) {
      for (const kind of KINDS) {
        for (const id of this.snapshot[kind].keys()) {
          if (!edits[kind].has(id)) {
            edits[kind].set(id, undefined);
            diff[kind].add(id);
          }
        }
      }
    }
    const prev = this.snapshot;
    this.snapshot = {
      revision: update.revision,
      source: update.source,
      detail: update.detail,
      appliedAt: update.appliedAt,
      ...(perKind((kind) => (prev[kind] as FrozenMap<StoredObject<unknown>>).update(edits[kind])) as unknown as SnapshotObjects),
    };
    return { snapshot: this.snapshot, diff };
  }
}
