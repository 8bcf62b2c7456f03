/**
 * The etcd configuration source: lists `<prefix>/<kind>/<id>` keys once, then watches them, and
 * turns both into ChangeSets (see ARCHITECTURE.md, "etcd source rules").
 *
 * start() contract (the Source interface leaves the choice to us):
 *   - resolves once the first full ChangeSet was delivered (the consumer's promise settled);
 *   - rejects with PORTICO_ERR_ETCD_UNAVAILABLE (or _ETCD_AUTH) as soon as the FIRST attempt to
 *     list fails, so a gateway can fall back to its persisted snapshot instead of hanging;
 *   - either way the source keeps retrying in the background (backoff, endpoint rotation) and
 *     delivers a full ChangeSet when etcd answers, until stop() is called.
 * A source is started once; after stop() create a new one.
 */
import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import type { Change, ChangeSet, Kind } from '../../config/changeset.ts';
import { isKind, KINDS } from '../../config/changeset.ts';
import { ErrorCode, PorticoError } from '../../errors.ts';
import { log } from '../../observability/log.ts';
import { checkTextLimits } from '../../security/limits.ts';
import type { Source, SourceEvents, SourceState } from '../source.ts';
import { EtcdClient, toPorticoError, type EtcdTlsOptions, type KeyValue } from './client.ts';
import { watchPrefix, type WatchEvent } from './watch.ts';
import { fingerprint } from '../../config/fingerprint.ts';

/** objects validated between two turns of the event loop while a list is read */
const PREFETCH_SLICE = 250;

export interface EtcdSourceOptions {
  endpoints: string[];
  /** e.g. "/apisix"; keys are `<prefix>/<kind>/<id>` */
  prefix: string;
  user?: string;
  password?: string;
  tls?: EtcdTlsOptions;
  /** per-request timeout, seconds (default 5) */
  timeout?: number;
  /** keys per page of the initial list (default: pages of ~4 MiB, at most 10,000 keys; see EtcdClient.rangePages) */
  pageSize?: number;
  /** reconnect backoff in ms: starts at `initial`, doubles up to `max` (defaults 100 / 5000), with jitter */
  backoff?: { initial?: number; max?: number };
  /** ms between liveness probes of the watched member (default 3000; 0 disables) */
  probeInterval?: number;
  /**
   * abort the watch when etcd sent nothing for this many ms (default 0: off). Only meaningful when
   * etcd's --experimental-watch-progress-notify-interval is shorter than this.
   */
  silenceTimeout?: number;
}

const SOURCE_NAME = 'etcd';

/**
 * The config range is `[<prefix>/a, end of <prefix>/)`, not the whole prefix. Every kind is
 * lowercase, so `<prefix>/_instances/...` (the fleet registrations, written by every instance) and
 * anything else under `<prefix>/_`, or led by a digit or an uppercase letter, sorts before `a` and
 * is neither listed nor watched: a registration write must not reach the watch of every instance
 * (N instances x N writes). Same prefix, so one etcd RBAC grant still covers both.
 */
export const CONFIG_RANGE_START = 'a';
for (const kind of KINDS) {
  // a kind sorting before the range start would silently never be watched
  if (kind < CONFIG_RANGE_START) throw new Error(`etcd config range: kind ${kind} sorts before "${CONFIG_RANGE_START}"`);
}

/** The first key of the config range under `keyPrefix` (which ends with '/'). */
export function configRangeStart(keyPrefix: string): string {
  return `${keyPrefix}${CONFIG_RANGE_START}`;
}

export class EtcdSource implements Source {
  readonly name = SOURCE_NAME;
  /** the underlying client, also usable for instance registration (leases, puts) */
  readonly client: EtcdClient;
  private readonly prefix: string;
  /** `<prefix>/`: the range ends where this prefix ends (so the directory key itself is excluded) */
  private readonly keyPrefix: string;
  /** `<prefix>/a`: where the listed and watched range starts (see CONFIG_RANGE_START) */
  private readonly rangeStart: string;
  private readonly opts: EtcdSourceOptions;

