import { Worker } from 'node:worker_threads';

export interface SteadyClient {
  /** the slowest request, the number of requests answered and of failures since the last take() */
  take(): Promise<{ maxMs: number; count: number; errors: number }>;
  close(): Promise<void>;
}

/**
 * Sends `GET path` (with a Host header) every `everyMs` to a gateway, from its own thread: the
 * caller's own work (building or writing a big routes file) must never count as the gateway's
 * latency. Each request is timed from the moment it was due, on a keep-alive pool of many sockets,
 * so a gateway that stalls for 800 ms shows requests that waited 800 ms, not just fewer requests.
 */
export function startSteadyClient(opts: { port: number; path: string; host: string; everyMs: number }): SteadyClient {
  const worker = new Worker(
    `const { parentPort, workerData: o } = require('node:worker_threads');
     const http = require('node:http');
     const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
     let maxMs = 0, count = 0, errors = 0;
     setInterval(() => {
       const due = performance.now();
       http.get({ agent, host: '127.0.0.1', port: o.port, path: o.path, headers: { host: o.host } }, (res) => {
         res.resume();
         res.on('end', () => { maxMs = Math.max(maxMs, performance.now() - due); count++; if (res.statusCode !== 200) errors++; });
       }).on('error', () => errors++);
     }, o.everyMs);
     parentPort.on('message', () => { parentPort.postMessage({ maxMs, count, errors }); maxMs = 0; count = 0; errors = 0; });`,
    { eval: true, workerData: opts },
  );
  return {
    take: () =>
      new Promise((resolve) => {
        worker.once('message', resolve);
        worker.postMessage('take');
      }),
    close: async () => {
      await worker.terminate();
    },
  };
}
