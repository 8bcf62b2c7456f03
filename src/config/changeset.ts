import type { ErrorCode } from '../errors.ts';
import type { Fingerprint } from './fingerprint.ts';

/**
 * The unit of configuration change. Sources (file, etcd) turn whatever they read into ChangeSets;
 * the ConfigStore is the only consumer. Nothing downstream of the store knows which source spoke.
 */

/** Object kinds the store knows; the etcd key is `<prefix>/<kind>/<id>`. */
export const KINDS = ['routes', 'services', 'upstreams', 'consumers', 'plugin_configs', 'global_rules', 'ssls', 'stream_routes'] as const;
export type Kind = (typeof KINDS)[number];

/** One value per kind (a fresh one from `make` for each). */
export function perKind<T>(make: (kind: Kind) => T): Record<Kind, T> {
  const out = {} as Record<Kind, T>;
  for (const kind of KINDS) out[kind] = make(kind);
  return out;
}

export function isKind(s: string): s is Kind {
  return (KINDS as readonly string[]).includes(s);
}

export interface Change {
  kind: Kind;
  id: string;
  /**
   * Revision at which this object last changed in its source (etcd `mod_revision`; the file source
   * keeps its own per-object counter). Two changes of one object with the same modRevision carry
   * the same value, which is how a full relist skips unchanged objects.
   */
  modRevision: number;
  /** true: the object was deleted at the source */
  deleted?: boolean;
  /** the decoded value (not yet validated); absent for deletes and parse errors */
  value?: unknown;
  /**
   * fingerprint() of the value's text as the source stored it (etcd), when the source has one: a
   * relist compares it instead of serializing the value
   */
  fingerprint?: Fingerprint;
  /**
   * the value's JSON text as the source stored it, while a listing's page is handed on (etcd; the
   * source drops it right after, so that the text dies young): the primary of workers writes it to
   * the listing file (server/listing-ahead.ts) instead of serializing the parsed value again
   */
  text?: string;
  /** set when the source could not decode the value; the store records a rejection */
  parseError?: string;
  /** the rejection's code when it is not PORTICO_ERR_PARSE (PORTICO_ERR_LIMIT: over the size/depth limits) */
  parseErrorCode?: ErrorCode;
}

export interface ChangeSet {
  /** source name, e.g. "file" or "etcd" */
  source: string;
  /** the source revision this change set brings the store to (etcd header/event revision, file counter) */
  revision: number;
  /**
   * full: the change set is the complete state of the source (initial load, relist after
   * compaction, file reload). Objects in the store but absent here are deleted; objects whose
   * modRevision did not change are not revalidated nor recompiled.
   */
  full: boolean;
  changes: Change[];
  /** free-form, shown in /status (file: content hash) */
  detail?: string;
}
