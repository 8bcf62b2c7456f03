import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { KINDS, perKind, type Kind } from '../config/changeset.ts';
import type { SnapshotUpdate } from '../config/replica.ts';
import type { Snapshot, StoredObject } from '../config/snapshot.ts';
import type { ValidObject } from '../config/store.ts';
import { log } from '../observability/log.ts';
import { removeWorkerFile, workerFilePath } from './worker-files.ts';

/*
 * The listing, ahead of the snapshot: while the primary lists the config source at start, the
 * workers build their tables from it, so that they are ready soon after the primary instead of
 * compiling everything only once the first snapshot is published.
 *
 * The primary appends the schema-valid objects of each validated page to one file (a line of JSON
 * per batch) and tells each worker how far the file goes; a worker applies each batch to its data
 * plane, not listening yet. Once the snapshot is published, the primary sends a worker that followed
 * the file only what differs from it (an update relative to the file's objects: those whose
 * references did not resolve, or that changed since): usually nothing, in one small IPC message,
 * instead of the whole snapshot. A worker that did not follow it (a replacement, or one that said
 * hello after the start) gets the whole snapshot as before (server/snapshot-handoff.ts).
 *
 * Measured at 50,000 routes with two workers: docs/operations.md, "Large configs and fleets".
 */

/**
 * objects per line: a worker applies a line at a time, and is told of each. A note wakes the worker,
 * which on a busy machine takes the core from the primary: at 50,000 routes the primary spent 139 ms
 * in 50 rounds of notes with lines of 1,000, 22 ms in 10 with lines of 5,000 (measured).
 */
const BATCH = 5000;

/** A batch of the file: `[kind, id, modRevision, value]` per object. */
type Line = Array<[Kind, string, number, unknown]>;

/** The primary's side: writes the file, then settles each follower with the published snapshot. */
export class ListingAhead {
  private fd: number | undefined;
  private path: string | undefined;
  /** bytes written: a worker told `end` reads whole lines up to there */
  private end = 0;
  private pending: ValidObject[] = [];
  /** modRevision of each object written (the last line wins, as in the workers), by kind and id */
  private readonly written: Record<Kind, Map<string, number>> = perKind(() => new Map());
  /** workers that were told of the file and have not applied their first snapshot */
  private readonly followers = new Set<number>();
  /** no more objects (the first snapshot was published), or the file could not be written */
  private finished = false;
  private settled: { snapshot: Snapshot; update: SnapshotUpdate } | undefined;
  private readonly removeFile = () => this.close();

  constructor(
    private readonly dir = tmpdir(),
    /** objects per line */
    private readonly batch = BATCH,
  ) {}

  /** Valid objects of the listing; returns true when a line was written (tell the followers). */
  add(objects: readonly ValidObject[]): boolean {
    if (this.finished) return false;
    for (const o of objects) this.pending.push(o);
    return this.pending.length >= this.batch && this.flush();
  }

  /**
   * `reader` follows the file from its start (tell it `position` now and after each line), unless
   * the listing is over or no file could be written.
   */
  follow(reader: number): void {
    if (!this.finished) this.followers.add(reader);
  }

  /** `reader` follows a file that has lines (with none, it gets the whole snapshot: from a file source, say) */
  follows(reader: number): boolean {
    return this.path !== undefined && this.followers.has(reader);
  }

  /** Where the file goes now (tell the followers after add() or finish() returned true). */
  get position(): { path: string; end: number } | undefined {
    return this.path === undefined ? undefined : { path: this.path, end: this.end };
  }

  /**
   * Writes what is pending and stops taking objects: the listing is over. Returns true when a line
   * was written (tell the followers before settling them).
   */
  finish(): boolean {
    if (this.finished) return false;
    const wrote = this.pending.length > 0 && this.flush();
    this.finished = true;
    this.pending = [];
    if (this.followers.size === 0) this.close();
    return wrote;
  }

