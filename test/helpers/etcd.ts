/**
 * Test harness for a REAL etcd (/usr/bin/etcd): single members and 3-member clusters on free
 * loopback ports, an etcdctl wrapper, and a TCP proxy to cut / black-hole the connection between a
 * client and etcd on demand.
 *
 * Every process started here is killed by PID on process exit, even when a test fails; data dirs
 * created here are removed.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, openSync, closeSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { installExitHook, own, ownedDirs } from './owned.ts';

const ETCD = process.env.ETCD_BIN ?? '/usr/bin/etcd';
const ETCDCTL = process.env.ETCDCTL_BIN ?? '/usr/bin/etcdctl';

export interface EtcdOptions {
  /** reuse this data dir (not removed on stop) */
  dataDir?: string;
  name?: string;
  /** `name=peerUrl,...` for a cluster member; default: a cluster of this member alone */
  initialCluster?: string;
  clientPort?: number;
  peerPort?: number;
  /** extra etcd flags, e.g. ['--auth-token-ttl=2'] */
  args?: string[];
  /** keep the data dir on stop() (default: removed when created here) */
  keepDataDir?: boolean;
  /** ms to wait for /health (default 15000) */
  readyTimeout?: number;
  /** wait for /health after start (default true; cluster members wait together) */
  waitReady?: boolean;
  /** serve clients over https with these PEM files (see makeTestCerts) */
  tls?: { ca: string; cert: string; key: string; clientCertAuth?: boolean; clientCert?: string; clientKey?: string };
}

export interface EtcdProcess {
  name: string;
  /** host:port of the client URL, as etcdctl wants it */
  endpoint: string;
  clientUrl: string;
  peerUrl: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
  readonly pid: number;
  /** kill (SIGTERM, then SIGKILL) and remove the data dir unless kept */
  stop(): Promise<void>;
  /** send a signal and wait for the process to exit (SIGSTOP/SIGCONT do not wait) */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** start again with the same name, ports, flags and data dir; waits until healthy */
  restart(): Promise<void>;
  waitReady(timeoutMs?: number): Promise<void>;
}


/** A free loopback TCP port: listen on 0, read the port, close. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

type HttpsOptions = { ca?: Buffer; cert?: Buffer; key?: Buffer };

function httpGet(url: string, timeoutMs: number, tls?: HttpsOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const req = get(url, { agent: false, timeout: timeoutMs, ...tls }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function waitHealthy(clientUrl: string, timeoutMs = 15_000, tls?: HttpsOptions): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const r = await httpGet(`${clientUrl}/health`, 1000, tls);
      if (r.status === 200 && r.body.includes('"true"')) return;
      last = r.body;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`etcd at ${clientUrl} not healthy after ${timeoutMs} ms: ${last}`);
}

export async function startEtcd(opts: EtcdOptions = {}): Promise<EtcdProcess> {
  installExitHook();
  const base = mkdtempSync(path.join(os.tmpdir(), 'portico-etcd-'));
  ownedDirs.add(base);
  const ownsData = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? path.join(base, 'data');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const name = opts.name ?? 'default';
  const clientPort = opts.clientPort ?? (await freePort());
  const peerPort = opts.peerPort ?? (await freePort());
  const clientUrl = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const args = [
    `--name=${name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${opts.initialCluster ?? `${name}=${peerUrl}`}`,
    '--initial-cluster-state=new',
    '--initial-cluster-token=portico-test',
    // fast elections so member kills in tests recover in well under a second
    '--heartbeat-interval=50',
    '--election-timeout=500',
    '--log-level=warn',
    ...(opts.tls
      ? [
          `--cert-file=${opts.tls.cert}`,
          `--key-file=${opts.tls.key}`,
          `--trusted-ca-file=${opts.tls.ca}`,
          `--client-cert-auth=${opts.tls.clientCertAuth === true}`,
        ]
      : []),
    ...(opts.args ?? []),
  ];
  let child: ChildProcess | undefined;
  const launch = () => {
    const logFd = openSync(path.join(base, 'etcd.log'), 'a');
    child = spawn(ETCD, args, { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    const c = child;
    own(c);
  };
  const exited = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null
      ? Promise.resolve()
      : new Promise<void>((r) => c.once('exit', () => r()));

  const proc: EtcdProcess = {
    name,
    endpoint: `127.0.0.1:${clientPort}`,
    clientUrl,
    peerUrl,
    clientPort,
    peerPort,
    dataDir,
    get pid() {
      return child?.pid ?? -1;
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      c.kill(signal);
      if (signal === 'SIGSTOP' || signal === 'SIGCONT') return;
      await exited(c);
    },
    async stop() {
      const c = child;
      if (c && c.exitCode === null && c.signalCode === null) {
        c.kill('SIGCONT');
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 3000);
        await exited(c);
        clearTimeout(t);
      }
      // base holds the log and, unless the caller brought its own, the data dir
      if (!(opts.keepDataDir && ownsData)) {
        rmSync(base, { recursive: true, force: true });
        ownedDirs.delete(base);
      }
    },
    async restart() {
      await proc.kill('SIGKILL');
      launch();
      await proc.waitReady(opts.readyTimeout);
    },
    async waitReady(timeoutMs = opts.readyTimeout ?? 15_000) {
      const t = opts.tls;
      await waitHealthy(
        clientUrl,
        timeoutMs,
        t && {
          ca: readFileSync(t.ca),
          ...(t.clientCert ? { cert: readFileSync(t.clientCert) } : {}),
          ...(t.clientKey ? { key: readFileSync(t.clientKey) } : {}),
        },
      );
    },
  };
  launch();
  if (opts.waitReady !== false) {
    try {
      await proc.waitReady();
    } catch (err) {
      await proc.stop();
      throw err;
    }
  }
  return proc;
}

export interface EtcdCluster {
  members: EtcdProcess[];
  /** client endpoints (http://127.0.0.1:port) of every member */
  clientUrls: string[];
  stop(): Promise<void>;
}

