import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ErrorCode } from '../errors.ts';
import { codeFile, fromSources } from '../layout.ts';
import { log } from '../observability/log.ts';
import type { FileReadResult } from './file-listing.ts';
import type { Source, SourceEvents } from './source.ts';

export interface FileSourceOptions {
  /** the routes file (APISIX standalone style: top-level `routes`, `upstreams`, `services` lists) */
  path: string;
  /** quiet time after the last file event before reloading, ms */
  debounceMs?: number;
}

/**
 * The YAML file source. Reloads on every change of the file, including editors' atomic saves
 * (write a temp file, rename it over): it watches the directory, not the file, because a watch on
 * the file itself follows the old inode and goes deaf after the first rename.
 *
 * Reading, decoding and diffing happen on a worker thread (file-worker.ts), never on the thread
 * that serves requests: decoding a 5,000-route file takes most of a second, and the store, router
 * and snapshot only ever see the objects that changed. The first read is a full listing; after
 * that a change set lists the changed objects and explicit deletes, so a one-line edit costs the
 * request path one object, whatever the size of the file.
 */
/** a reload happens at the latest this many debounce periods after the first unreloaded event */
const MAX_WAIT_FACTOR = 4;

export class FileSource implements Source {
  readonly name = 'file';
  private readonly path: string;
  private readonly debounceMs: number;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** when the first file event not yet reloaded arrived */
  private firstEventAt = 0;
  private readonly onQuiet = (): void => {
    this.timer = undefined;
    void this.reload();
  };
  private events: SourceEvents | undefined;
  private revision = 0;
  private reader: FileReader | undefined;
  private loading: Promise<void> = Promise.resolve();
  /** a reload waiting for the one in progress: later file events join it instead of queueing more */
  private queued: Promise<void> | undefined;
  /** the last read succeeded; state changes are reported once, not on every reload */
  private ok = false;

  constructor(opts: FileSourceOptions) {
    this.path = opts.path;
    this.debounceMs = opts.debounceMs ?? 25;
  }

  async start(events: SourceEvents): Promise<void> {
    this.events = events;
    const file = basename(this.path);
    this.watcher = watch(dirname(this.path), { persistent: false }, (_event, name) => {
      if (name !== null && name !== file) return;
      // wait for quiet, but not forever: a file saved more often than every debounceMs (a script
      // writing 100 changes/s) would otherwise never be reloaded until the saves stop
      const now = Date.now();
      if (this.timer === undefined) this.firstEventAt = now;
      clearTimeout(this.timer);
      const wait = Math.max(0, Math.min(this.debounceMs, this.firstEventAt + this.debounceMs * MAX_WAIT_FACTOR - now));
      this.timer = setTimeout(this.onQuiet, wait);
    });
    this.watcher.on('error', (err) => log.error({ err, path: this.path }, 'file source: watch failed'));
    await this.reload(true);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    await this.loading.catch(() => undefined);
    await this.reader?.close();
    this.reader = undefined;
  }

  private reload(initial = false): Promise<void> {
    if (this.queued) return this.queued;
    // reloads run one after another, so change sets reach the store in file order; a failed
    // first load must not stop the ones after it (the gateway may be serving its snapshot)
    const next = this.loading
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.load(initial);
      });
    this.queued = next;
    this.loading = next;
    return next;
  }

  private async load(initial: boolean): Promise<void> {
    if (!this.watcher) return; // stopped
    this.reader ??= new FileReader(this.path);
    let result: FileReadResult;
    try {
      result = await this.reader.read(this.revision + 1);
    } catch (err) {
      // the reader thread died (out of memory on a huge file, ...): the next reload starts another
      void this.reader.close();
      this.reader = undefined;
      result = { type: 'failed', code: ErrorCode.PARSE, message: `${this.path}: reading stopped: ${(err as Error).message}` };
    }
    if (result.type === 'unchanged') return this.healthy();
    if (result.type === 'failed') return this.fail(result, initial);
    this.revision = result.revision;
    await this.events!.onChangeSet({ source: 'file', revision: result.revision, full: result.full, changes: result.changes, detail: result.hash });
    this.healthy();
  }

  /** Reports the file readable and valid again, once per recovery (not on every reload). */
  private healthy(): void {
    if (this.ok) return;
    this.ok = true;
    this.events!.onState({ connected: true, since: new Date().toISOString() });
  }

  private fail(error: { code: string; message: string }, initial: boolean): void {
    if (this.ok) this.events!.onState({ connected: false, since: new Date().toISOString(), error });
    this.ok = false;
    log.error({ code: error.code }, `file source: ${error.message}; keeping the last good config`);
    this.events!.onError?.({ code: error.code, message: error.message });
    if (initial) throw Object.assign(new Error(error.message), { code: error.code });
  }
}

/**
 * The worker thread that reads the file, and the one request it may have in flight.
 *
 * Its entry is file-worker.js next to this module when compiled (dist/), and file-worker.ts when
 * run from the sources: tsx's loader must then be registered inside the thread before the entry is
 * imported. bin/portico.js registers tsx with `register()`, which neither reaches worker threads
 * nor shows in process.execArgv, and an `--import tsx` given in the worker's execArgv comes too
 * late for the worker's own entry on Node 20. A small bootstrap that registers tsx and then
 * imports the entry works under all of these.
 */
class FileReader {
  private readonly worker: Worker;
  private pending: { resolve(r: FileReadResult): void; reject(err: Error): void } | undefined;
  private dead: Error | undefined;

  constructor(path: string) {
    const entry = pathToFileURL(codeFile('sources/file-worker'));
    const options = { workerData: { path }, name: 'portico file source' };
    this.worker = fromSources
      ? new Worker(
          `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
            `.then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`,
          { ...options, eval: true },
        )
      : new Worker(entry, options);
    // idle, the reader must not keep the process alive; it is referenced while a read is in flight
    this.worker.unref();
    this.worker.on('message', (result: FileReadResult) => this.settle(undefined, result));
    this.worker.on('error', (err) => this.settle(err));
    this.worker.on('exit', (code) => this.settle(new Error(`reader thread exited with code ${code}`)));
  }

  read(revision: number): Promise<FileReadResult> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.ref();
      this.worker.postMessage({ revision });
    });
  }

  async close(): Promise<void> {
    this.dead ??= new Error('reader closed');
    await this.worker.terminate();
  }

  private settle(err: Error | undefined, result?: FileReadResult): void {
    if (err) this.dead ??= err;
    const p = this.pending;
    this.pending = undefined;
    this.worker.unref();
    if (!p) return;
    if (err) p.reject(err);
    else p.resolve(result!);
  }
}
