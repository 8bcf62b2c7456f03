// Preloaded into a gateway under benchmark (BENCH_IMPORT=bench/loop-probe.mjs npm run bench:propagation):
// records event-loop delay and GC pauses over 3 ms, and writes them to /tmp/portico-loop-<pid>.json
// every second and on SIGTERM. This is how the snapshot-write GC pressure in the propagation tail
// was found. Only the main thread is probed: preloads also run in worker threads (the file
// source's reader), whose blocking is not the request path's.
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

if (isMainThread) {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const gcs = [];
  // Main-thread CPU between two 1 ms ticks: the longest piece of work the thread did at once. Unlike
  // the delay above, it does not count time the thread was runnable but not running, so on a busy
  // machine it tells the gateway's own work from the machine's noise (Node >= 23.9 only).
  const threadCpuMs = typeof process.threadCpuUsage === 'function' ? () => {
    const u = process.threadCpuUsage();
    return (u.user + u.system) / 1000;
  } : undefined;
  let cpuMaxMs = 0;
  if (threadCpuMs) {
    let last = threadCpuMs();
    setInterval(() => {
      const now = threadCpuMs();
      cpuMaxMs = Math.max(cpuMaxMs, now - last);
      last = now;
    }, 1).unref();
  }
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.duration > 3) gcs.push({ at: Math.round(performance.now()), kind: e.detail?.kind, ms: +e.duration.toFixed(1) });
  }).observe({ entryTypes: ['gc'] });
  const dump = () =>
    writeFileSync(
      `/tmp/portico-loop-${process.pid}.json`,
      JSON.stringify({ p50ms: delay.percentile(50) / 1e6, p99ms: delay.percentile(99) / 1e6, maxms: delay.max / 1e6, gcs: gcs.slice(-50) }),
    );
  process.on('SIGTERM', dump);
  // SIGUSR2: write what was recorded since the last SIGUSR2 to /tmp/portico-loop-<pid>.window.json,
  // and start over (bench/file-reload.ts measures one reload at a time this way)
  process.on('SIGUSR2', () => {
    writeFileSync(
      `/tmp/portico-loop-${process.pid}.window.json`,
      JSON.stringify({ maxms: delay.max / 1e6, p99ms: delay.percentile(99) / 1e6, cpuMaxMs: threadCpuMs ? cpuMaxMs : null, gcs: gcs.slice(-50) }),
    );
    delay.reset();
    gcs.length = 0;
    cpuMaxMs = 0;
  });
  setInterval(dump, 1000).unref();
}
