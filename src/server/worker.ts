import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { GatewayConfig } from '../config/gateway.ts';
import { SnapshotReplica, type SnapshotUpdate } from '../config/replica.ts';
import { pluginFailures } from '../plugins/run.ts';
import { tlsRefusals } from './tls-front.ts';
import { DataPlane } from './data-plane.ts';
import { ListingReader } from './listing-ahead.ts';
import { log } from '../observability/log.ts';
import type { CompileFailure } from '../runtime/types.ts';
import type { HealthVerdict } from '../upstream/health/book.ts';
import type { DiscoveredNodes } from '../upstream/discovery/upstream-nodes.ts';
import type { TrafficSnapshot } from '../observability/exchange.ts';

/*
 * A worker process of `proxy.workers` > 1 (its entry is server/worker-main.ts; the primary's side is
 * server/cluster.ts). Kept apart from the primary's code so that a worker loads only what a data
 * plane needs: not the config sources (etcd client), the pipeline, the store's validators or the
 * admin API.
 */

/** Messages between the primary and its workers. */
export type ToWorker =
  /** portico.yaml as the primary read it (the answer to `config?`) */
  | { type: 'config'; config: GatewayConfig }
  | { type: 'snapshot'; update: SnapshotUpdate }
  /** the same, in a file the primary wrote once for every worker greeted with it (server/snapshot-handoff.ts) */
  | { type: 'snapshot-file'; path: string }
  /**
   * the listing at start, validated, in a file that now goes up to byte `end`: build the tables from
   * it before the first snapshot, which then holds only what differs (server/listing-ahead.ts)
   */
  | { type: 'listing'; path: string; end: number }
  | { type: 'nodes'; discovered: DiscoveredNodes }
  | { type: 'health'; verdict: HealthVerdict }
  /** send your traffic counts (answered with `traffic` and the same id) */
  | { type: 'traffic?'; id: number }
  /** reopen the access log (SIGUSR1 reached the primary) */
  | { type: 'reopen-logs' }
  | { type: 'drain' };
export type ToPrimary =
  /** the worker's first message (server/worker-main.ts) */
  | { type: 'config?' }
  /** set up: send the snapshot */
  | { type: 'hello' }
  /** the listing file could not be read: greet it with the whole snapshot (it says `hello` again if it got only a difference) */
  | { type: 'listing-failed' }
  | { type: 'listening'; addresses: AddressInfo[] }
  | { type: 'applied'; revision: number }
  | { type: 'rejected'; failures: CompileFailure[] }
  /** a passive health verdict the worker reached (the primary records it and tells every worker) */
  | { type: 'health'; verdict: HealthVerdict }
  /** the worker's plugin failure counts since it started (sent at most once a second, when they changed) */
  | { type: 'plugin-failures'; counts: Record<string, number>; tls: { noCertificate: number; refused: number } }
  /** the worker's request traffic since it started (an answer to `traffic?`) */
  | { type: 'traffic'; id: number; snapshot: TrafficSnapshot };

/** The worker side: a data plane fed by the primary; listens once it has the first snapshot. */
export async function runWorker(config: GatewayConfig): Promise<void> {
  const send = (m: ToPrimary) => process.send?.(m);
  const dataPlane = new DataPlane(config, (verdict) => send({ type: 'health', verdict }));
  const replica = new SnapshotReplica();
  // the listing before the first snapshot: objects applied but not yet in force, and what of them
  // could not be compiled (compiled again, and reported, once the first snapshot holds them)
  const listing = new ListingReader();
  let listingFailed = false;
  let askedAgain = false;
  const failedAhead: CompileFailure[] = [];
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    dataPlane.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  let first: (() => void) | undefined;
  const synced = new Promise<void>((resolve) => (first = resolve));
  process.on('message', (m: ToWorker) => {
    if (m.type === 'listing') {
      if (first === undefined || listingFailed) return;
      try {
        const { snapshot, diff } = replica.applyDraft(listing.read(m.path, m.end, config.config.source));
        failedAhead.push(...dataPlane.apply(snapshot, diff));
      } catch (err) {
        listingFailed = true;
        listing.close();
        log.warn({ err: (err as Error).message, path: m.path }, 'cannot read the listing the primary wrote; asking for the whole snapshot');
        send({ type: 'listing-failed' });
      }
    } else if (m.type === 'snapshot' || m.type === 'snapshot-file') {
      const update = m.type === 'snapshot' ? m.update : (JSON.parse(readFileSync(m.path, 'utf8')) as SnapshotUpdate);
      if (first !== undefined && listingFailed && !update.full) {
        // relative to a listing this worker could not read: the whole snapshot comes instead (asked
        // for once; changes published meanwhile are in it)
        if (!askedAgain) send({ type: 'hello' });
        askedAgain = true;
        return;
      }
      const { snapshot, diff } = replica.apply(update);
      if (first !== undefined) {
        listing.close();
        for (const f of failedAhead.splice(0)) if (snapshot[f.kind].has(f.id)) diff[f.kind].add(f.id);
      }
      const failures = dataPlane.apply(snapshot, diff);
      // the primary rejects them and sends every worker a snapshot without them
      if (failures.length > 0) send({ type: 'rejected', failures });
      send({ type: 'applied', revision: snapshot.revision });
      first?.();
      first = undefined;
    } else if (m.type === 'health') dataPlane.runtime.health.apply(m.verdict);
    else if (m.type === 'traffic?') send({ type: 'traffic', id: m.id, snapshot: dataPlane.trafficSnapshot() });
    else if (m.type === 'reopen-logs') dataPlane.reopenLogs();
    else if (m.type === 'nodes') dataPlane.discovered(m.discovered);
    else if (m.type === 'drain') stop();
  });
  // Ctrl-C reaches the whole process group; the primary dying closes the channel
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  // plugin failures reach the primary's /status within a second (only when they changed)
  let reported = 0;
  setInterval(() => {
    let total = tlsRefusals.noCertificate + tlsRefusals.refused;
    for (const n of pluginFailures.values()) total += n;
    if (total === reported) return;
    reported = total;
    send({ type: 'plugin-failures', counts: Object.fromEntries(pluginFailures), tls: { ...tlsRefusals } });
  }, 1000).unref();
  send({ type: 'hello' });
  await synced;
  send({ type: 'listening', addresses: await dataPlane.start() });
}
