import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { log } from '../observability/log.ts';

/*
 * The temp files a primary writes for its workers (the first snapshot: snapshot-handoff.ts; the
 * listing at start: listing-ahead.ts): named after the primary's pid, private to its user, removed
 * once the workers have read them.
 */

/** A new file name in `dir`: `portico-<what>-<pid>-<random>.<ext>`. */
export function workerFilePath(dir: string, what: string, ext: string): string {
  return path.join(dir, `portico-${what}-${process.pid}-${randomBytes(4).toString('hex')}.${ext}`);
}

/** A file that cannot be removed (gone, or the folder changed under us) is left; the gateway goes on. */
export function removeWorkerFile(file: string): void {
  try {
    rmSync(file, { force: true });
  } catch (err) {
    log.warn({ err: (err as Error).message, path: file }, 'cannot remove a file written for the workers');
  }
}
