import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/*
 * One full garbage collection at a moment chosen by the gateway: after the first listing of a large
 * config, before its snapshot and data plane are built. The listing leaves tens of megabytes of
 * garbage that outlived the young generation (etcd's pages as received, parsed and decoded); the
 * heap grows past it unless a full collection happens to run, and whether one does before `ready`
 * decided the resident memory at ready: 159-164 or 193-207 MB at 50,000 routes, run to run. Collected
 * here, the tables built next reuse that memory: 170-180 MB in every run, the start as fast (the
 * collection, ~50 ms, stands in for later ones). docs/operations.md, "Memory".
 */

/** the listings this large get a collection before they are applied */
export const LARGE_LISTING = 10_000;

let gc: (() => void) | undefined;

/** Runs a full collection now; returns how long it took (ms). */
export function collectGarbage(): number {
  if (gc === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc;
    if (exposed !== undefined) gc = exposed;
    else {
      // node's own switch for it (a flag set at run time, then the function from a fresh context)
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    }
  }
  const started = performance.now();
  gc();
  return performance.now() - started;
}
