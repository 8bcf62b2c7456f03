/**
 * One etcd watch over the HTTP/JSON gateway: POST /v3/watch with a create_request; the response is
 * an endless stream of JSON messages `{"result": {...}}` (or `{"error": {...}}`).
 *
 * The watch never times out on its own (no body timeout: a quiet config is normal), so liveness is
 * checked here: a cheap linearizable range against the same member every `probeInterval`, and,
 * when etcd sends progress notifications often enough, a silence deadline on the stream itself.
 * A linearizable probe also catches a member that lost quorum: it still holds the watch open but
 * will not see new revisions.
 */
import { request } from 'undici';
import { ErrorCode, PorticoError } from '../../errors.ts';
import {
  encodeKey,
  isAuthTokenError,
  parseHeader,
  parseKeyValue,
  prefixRangeEnd,
  toPorticoError,
  type EtcdClient,
  type KeyValue,
  type RawHeader,
  type RawKeyValue,
  type ResponseHeader,
} from './client.ts';

export interface WatchEvent {
  type: 'PUT' | 'DELETE';
  /** for DELETE: key and modRevision (the revision of the delete) only */
  kv: KeyValue;
}

export interface WatchOptions {
  /** watch every key under this prefix */
  prefix: string;
  /**
   * start the range at this key (>= prefix) instead of at the prefix itself; the range still ends
   * where the prefix ends. The config watch starts at `<prefix>/a` to leave `<prefix>/_...` out.
   */
  from?: string;
  /** first revision to receive */
  startRevision: number;
  /** the member to watch; probes go to the same one */
  endpoint: string;
  /** ms between liveness probes (0: none). Default 3000. */
  probeInterval?: number;
  /** abort when nothing (event or progress notification) arrived for this long, ms (0: off) */
  silenceTimeout?: number;
  signal?: AbortSignal;
  /** the watch is established: events from startRevision on will follow */
  onCreated?(header: ResponseHeader): void;
  /** events of one watch response, in revision order (may span several revisions) */
  onEvents(events: WatchEvent[], header: ResponseHeader): void;
  onProgress?(header: ResponseHeader): void;
}

export type WatchEnd =
  /** the start revision was compacted: relist, then watch again */
  | { reason: 'compacted'; compactRevision: number }
  /** the stream broke, ended, went silent, or etcd refused it */
  | { reason: 'disconnected'; error: PorticoError; created: boolean }
  /** opts.signal aborted */
  | { reason: 'aborted' };

interface RawWatchResponse {
  header?: RawHeader;
  watch_id?: string;
  created?: boolean;
  canceled?: boolean;
  compact_revision?: string;
  cancel_reason?: string;
  events?: { type?: 'PUT' | 'DELETE'; kv?: RawKeyValue }[];
}

/**
 * Splits a stream of concatenated JSON objects into one string per object, whatever the chunking:
 * a chunk may end mid-object or hold several. Tracks string/escape state so braces inside strings
 * do not count. Works for newline-delimited and for pretty-printed output alike.
 */
export class JsonObjectSplitter {
  private buf = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private start = -1;
  private scanned = 0;

  push(chunk: string): string[] {
    this.buf += chunk;
    const out: string[] = [];
    const buf = this.buf;
    for (let i = this.scanned; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === 0x5c /* \ */) this.escaped = true;
        else if (c === 0x22 /* " */) this.inString = false;
        continue;
      }
      if (c === 0x22) this.inString = true;
      else if (c === 0x7b /* { */) {
        if (this.depth === 0) this.start = i;
        this.depth++;
      } else if (c === 0x7d /* } */) {
        this.depth--;
        if (this.depth === 0 && this.start >= 0) {
          out.push(buf.slice(this.start, i + 1));
          this.start = -1;
        }
      }
    }
    if (this.depth === 0) {
      this.buf = '';
      this.scanned = 0;
    } else {
      // keep only the unfinished object
      this.buf = buf.slice(this.start);
      this.scanned = this.buf.length;
      this.start = 0;
    }
    return out;
  }
}

/**
 * Watch `prefix` from `startRevision` until the stream ends. Always resolves (never rejects) with
 * why it ended; the caller decides whether to reconnect or relist.
 */
export async function watchPrefix(client: EtcdClient, opts: WatchOptions): Promise<WatchEnd> {
  let authRetried = false;
  for (;;) {
    const end = await watchOnce(client, opts);
    // An expired token is refused when the watch is created (canceled with an Unauthenticated
    // reason): authenticate again and retry once right away instead of backing off.
    if (
      end.reason === 'disconnected' &&
      !end.created &&
      !authRetried &&
      client.hasAuth &&
      isAuthTokenError(end.error.message)
    ) {
      authRetried = true;
      client.invalidateToken();
      continue;
    }
    return end;
  }
}

