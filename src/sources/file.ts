import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { parseDocument } from 'yaml';
import { KINDS, type Change, type Kind } from '../config/changeset.ts';
import { ErrorCode } from '../errors.ts';
import { log } from '../observability/log.ts';
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
 */
export class FileSource implements Source {
  readonly name = 'file';
  private readonly path: string;
  private readonly debounceMs: number;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private events: SourceEvents | undefined;
  private revision = 0;
  private lastHash = '';
  /** per object: the JSON it had and the revision at which it last changed */
  private readonly objects = new Map<string, { json: string; modRevision: number }>();
  private loading: Promise<void> = Promise.resolve();
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
      clearTimeout(this.timer);
      this.timer = setTimeout(() => void this.reload(), this.debounceMs);
    });
    this.watcher.on('error', (err) => log.error({ err, path: this.path }, 'file source: watch failed'));
    await this.reload(true);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
    await this.loading;
  }

  private reload(initial = false): Promise<void> {
    // reloads run one after another, so change sets reach the store in file order
    this.loading = this.loading.then(() => this.load(initial));
    return this.loading;
  }

  private async load(initial: boolean): Promise<void> {
    const events = this.events!;
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      const error = { code: ErrorCode.CONFIG_INVALID, message: `cannot read ${this.path}: ${(err as Error).message}` };
      this.fail(error, initial);
      return;
    }
    const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
    // content back to what is in force (a broken edit reverted): nothing to apply, but healthy again
    if (hash === this.lastHash) return this.healthy();
    let changes: Change[];
    try {
      changes = this.parse(text);
    } catch (err) {
      this.fail({ code: ErrorCode.PARSE, message: `${this.path}: ${(err as Error).message}` }, initial);
      return;
    }
    this.lastHash = hash;
    await events.onChangeSet({ source: 'file', revision: this.revision, full: true, changes, detail: hash });
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
    this.events!.onError?.(error);
    if (initial) throw Object.assign(new Error(error.message), { code: error.code });
  }

  /** YAML text -> one full ChangeSet. Throws on a file that is not YAML or not the expected shape. */
  private parse(text: string): Change[] {
    const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    if (doc.errors.length) throw new Error(doc.errors[0]!.message);
    const root = (doc.toJS() ?? {}) as Record<string, unknown>;
    if (typeof root !== 'object' || Array.isArray(root)) throw new Error('top level must be a mapping with routes, upstreams, services');
    for (const k of Object.keys(root)) {
      if (!(KINDS as readonly string[]).includes(k)) log.warn({ key: k, path: this.path }, 'file source: unknown top-level key ignored');
    }
    const revision = this.revision + 1;
    const changes: Change[] = [];
    const seenNow = new Set<string>();
    for (const kind of KINDS) {
      const list = root[kind];
      if (list === undefined || list === null) continue;
      if (!Array.isArray(list)) throw new Error(`'${kind}' must be a list`);
      list.forEach((item: unknown, index) => changes.push(this.toChange(kind, item, index, revision, seenNow)));
    }
    for (const k of this.objects.keys()) if (!seenNow.has(k)) this.objects.delete(k);
    this.revision = revision;
    return changes;
  }

  private toChange(kind: Kind, item: unknown, index: number, revision: number, seenNow: Set<string>): Change {
    const rawId = (item as { id?: unknown } | null)?.id;
    if (item === null || typeof item !== 'object' || (typeof rawId !== 'string' && typeof rawId !== 'number')) {
      return { kind, id: `#${index}`, modRevision: revision, parseError: `${kind}[${index}]: missing 'id'` };
    }
    let id = String(rawId);
    if (seenNow.has(`${kind}/${id}`)) {
      return { kind, id: `${id}#${index}`, modRevision: revision, parseError: `${kind}[${index}]: duplicate id '${id}'` };
    }
    const k = `${kind}/${id}`;
    seenNow.add(k);
    const json = JSON.stringify(item);
    const known = this.objects.get(k);
    // an object keeps its modRevision while its content is unchanged, so the store skips it
    const modRevision = known && known.json === json ? known.modRevision : revision;
    this.objects.set(k, { json, modRevision });
    return { kind, id, modRevision, value: item };
  }
}
