/**
 * What the test harnesses (etcd, Redis) start and create: every child process alive and every
 * temp dir, killed and removed on exit whatever happened to the test (by PID, never by name).
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

const live = new Map<number, ChildProcess>();
export const ownedDirs = new Set<string>();
let exitHookInstalled = false;

export function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pid of live.keys()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const dir of ownedDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Tracks a child until it exits. */
export function own(child: ChildProcess): void {
  live.set(child.pid!, child);
  child.on('exit', () => live.delete(child.pid!));
}
