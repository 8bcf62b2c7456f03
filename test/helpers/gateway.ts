/**
 * Starts the real gateway as a child process (`bin/portico.js start`), the way a user runs it,
 * on free loopback ports with a temp folder for its config and snapshot.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import type { StatusReport } from '../../src/observability/status.ts';
import { waitUntil } from './wait.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(ROOT, 'bin/portico.js');

export interface GatewayOptions {
  /** routes file content (file source) as an object, written as YAML */
  routes?: Record<string, unknown>;
  /** etcd source: endpoints and prefix */
  etcd?: { endpoints: string[]; prefix?: string; user?: string; password?: string; timeout?: number; tls?: { ca?: string; cert?: string; key?: string } };
  router?: 'radixtree_host_uri' | 'radixtree_uri' | 'radixtree_uri_with_parameter';
  /** reuse a folder (snapshot survives a restart) */
  dir?: string;
  instanceId?: string;
  drainTimeout?: number;
  /** proxy.workers */
  workers?: number;
  /** resolve before the gateway is ready (e.g. etcd down, no snapshot) */
  noWaitReady?: boolean;
  env?: Record<string, string>;
  /** extra `proxy:` settings of portico.yaml (timeouts, ...), merged over the defaults above */
  proxy?: Record<string, unknown>;
  /** extra top-level settings of portico.yaml */
  extra?: Record<string, unknown>;
  /** the CLI entry to run (default bin/portico.js: the sources, or a build in dist/) */
  bin?: string;
  /** called with all the gateway printed so far (stdout and stderr), each time it prints, from its start */
  onOutput?: (out: string) => void;
}

export interface GatewayProcess {
  url: string;
  statusUrl: string;
  port: number;
  pid: number;
  dir: string;
  configPath: string;
  routesPath: string;
  snapshotPath: string;
  child: ChildProcess;
  output: () => string;
  status(): Promise<StatusReport>;
  /** SIGTERM and wait: resolves with the exit code */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** remove the temp folder too */
  cleanup(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) if (c.pid && c.exitCode === null) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
});

export function writeRoutes(file: string, routes: Record<string, unknown>): void {
  // write-then-rename, like editors do: the source must survive the inode change
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, stringify(routes));
  renameSync(tmp, file);
}

export async function startGateway(opts: GatewayOptions): Promise<GatewayProcess> {
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'portico-gw-'));
  const routesPath = path.join(dir, 'routes.yaml');
  const snapshotPath = path.join(dir, 'snapshot.json');
  const configPath = path.join(dir, 'portico.yaml');
  if (opts.routes) writeRoutes(routesPath, opts.routes);
  const config: Record<string, unknown> = {
    ...(opts.instanceId ? { instance_id: opts.instanceId } : {}),
    proxy: { listen: ['127.0.0.1:0'], router: opts.router ?? 'radixtree_host_uri', drain_timeout: opts.drainTimeout ?? 10, workers: opts.workers ?? 1, ...opts.proxy },
    status: { listen: '127.0.0.1:0' },
    config: opts.etcd
      ? { source: 'etcd', etcd: { prefix: '/portico', timeout: 2, ...opts.etcd }, snapshot: 'snapshot.json' }
      : { source: 'file', file: { path: 'routes.yaml' }, snapshot: 'snapshot.json' },
    ...opts.extra,
  };
  writeFileSync(configPath, stringify(config));
  const child = spawn(process.execPath, [opts.bin ?? BIN, 'start', '--config', configPath], {
    cwd: ROOT,
    env: { ...process.env, PORTICO_LOG_LEVEL: 'warn', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  let out = '';
  const take = (d: Buffer) => {
    out += d.toString();
    opts.onOutput?.(out);
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => { live.delete(child); r(code); }));
  const m = await waitUntil(
    () => {
      if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}: ${out}`);
      return /listening on http:\/\/127\.0\.0\.1:(\d+).*status on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
    },
    20_000,
    'gateway to listen',
    20,
  ).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${out}`);
  });
  const port = Number(m[1]);
  const statusUrl = `http://127.0.0.1:${m[2]}`;
  const gw: GatewayProcess = {
    url: `http://127.0.0.1:${port}`,
    statusUrl,
    port,
    pid: child.pid!,
    dir,
    configPath,
    routesPath,
    snapshotPath,
    child,
    output: () => out,
    status: async () => (await (await fetch(`${statusUrl}/status`)).json()) as StatusReport,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
    cleanup: async () => {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    },
  };
  if (!opts.noWaitReady) await waitUntil(async () => (await gw.status()).ready, 15_000, 'gateway ready');
  return gw;
}
