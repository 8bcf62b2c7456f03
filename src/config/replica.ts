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

  apply(update: SnapshotUpdate): { snapshot: Snapshot; diff: SnapshotDiff } {
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