/** An n-member cluster on loopback; resolves when every member reports healthy. */
export async function startEtcdCluster(n = 3, args: string[] = []): Promise<EtcdCluster> {
  const ports = [];
  for (let i = 0; i < n; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',');
  const members = await Promise.all(
    ports.map((p, i) =>
      startEtcd({ name: `m${i}`, clientPort: p.client, peerPort: p.peer, initialCluster, args, waitReady: false }),
    ),
  );
  const cluster: EtcdCluster = {
    members,
    clientUrls: members.map((m) => m.clientUrl),
    stop: async () => {
      await Promise.all(members.map((m) => m.stop()));
    },
  };
  try {
    await Promise.all(members.map((m) => m.waitReady(20_000)));
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

/** Run etcdctl (API v3) against `endpoint` (host:port or URL); resolves with stdout. */
export function etcdctl(endpoint: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      ETCDCTL,
      [`--endpoints=${endpoint}`, '--dial-timeout=3s', '--command-timeout=5s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 15_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`etcdctl ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

export type ProxyMode = 'pass' | 'refuse' | 'blackhole';

export interface TcpProxy {
  port: number;
  url: string;
  /**
   * pass: forward; refuse: reset every connection (existing and new);
   * blackhole: keep connections open but forward nothing (a peer that vanished without a FIN)
   */
  setMode(mode: ProxyMode): void;
  /** forward what etcd answers at this many bytes per second at most (0: as fast as it comes) */
  setRate(bytesPerSecond: number): void;
  close(): Promise<void>;
}

/** A loopback TCP proxy to `targetPort`, to cut or silence a client's connection to etcd. */
export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  let mode: ProxyMode = 'pass';
  let rate = 0;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  const server = net.createServer((client) => {
    if (mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.on('data', (d) => {
      if (mode === 'pass') upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (mode !== 'pass') return;
      if (rate === 0) return void client.write(d);
      // in slices of a twentieth of the rate, one each 50 ms; etcd waits meanwhile
      upstream.pause();
      let at = 0;
      const slice = () => {
        if (client.destroyed) return;
        // (the rate may have changed meanwhile: 0, the rest at once)
        const n = rate === 0 ? d.length - at : Math.max(1, Math.floor(rate / 20));
        client.write(d.subarray(at, at + n));
        at += n;
        if (at < d.length) setTimeout(slice, 50);
        else upstream.resume();
      };
      slice();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    setRate(bytesPerSecond) {
      rate = bytesPerSecond;
    },
    setMode(m) {
      mode = m;
      if (m === 'refuse') {
        for (const p of pairs) {
          p.client.resetAndDestroy();
          p.upstream.destroy();
        }
        pairs.clear();
      }
    },
    async close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream.destroy();
      }
      pairs.clear();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface TestCerts {
  dir: string;
  ca: string;
  /** server certificate for 127.0.0.1 / localhost */
  cert: string;
  key: string;
  clientCert: string;
  clientKey: string;
}

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl). */
export function makeTestCerts(): TestCerts {
  installExitHook();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-etcd-tls-'));
  ownedDirs.add(dir);
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=portico-test-ca',
    '-keyout', f('ca.key'), '-out', f('ca.pem'));
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(f(`${name}.ext`), ext);
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`));
  }
  return {
    dir,
    ca: f('ca.pem'),
    cert: f('server.pem'),
    key: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
}
