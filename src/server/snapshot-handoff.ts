import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { updateOf } from '../config/replica.ts';
import type { Snapshot } from '../config/snapshot.ts';
import { log } from '../observability/log.ts';
import { removeWorkerFile, workerFilePath } from './worker-files.ts';

/**
 * A worker's first snapshot (all of it), serialized once and handed over in a file that every
 * worker greeted with the same snapshot reads, instead of one IPC message per worker. At 50,000
 * routes the message is ~8 MB: node's IPC channel serializes it again for each worker and writes
 * it through a pipe (~75 ms of the primary's time per worker, measured), and each worker reassembles
 * it from 64 KB reads before parsing; from a file, the primary serializes it once and each worker
 * parses it with one JSON.parse. Changes after that stay IPC messages (they are small).
 *
 * A file is removed once every worker it was handed to has applied it (or exited), and at stop.
 */
export class SnapshotHandoff {
  private readonly files: Array<{ snapshot: Snapshot; path: string; readers: Set<number> }> = [];
  private readonly dir = tmpdir();
  private readonly removeAll = () => this.close();

  constructor() {
    process.once('exit', this.removeAll);
  }

  /**
   * The file holding `snapshot` as a full update, for worker `reader` (written by the first reader's
   * call), or undefined when it cannot be written: then the caller sends the update over IPC.
   */
  fileFor(snapshot: Snapshot, reader: number): string | undefined {
    let file = this.files.find((f) => f.snapshot === snapshot);
    if (file === undefined) {
      const at = workerFilePath(this.dir, 'snapshot', 'json');
      try {
        writeFileSync(at, JSON.stringify(updateOf(snapshot, undefined)), { mode: 0o600 });
      } catch (err) {
        log.warn({ err: (err as Error).message, path: at }, 'cannot write the snapshot for the workers to a file; sending it over IPC');
        removeWorkerFile(at);
        return undefined;
      }
      file = { snapshot, path: at, readers: new Set() };
      this.files.push(file);
    }
    file.readers.add(reader);
    return file.path;
  }

  /** `reader` has applied its snapshot, or exited: files no one has still to read are removed. */
  done(reader: number): void {
    for (let i = this.files.length - 1; i >= 0; i--) {
      const file = this.files[i]!;
      if (!file.readers.delete(reader) || file.readers.size > 0) continue;
      removeWorkerFile(file.path);
      this.files.splice(i, 1);
    }
  }

  close(): void {
    for (const file of this.files.splice(0)) removeWorkerFile(file.path);
    process.off('exit', this.removeAll);
  }
}