  /**
   * `snapshot` relative to the objects written: what a follower applies after the file to have
   * exactly `snapshot` (computed once per snapshot). Call finish() first.
   */
  settle(snapshot: Snapshot): SnapshotUpdate {
    if (this.settled?.snapshot === snapshot) return this.settled.update;
    const changes: SnapshotUpdate['changes'] = [];
    for (const kind of KINDS) {
      const written = this.written[kind];
      const table = snapshot[kind] as ReadonlyMap<string, StoredObject<unknown>>;
      let kept = 0;
      for (const [id, o] of table) {
        const at = written.get(id);
        if (at !== undefined) kept++;
        if (at !== o.modRevision) changes.push({ kind, id, object: { id: o.id, modRevision: o.modRevision, value: o.value } });
      }
      // written, but not in force: its references did not resolve, or it was deleted since
      if (kept < written.size) for (const id of written.keys()) if (!table.has(id)) changes.push({ kind, id, object: null });
    }
    const { revision, source, detail, appliedAt } = snapshot;
    const update: SnapshotUpdate = { full: false, revision, source, detail, appliedAt, changes };
    this.settled = { snapshot, update };
    return update;
  }

  /** `reader` applied its first snapshot, or exited: the file goes once no follower needs it. */
  done(reader: number): void {
    if (!this.followers.delete(reader) || this.followers.size > 0 || !this.finished) return;
    this.close();
  }

  /** Removes the file (and forgets what it held). */
  close(): void {
    this.finished = true;
    this.pending = [];
    for (const kind of KINDS) this.written[kind].clear();
    this.settled = undefined;
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    if (this.path !== undefined) removeWorkerFile(this.path);
    this.path = undefined;
    process.off('exit', this.removeFile);
  }

  private flush(): boolean {
    const batch = this.pending;
    this.pending = [];
    try {
      if (this.fd === undefined) {
        const at = workerFilePath(this.dir, 'listing', 'jsonl');
        this.fd = openSync(at, 'wx', 0o600);
        this.path = at;
        process.once('exit', this.removeFile);
      }
      const line = batch.map((o) => `[${JSON.stringify(o.kind)},${JSON.stringify(o.id)},${o.modRevision},${valueJson(o)}]`).join(',');
      this.end += writeSync(this.fd, `[${line}]\n`, this.end, 'utf8');
      for (const o of batch) this.written[o.kind].set(o.id, o.modRevision);
      return true;
    } catch (err) {
      // the workers then get the whole snapshot once it is published, as without this file
      log.warn({ err: (err as Error).message, dir: this.dir }, 'cannot write the listing for the workers to a file; they get the whole snapshot');
      this.close();
      this.followers.clear();
      return false;
    }
  }
}

/**
 * The value as JSON on one line: its text as the source stored it when there is one (valid JSON: it
 * was parsed; a line break in it can only be whitespace, which a space replaces), else serialized.
 * Not serializing 50,000 routes again saved ~30 ms of the primary's time (118 against 151 ms for
 * their lines, medians of a bench of add() alone).
 */
function valueJson(o: ValidObject): string {
  if (o.text === undefined) return JSON.stringify(o.value);
  return o.text.includes('\n') ? o.text.replace(/\n/g, ' ') : o.text;
}

/**
 * A worker's side: reads the lines a primary's ListingAhead wrote, as updates for its replica
 * (objects not yet in force: the worker applies them but does not listen until its first snapshot).
 */
export class ListingReader {
  private fd: number | undefined;
  private path: string | undefined;
  private offset = 0;

  /** The objects of the lines up to byte `end` not read yet, as one update. */
  read(file: string, end: number, source: string): SnapshotUpdate {
    if (this.path !== file) {
      this.close();
      this.fd = openSync(file, 'r');
      this.path = file;
      this.offset = 0;
    }
    const changes: SnapshotUpdate['changes'] = [];
    if (end > this.offset) {
      const bytes = Buffer.allocUnsafe(end - this.offset);
      let got = 0;
      while (got < bytes.length) {
        const n = readSync(this.fd!, bytes, got, bytes.length - got, this.offset + got);
        if (n === 0) throw new Error(`${file}: ends at byte ${this.offset + got}, expected ${end}`);
        got += n;
      }
      this.offset = end;
      for (const text of bytes.toString('utf8').split('\n')) {
        if (text === '') continue;
        for (const [kind, id, modRevision, value] of JSON.parse(text) as Line) changes.push({ kind, id, object: { id, modRevision, value } });
      }
    }
    return { full: false, revision: 0, source, appliedAt: '', changes };
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    this.path = undefined;
  }
}