  private events?: SourceEvents;
  private readonly abort = new AbortController();
  private running?: Promise<void>;
  private stopped = false;

  /**
   * Highest revision handed to the delivery queue: the last applied event's mod_revision, or the
   * revision of the last full list. The watch resumes at lastRevision + 1. The queue survives
   * reconnects, so everything up to here reaches the consumer. Never taken from a response header
   * of a watch message: the header revision can be ahead of the events we actually received.
   */
  private lastRevision = 0;
  private needRelist = true;

  private readonly queue: ChangeSet[] = [];
  private pumping = false;

  private state?: SourceState;
  private firstSync?: { resolve(): void; reject(e: Error): void; settled: boolean; listed: boolean };

  constructor(opts: EtcdSourceOptions) {
    if (typeof opts.prefix !== 'string' || !opts.prefix.startsWith('/')) {
      throw new PorticoError(ErrorCode.CONFIG_INVALID, `etcd: prefix must start with "/" (got ${JSON.stringify(opts.prefix)})`);
    }
    this.opts = opts;
    this.prefix = opts.prefix.replace(/\/+$/, '');
    this.keyPrefix = `${this.prefix}/`;
    this.rangeStart = configRangeStart(this.keyPrefix);
    this.client = new EtcdClient({
      endpoints: opts.endpoints,
      user: opts.user,
      password: opts.password,
      tls: opts.tls,
      timeout: opts.timeout,
    });
  }

  start(events: SourceEvents): Promise<void> {
    if (this.events) return Promise.reject(new Error('EtcdSource.start() called twice'));
    this.events = events;
    const p = new Promise<void>((resolve, reject) => {
      this.firstSync = { resolve, reject, settled: false, listed: false };
    });
    this.running = this.run();
    return p;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    this.settleFirstSync(new PorticoError(ErrorCode.ETCD_UNAVAILABLE, 'etcd source stopped before the first sync'));
    await this.running;
    this.queue.length = 0;
    await this.client.close();
  }

  // ---- connection loop -----------------------------------------------------------------------

  private async run(): Promise<void> {
    const initial = this.opts.backoff?.initial ?? 100;
    const max = this.opts.backoff?.max ?? 5000;
    let attempt = 0;
    const signal = this.abort.signal;
    while (!this.stopped) {
      const endpoint = this.client.endpoint;
      let error: PorticoError;
      try {
        if (this.needRelist) {
          await this.relist(endpoint);
        } else {
          // A cheap read first: if etcd's revision is behind what we applied, it was wiped or
          // restored from backup, and watching from lastRevision + 1 would wait forever.
          const { header } = await this.client.range(this.keyPrefix, { endpoint, countOnly: true, signal });
          if (header.revision < this.lastRevision) {
            log.warn(
              { endpoint, revision: header.revision, lastRevision: this.lastRevision },
              'etcd revision went backwards (wiped or restored): relisting',
            );
            this.needRelist = true;
            continue;
          }
        }
        const end = await watchPrefix(this.client, {
          prefix: this.keyPrefix,
          from: this.rangeStart,
          startRevision: this.lastRevision + 1,
          endpoint,
          probeInterval: this.opts.probeInterval,
          silenceTimeout: this.opts.silenceTimeout,
          signal,
          onCreated: () => {
            attempt = 0;
            this.setState({ connected: true, endpoint });
          },
          onEvents: (evs) => this.applyEvents(evs),
          onProgress: (header) => this.progressed(header.revision),
        });
        if (end.reason === 'aborted') break;
        if (end.reason === 'compacted') {
          log.warn(
            { endpoint, compactRevision: end.compactRevision, lastRevision: this.lastRevision },
            'etcd compacted past our revision: relisting',
          );
          this.needRelist = true;
          continue;
        }
        error = end.error;
      } catch (err) {
        if (this.stopped) break;
        error = toPorticoError(err, endpoint);
      }
      this.setState({ connected: false, endpoint, error });
      if (!this.firstSync?.listed) this.settleFirstSync(error);
      this.client.rotate(endpoint);
      const delay = Math.min(max, initial * 2 ** Math.min(attempt, 30));
      attempt++;
      await sleep(delay / 2 + (Math.random() * delay) / 2, signal);
    }
  }

