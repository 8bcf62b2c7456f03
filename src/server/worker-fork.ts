import cluster, { type Worker } from 'node:cluster';
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { parse } from 'yaml';
import { buildFile, codeFile, fromSources } from '../layout.ts';
import type { ToPrimary } from './worker.ts';

/*
 * Forking the worker processes of `proxy.workers` > 1. Kept light (node modules, the YAML reader and
 * layout.ts) so that the CLI forks the first worker as soon as it has read portico.yaml, before it
 * loads its own code: that worker loads its code on the core the primary leaves idle meanwhile; the
 * others are forked when the gateway starts (docs/operations.md, "Large configs and fleets").
 */

/**
 * The V8 flag each worker runs with unless the operator chose a young-generation size: 2 MB
 * semispaces instead of node's 16 MB. A proxy's garbage dies young (per-request objects), so a small
 * young generation is scavenged more often but each scavenge is shorter: measured on one worker
 * (wrk -c50, 3 alternating rounds) the same throughput and a lower p99 (2.5–2.9 ms against
 * 3.3–3.5 ms), and ~28 MB less resident memory per process (docs/operations.md, "Memory").
 */
export const YOUNG_GENERATION_FLAG = '--max-semi-space-size=2';

/** Node flags for the workers: the primary's own, plus YOUNG_GENERATION_FLAG unless a size is set. */
export function workerExecArgv(execArgv: readonly string[], nodeOptions: string | undefined): string[] {
  const chosen = [...execArgv, ...(nodeOptions ?? '').split(/\s+/)].some((a) => /^--max[-_]semi[-_]space[-_]size\b/.test(a));
  return chosen ? [...execArgv] : [...execArgv, YOUNG_GENERATION_FLAG];
}

/**
 * The file a worker process runs: its entry module (`.ts` when this runs from the sources), or in a
 * build the one-file bundle scripts/bundle.mjs made of it, unless that bundle is older than tsc's
 * output (a rebuild with tsc alone must not leave workers running the previous build's code).
 */
export function workerEntry(): string {
  const entry = codeFile('server/worker-main');
  if (fromSources) return entry;
  const bundled = buildFile('worker-main.js');
  try {
    return statSync(bundled).mtimeMs >= statSync(entry).mtimeMs ? bundled : entry;
  } catch {
    return entry; // no bundle
  }
}

export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? availableParallelism() : setting;
}

/**
 * How many worker processes the portico.yaml at `path` asks for, read before the file is validated
 * (the CLI forks the first one while it loads the validator and its own code); 1 when the file
 * cannot be read or parsed or `proxy.workers` is neither a count nor `auto` (its validation then
 * says why, and a worker forked on a count it rejects is killed).
 */
export function requestedWorkers(path: string): number {
  try {
    const setting = (parse(readFileSync(path, 'utf8')) as { proxy?: { workers?: unknown } } | null)?.proxy?.workers;
    if (setting === 'auto') return workerCount('auto');
    return Number.isInteger(setting) && (setting as number) >= 1 ? (setting as number) : 1;
  } catch {
    return 1;
  }
}

/** A worker forked before the gateway that runs it exists: what it said and whether it exited meanwhile. */
export interface EarlyWorker {
  worker: Worker;
  /** messages received before the gateway took the worker over, in order */
  messages: ToPrimary[];
  exited: { code: number | null; signal: string | null } | undefined;
  /** stops recording (the gateway's own handlers take over) */
  release(): void;
}

let setUp = false;

/**
 * Sets the workers' entry and node flags, once per process (from the sources, they load them through
 * tsx as the primary does: bin/portico.js may have registered it itself rather than by a node flag
 * they inherit).
 */
function setupWorkers(): void {
  if (setUp) return;
  setUp = true;
  const exec = workerEntry();
  const execArgv = workerExecArgv(process.execArgv, process.env.NODE_OPTIONS);
  if (exec.endsWith('.ts') && !execArgv.some((a) => a.includes('tsx'))) execArgv.unshift(`--import=${import.meta.resolve('tsx')}`);
  cluster.setupPrimary({ exec, args: [], execArgv });
}

/** Forks worker `index` (its place 0..count-1, kept by its replacement; worker 0 serves the UDP listeners). */
export function forkWorker(index: number): Worker {
  setupWorkers();
  return cluster.fork({ PORTICO_WORKER: '1', PORTICO_WORKER_INDEX: String(index) });
}

/** Forks `count` workers now, recording what they say until a ClusterGateway takes them over. */
export function forkEarly(count: number): EarlyWorker[] {
  return Array.from({ length: count }, (_, index) => {
    const worker = forkWorker(index);
    const early: EarlyWorker = {
      worker,
      messages: [],
      exited: undefined,
      release: () => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
      },
    };
    const onMessage = (m: ToPrimary) => void early.messages.push(m);
    const onExit = (code: number | null, signal: string | null) => (early.exited = { code, signal });
    worker.on('message', onMessage);
    worker.on('exit', onExit);
    return early;
  });
}

/** Kills every worker this process forked (a start that failed: they must not outlive it). */
export function killWorkers(): void {
  for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill();
}
