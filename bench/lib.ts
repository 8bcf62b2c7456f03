/** Shared pieces of the benchmarks: processes started by PID and stopped by PID, wrk runs, nginx. */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(import.meta.dirname, '..');
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.pid) try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));

export function run(cmd: string, args: string[], opts: { env?: Record<string, string> } = {}): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
}

export { freePort } from '../test/helpers/etcd.ts';

/**
 * Compiles the gateway of the checkout at `root` (tsc, as `npm run build` does) into `out`, and
 * returns its CLI entry. Benchmarks run the gateway compiled, as production does; not into dist/,
 * because bin/portico.js prefers dist/ when present, so a leftover build would silently replace the
 * sources under test. `out` must lie inside `root` so the build finds its node_modules.
 */
export function buildGateway(out: string, root = ROOT): string {
  rmSync(out, { recursive: true, force: true });
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json'), '--outDir', path.join(out, 'dist')], { stdio: 'inherit' });
  copyFileSync(path.join(root, 'package.json'), path.join(out, 'package.json')); // src/version.ts reads ../package.json
  return path.join(out, 'dist/cli/main.js');
}

export async function waitPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); }).on('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`port ${port} not listening after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function which(bin: string): string | undefined {
  for (const dir of ['/usr/sbin', '/usr/bin', '/usr/local/bin', '/usr/local/sbin', ...(process.env.PATH ?? '').split(':')]) {
    const p = path.join(dir, bin);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** Runs wrk (loopback only, bounded by duration) and parses throughput and latency percentiles. */
export function wrk(url: string, opts: { duration: number; connections: number; threads: number }): WrkResult {
  const out = execFileSync('wrk', ['-t', String(opts.threads), '-c', String(opts.connections), '-d', `${opts.duration}s`, '--latency', url], {
    encoding: 'utf8',
    timeout: (opts.duration + 30) * 1000,
  });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
  const p50 = /\n\s+50%\s+(\S+)/.exec(out)?.[1] ?? '';
  const p99 = /\n\s+99%\s+(\S+)/.exec(out)?.[1] ?? '';
  const errs = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const errors = (errs ? Number(errs[1]) : 0) + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0);
  return { rps, p50ms: toMs(p50), p99ms: toMs(p99), errors };
}

/** nginx with one worker by default, as a fair per-core peer; `serverBlock` is the server block. */
export function startNginx(serverBlock: string, workers = 1): ChildProcess | undefined {
  const bin = which('nginx');
  if (!bin) return undefined;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-bench-nginx-'));
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off; master_process ${workers > 1 ? 'on' : 'off'}; worker_processes ${workers}; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
${serverBlock}
}
`,
  );
  return run(bin, ['-c', conf, '-p', dir]);
}