  /**
   * Range the whole prefix at one revision and queue it as one full ChangeSet. Each page is parsed
   * (and handed to `onPrefetch`, which validates it) while the next page is on its way.
   */
  private async relist(endpoint: string): Promise<void> {
    const changes: Change[] = [];
    const { revision } = await this.client.rangePages(
      this.keyPrefix,
      { from: this.rangeStart, pageSize: this.opts.pageSize, endpoint, signal: this.abort.signal },
      async (kvs) => {
        // in slices, yielding between them: the next page arrives while this one is validated
        // (without the yields it waited in the socket buffer until the whole page was done, and
        // etcd with it: a 50k-route list took 1.2 s instead of the 0.6 s etcd needs)
        for (let i = 0; i < kvs.length; i += PREFETCH_SLICE) {
          if (i > 0) await setImmediatePromise();
          const start = changes.length;
          for (const kv of kvs.slice(i, i + PREFETCH_SLICE)) {
            const change = this.toChange(kv, false, true);
            if (change) changes.push(change);
          }
          const page = changes.slice(start);
          this.events?.onPrefetch?.(page);
          for (const c of page) if (c.text !== undefined) c.text = undefined;
        }
        log.debug({ endpoint, objects: changes.length }, 'etcd listing: a page taken');
      },
    );
    const first = this.lastRevision === 0;
    log.info(
      { endpoint, revision, objects: changes.length, previousRevision: first ? undefined : this.lastRevision },
      first ? 'etcd listed' : 'etcd relisted',
    );
    this.lastRevision = revision;
    this.needRelist = false;
    if (this.firstSync) this.firstSync.listed = true;
    this.enqueue({ source: SOURCE_NAME, revision, full: true, changes });
  }

  /** Watch events → one ChangeSet per etcd revision (a txn's puts arrive together). */
  private applyEvents(events: WatchEvent[]): void {
    let current: ChangeSet | undefined;
    for (const ev of events) {
      const rev = ev.kv.modRevision;
      // already applied (cannot happen with a correct start revision; cheap insurance).
      // lastRevision moves only when a revision's group is finished, so this never splits one.
      if (rev <= this.lastRevision) continue;
      if (!current || current.revision !== rev) {
        if (current) this.finishRevision(current);
        current = { source: SOURCE_NAME, revision: rev, full: false, changes: [] };
      }
      const change = this.toChange(ev.kv, ev.type === 'DELETE');
      if (change) current.changes.push(change);
    }
    if (current) this.finishRevision(current);
  }

  private finishRevision(cs: ChangeSet): void {
    this.lastRevision = cs.revision;
    // revisions touching only foreign keys in the range (e.g. <prefix>/plugins/..., unknown kinds)
    // advance the resume point but carry nothing for the store
    if (cs.changes.length > 0) this.enqueue(cs);
  }

  /**
   * A progress notification: etcd sends one only to a watcher that has received every event of its
   * range up to `revision` (and only when no events came since the last one), so resuming after it
   * is safe. Writes outside the range (registrations) no longer move the resume point through
   * events; without this, a quiet config would resume far behind etcd's revision after a
   * disconnect, and relist in full if that history was compacted meanwhile.
   */
  private progressed(revision: number): void {
    // events already queued stay queued: the queue survives reconnects
    if (revision > this.lastRevision) this.lastRevision = revision;
  }

