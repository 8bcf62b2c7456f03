import type { GatewayConfig } from '../config/gateway.ts';
import { setupPlugins } from '../plugins/registry.ts';
import { runWorker, type ToPrimary, type ToWorker } from './worker.ts';

/*
 * The entry of a worker process (`proxy.workers` > 1), forked by server/worker-fork.ts. The primary has
 * read and checked portico.yaml and sends it as the answer to the worker's first message, so a worker
 * loads neither the CLI, the YAML reader nor the config schema and its validator, CPU the primary's
 * listing of the config needs (a two-worker start at 50,000 routes: 3.02 -> 2.80 s; docs/operations.md,
 * "Large configs and fleets").
 */

const config = await new Promise<GatewayConfig>((resolve) => {
  const onMessage = (m: ToWorker) => {
    if (m.type === 'drain') process.exit(0); // stopped before it was set up: nothing to drain
    if (m.type !== 'config') return;
    process.off('message', onMessage);
    resolve(m.config);
  };
  process.on('message', onMessage);
  process.send!({ type: 'config?' } satisfies ToPrimary);
});

try {
  // the same plugin files the primary loaded (their schemas were checked there)
  await setupPlugins(config, false);
  await runWorker(config);
} catch (err) {
  const e = err as Error & { code?: string };
  process.stderr.write(`portico worker: ${e.message}${e.code ? ` [${e.code}]` : ''}\n`);
  process.exit(1);
}
