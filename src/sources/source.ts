import type { Change, ChangeSet } from '../config/changeset.ts';

/** Connection state a source reports; shown in /status. */
export interface SourceState {
  /** true while the source is in sync (etcd: watch established; file: last read succeeded) */
  connected: boolean;
  /** ISO time since when the state last changed */
  since: string;
  /** the last error, when not connected */
  error?: { code: string; message: string };
}

export interface SourceEvents {
  /** a batch of changes, in source order. The source awaits the returned promise before sending more. */
  onChangeSet(cs: ChangeSet): void | Promise<void>;
  /**
   * changes a full ChangeSet being read will carry (etcd: each page of the initial list, while the
   * next one is fetched): the store may validate them ahead (or take a first listing in: see
   * ConfigStore.stage), so that the time etcd takes to send the rest is not lost. The ChangeSet
   * itself still follows through onChangeSet, made of these very Change objects.
   */
  onPrefetch?(changes: readonly Change[]): void;
  /** connection state changed (log once per change, not per retry) */
  onState(state: SourceState): void;
  /**
   * whole-source errors that do not belong to one object (a YAML file that does not parse):
   * the store keeps the last good config and reports this error in /status.
   */
  onError?(err: { code: string; message: string }): void;
}

/**
 * A configuration source. Like Traefik's providers, each source turns one backend into ChangeSets;
 * it does not validate objects and knows nothing of the router or proxy.
 */
export interface Source {
  readonly name: string;
  /** Start syncing. Resolves after the first full ChangeSet was delivered, or rejects if it could not be. */
  start(events: SourceEvents): Promise<void>;
  /** Stop watching and release sockets and timers. */
  stop(): Promise<void>;
}