  /** `withText`: the change carries the value's text (Change.text; a listing's page, until handed on) */
  private toChange(kv: KeyValue, deleted: boolean, withText = false): Change | undefined {
    const key = configKey(this.keyPrefix, kv.key);
    if (key === undefined) return undefined;
    const { kind, id } = key;
    if (deleted) return { kind, id, modRevision: kv.modRevision, deleted: true };
    // an oversized value is not even parsed (depth is checked by the store, on the parsed value:
    // JSON.parse itself does not recurse)
    const over = checkTextLimits(kv.value);
    if (over) return { kind, id, modRevision: kv.modRevision, parseError: over, parseErrorCode: ErrorCode.LIMIT };
    try {
      // the store compares a relisted object by its text's fingerprint: taken here, so the text
      // itself dies young (not kept until the whole listing is applied)
      const value = JSON.parse(kv.value) as unknown;
      const change: Change = { kind, id, modRevision: kv.modRevision, value, fingerprint: fingerprint(kv.value) };
      if (withText) change.text = kv.value;
      return change;
    } catch (err) {
      return {
        kind,
        id,
        modRevision: kv.modRevision,
        parseError: `${kind}/${id}: invalid JSON: ${(err as Error).message}`,
      };
    }
  }

  // ---- delivery ------------------------------------------------------------------------------

  private enqueue(cs: ChangeSet): void {
    this.queue.push(cs);
    if (this.pumping) return;
    this.pumping = true;
    // Deliver from a microtask: every ChangeSet of one watch response is queued by then and goes
    // out merged; while the consumer is busy, later ones pile up and are merged the same way.
    queueMicrotask(() => void this.pump());
  }

  private async pump(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const batch = this.queue.splice(0);
        const cs = batch.length === 1 ? batch[0]! : mergeChangeSets(batch);
        try {
          await this.events!.onChangeSet(cs);
        } catch (err) {
          log.error({ err, revision: cs.revision }, 'etcd: the ChangeSet consumer failed');
        }
        if (cs.full) this.settleFirstSync();
      }
    } finally {
      this.pumping = false;
    }
  }

  private settleFirstSync(err?: PorticoError): void {
    const fs = this.firstSync;
    if (!fs || fs.settled) return;
    fs.settled = true;
    if (err) fs.reject(err);
    else fs.resolve();
  }

  private setState(s: { connected: boolean; endpoint: string; error?: PorticoError }): void {
    if (this.stopped) return;
    if (this.state && this.state.connected === s.connected) return;
    const state: SourceState = { connected: s.connected, since: new Date().toISOString() };
    if (s.error) state.error = { code: s.error.code, message: s.error.message };
    this.state = state;
    if (s.connected) log.info({ endpoint: s.endpoint, revision: this.lastRevision }, 'etcd connected');
    else log.warn({ endpoint: s.endpoint, err: state.error, revision: this.lastRevision }, 'etcd disconnected');
    try {
      this.events?.onState(state);
    } catch (err) {
      // a consumer bug must not kill the connection loop
      log.error({ err }, 'etcd: the state consumer failed');
    }
  }
}

/**
 * `<prefix>/<kind>/<id>` -> kind and id, for the kinds the store knows; undefined for anything else
 * under the prefix (the `<prefix>/<kind>` directory key, `_instances/...`, unknown kinds, nested ids).
 * `keyPrefix` ends with '/'.
 */
export function configKey(keyPrefix: string, key: string): { kind: Kind; id: string } | undefined {
  if (!key.startsWith(keyPrefix)) return undefined;
  const slash = key.indexOf('/', keyPrefix.length);
  if (slash <= keyPrefix.length) return undefined;
  const kind = key.slice(keyPrefix.length, slash);
  const id = key.slice(slash + 1);
  if (!isKind(kind) || id === '' || id.includes('/')) return undefined;
  return { kind, id };
}

/**
 * Merge consecutive ChangeSets into one that leads to the same state: last write per object wins,
 * a full set resets everything before it, and the revision is the last one's. No event is lost: an
 * object's final change in the batch is what the store would have ended with anyway.
 */
export function mergeChangeSets(list: ChangeSet[]): ChangeSet {
  let full = false;
  const byKey = new Map<string, Change>();
  for (const cs of list) {
    if (cs.full) {
      full = true;
      byKey.clear();
    }
    for (const c of cs.changes) {
      const key = `${c.kind}/${c.id}`;
      byKey.delete(key);
      // in a full set, absence is deletion
      if (full && c.deleted) continue;
      byKey.set(key, c);
    }
  }
  return { source: list[0]!.source, revision: list[list.length - 1]!.revision, full, changes: [...byKey.values()] };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
