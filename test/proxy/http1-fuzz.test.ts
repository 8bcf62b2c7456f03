/**
 * Bounded randomized fuzz of the HTTP/1.1 codec: mutated requests and responses (bytes and
 * fragments placed on the parser's decision points), each parsed whole, byte by byte, under random
 * cuts and pausing on every event. Asserts: no throw, no stall (the loop runs in a worker this test
 * terminates if it stops reporting), the same outcome for every split, and never accepting a
 * request node's llhttp refuses (when this Node exposes its parser binding).
 *
 * ~3 s by default; PORTICO_FUZZ_SECONDS=60 for a longer run, PORTICO_FUZZ_SEED to vary or replay.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';

const seconds = Number(process.env.PORTICO_FUZZ_SECONDS ?? 3);
const seed = Number(process.env.PORTICO_FUZZ_SEED ?? 20240607);
/** no progress report for this long = the parser is stuck in a loop */
const STALL_MS = 3000;

interface Done {
  type: 'done';
  iterations: number;
  requests: number;
  responses: number;
  refused: number;
  checkedAgainstLlhttp: number;
  responsesValid: number;
  responsesRefused: number;
}

describe('HTTP/1.1 codec fuzz', () => {
  it(`${seconds} s of mutated requests and responses (seed ${seed})`, { timeout: seconds * 1000 + 60_000 }, async (t) => {
    // a worker does not inherit the tsx loader on Node 20: register it, then import the loop (as src/sources/file.ts)
    const entry = new URL('./http1-fuzz-worker.ts', import.meta.url);
    const worker = new Worker(
      `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); })`,
      { eval: true, workerData: { seconds, seed } },
    );
    const result = await new Promise<Done>((resolve, reject) => {
      let watchdog: NodeJS.Timeout;
      const arm = (iteration: number) => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => {
          void worker.terminate();
          reject(new Error(`no progress for ${STALL_MS} ms after iteration ${iteration} (seed ${seed}): the parser loops on one of the next inputs`));
        }, STALL_MS);
      };
      arm(0);
      worker.on('message', (m: { type: string; iteration: number; message?: string; input?: string }) => {
        if (m.type === 'progress') return arm(m.iteration);
        clearTimeout(watchdog);
        if (m.type === 'failure') reject(new Error(`iteration ${m.iteration} (seed ${seed}): ${m.message}\n  input: ${JSON.stringify(m.input)}`));
        else resolve(m as unknown as Done);
      });
      worker.on('error', (err) => {
        clearTimeout(watchdog);
        reject(err);
      });
    });
    await worker.terminate();
    t.diagnostic(
      `${result.iterations} inputs: ${result.requests} requests (${result.refused} refused), ${result.responses} responses (${result.responsesRefused} refused); ${result.checkedAgainstLlhttp} requests checked against llhttp`,
    );
    assert.ok(result.iterations > 100, 'the fuzz loop ran');
    // both verdicts must be well exercised for the properties above to mean something
    assert.ok(result.refused > result.requests / 10 && result.refused < result.requests * 0.9, 'requests both accepted and refused');
    assert.ok(result.responsesRefused < result.responses * 0.9, 'responses both accepted and refused');
  });
});