async function watchOnce(client: EtcdClient, opts: WatchOptions): Promise<WatchEnd> {
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort();
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (opts.signal?.aborted) return { reason: 'aborted' };

  let created = false;
  let failure: PorticoError | undefined;
  let lastMessageAt = Date.now();
  const fail = (err: PorticoError) => {
    failure ??= err;
    controller.abort();
  };

  const probeInterval = opts.probeInterval ?? 3000;
  let probing = false;
  const timers: NodeJS.Timeout[] = [];
  if (probeInterval > 0) {
    timers.push(
      setInterval(() => {
        if (probing || controller.signal.aborted) return;
        probing = true;
        client
          .range(opts.prefix, { endpoint: opts.endpoint, countOnly: true, signal: controller.signal })
          .then(
            () => {},
            (err: unknown) => {
              if (controller.signal.aborted) return;
              const e = toPorticoError(err, opts.endpoint);
              fail(new PorticoError(e.code, `etcd watch ${opts.endpoint}: liveness probe failed: ${e.message}`, { cause: err }));
            },
          )
          .finally(() => {
            probing = false;
          });
      }, probeInterval),
    );
  }
  const silence = opts.silenceTimeout ?? 0;
  if (silence > 0) {
    timers.push(
      setInterval(() => {
        if (Date.now() - lastMessageAt > silence) {
          fail(new PorticoError(ErrorCode.ETCD_UNAVAILABLE, `etcd watch ${opts.endpoint}: no message for ${silence} ms`));
        }
      }, Math.min(1000, silence)),
    );
  }

  try {
    const headers = await client.authHeaders(controller.signal);
    const res = await request(`${opts.endpoint}/v3/watch`, {
      method: 'POST',
      dispatcher: client.dispatcher,
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({
        create_request: {
          key: encodeKey(opts.from ?? opts.prefix),
          range_end: prefixRangeEnd(opts.prefix),
          start_revision: opts.startRevision,
          progress_notify: true,
        },
      }),
      headersTimeout: client.timeoutMs,
      // a healthy watch may be silent for hours; liveness is checked by the timers above
      bodyTimeout: 0,
      signal: controller.signal,
    });
    if (res.statusCode !== 200) {
      const text = await res.body.text().catch(() => '');
      return { reason: 'disconnected', created, error: new PorticoError(ErrorCode.ETCD_UNAVAILABLE, `etcd watch ${opts.endpoint}: HTTP ${res.statusCode}: ${text.slice(0, 200)}`) };
    }
    const splitter = new JsonObjectSplitter();
    res.body.setEncoding('utf8');
    for await (const chunk of res.body) {
      lastMessageAt = Date.now();
      for (const text of splitter.push(chunk as string)) {
        const msg = JSON.parse(text) as { result?: RawWatchResponse; error?: { message?: string; grpc_code?: number } };
        if (msg.error) {
          res.body.destroy();
          return { reason: 'disconnected', created, error: new PorticoError(ErrorCode.ETCD_UNAVAILABLE, `etcd watch ${opts.endpoint}: ${msg.error.message ?? JSON.stringify(msg.error)}`) };
        }
        const r = msg.result;
        if (!r) continue;
        const header = parseHeader(r.header);
        if (r.canceled) {
          res.body.destroy();
          const compactRevision = Number(r.compact_revision ?? 0);
          if (compactRevision > 0) return { reason: 'compacted', compactRevision };
          const reason = r.cancel_reason ?? 'watch canceled by etcd';
          const code = isAuthTokenError(reason) || /permission denied/i.test(reason) ? ErrorCode.ETCD_AUTH : ErrorCode.ETCD_UNAVAILABLE;
          return { reason: 'disconnected', created: false, error: new PorticoError(code, `etcd watch ${opts.endpoint}: ${reason}`) };
        }
        if (r.created) {
          created = true;
          opts.onCreated?.(header);
          continue;
        }
        if (r.events && r.events.length > 0) {
          opts.onEvents(
            r.events.map((e) => ({ type: e.type === 'DELETE' ? 'DELETE' : 'PUT', kv: parseKeyValue(e.kv ?? {}) })),
            header,
          );
        } else {
          opts.onProgress?.(header);
        }
      }
    }
    // etcd (or a proxy) closed the stream cleanly: still a disconnect.
    if (opts.signal?.aborted) return { reason: 'aborted' };
    return {
      reason: 'disconnected',
      created,
      error: failure ?? new PorticoError(ErrorCode.ETCD_UNAVAILABLE, `etcd watch ${opts.endpoint}: stream ended`),
    };
  } catch (err) {
    if (opts.signal?.aborted) return { reason: 'aborted' };
    return { reason: 'disconnected', created, error: failure ?? toPorticoError(err, opts.endpoint) };
  } finally {
    for (const t of timers) clearInterval(t);
    controller.abort();
    opts.signal?.removeEventListener('abort', onOuterAbort);
  }
}
