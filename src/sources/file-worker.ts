/**
 * The file source's reader thread: reads the routes file, decodes it and diffs it against the
 * version in force (FileListing), and answers with only what changed. Started by FileSource;
 * one request at a time: `{ revision }` in, a FileReadResult out.
 */
import { readFile } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { ErrorCode } from '../errors.ts';
import { FileListing, type FileReadResult } from './file-listing.ts';

const { path } = workerData as { path: string };
const listing = new FileListing(path);

// Decoding a large file is a burst of CPU; on a machine with few cores it must not take time from
// the thread that serves requests. On Linux a nice value is per thread, so this lowers this thread
// only (elsewhere it would lower the whole process: left alone there).
if (process.platform === 'linux') {
  try {
    setPriority(10);
  } catch {
    // not permitted: run at the default priority
  }
}

async function readListing(revision: number): Promise<FileReadResult> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return { type: 'failed', code: ErrorCode.CONFIG_INVALID, message: `cannot read ${path}: ${(err as Error).message}` };
  }
  try {
    return listing.read(text, revision);
  } catch (err) {
    return { type: 'failed', code: ErrorCode.PARSE, message: `${path}: ${(err as Error).message}` };
  }
}

parentPort!.on('message', ({ revision }: { revision: number }) => {
  void readListing(revision).then((result) => parentPort!.postMessage(result));
});
