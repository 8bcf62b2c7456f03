/**
 * Test harness for a REAL Redis (/usr/bin/redis-server): one server on a free loopback port with a
 * temp dir, no persistence (`--save '' --appendonly no`), ready once it answers PING. It can be
 * stopped and started again on the same port (an outage the gateway must survive).
 *
 * Every process started here is killed by PID on process exit, even when a test fails; dirs
 * created here are removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { installExitHook, own, ownedDirs } from './owned.ts';
import { freePort } from './etcd.ts';

const REDIS = process.env.REDIS_BIN ?? '/usr/bin/redis-server';

export interface RedisOptions {
  port?: number;
  /** requirepass */
  password?: string;
  /** ms to wait for PING (default 10000) */
  readyTimeout?: number;
}

export interface RedisProcess {
  host: string;
  port: number;
  dir: string;
  readonly pid: number;
  /** SIGKILL and wait (the server is gone, its data too: no persistence) */
  kill(): Promise<void>;
  /** SIGSTOP: the server keeps its connections but answers nothing (a hung or unreachable peer) */
  pause(): void;
  /** SIGCONT after pause() */
  resume(): void;
  /** start again on the same port; waits for PING */
  start(): Promise<void>;
  /** one command over a new connection (inline protocol), the raw reply */
  command(...args: string[]): Promise<string>;
  /** the server's log so far */
  log(): string;
  /** kill and remove the dir */
  stop(): Promise<void>;
}


/** Sends one command (RESP array) on a fresh connection and resolves with the first reply's bytes. */
function sendCommand(port: number, args: string[], password: string | undefined, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const encode = (a: string[]) => `*${a.length}\r\n${a.map((x) => `$${Buffer.byteLength(x)}\r\n${x}\r\n`).join('')}`;
    const socket = net.connect(port, '127.0.0.1');
    let out = '';
    let skipAuthReply = password !== undefined;
    const timer = setTimeout(() => socket.destroy(new Error(`redis :${port}: no reply after ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write((password !== undefined ? encode(['AUTH', password]) : '') + encode(args)));
    socket.on('data', (d: string) => {
      out += d;
      if (skipAuthReply) {
        const nl = out.indexOf('\r\n');
        if (nl < 0) return;
        out = out.slice(nl + 2);
        skipAuthReply = false;
      }
      // enough for status, error and integer replies and short bulk strings
      if (/\r\n$/.test(out) && !/^\$\d+\r\n$/.test(out)) {
        clearTimeout(timer);
        socket.end();
        resolve(out.trimEnd());
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export async function startRedis(opts: RedisOptions = {}): Promise<RedisProcess> {
  installExitHook();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-redis-'));
  ownedDirs.add(dir);
  const port = opts.port ?? (await freePort());
  const logPath = path.join(dir, 'redis.log');
  const args = [
    '--port', String(port),
    '--bind', '127.0.0.1',
    '--dir', dir,
    '--save', '',
    '--appendonly', 'no',
    '--daemonize', 'no',
    ...(opts.password !== undefined ? ['--requirepass', opts.password] : []),
  ];
  let child: ChildProcess | undefined;
  const exited = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise<void>((r) => c.once('exit', () => r()));

  const waitReady = async (timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (child && (child.exitCode !== null || child.signalCode !== null)) break;
      try {
        const reply = await sendCommand(port, ['PING'], opts.password, 1000);
        if (reply === '+PONG') return;
        last = reply;
      } catch (err) {
        last = (err as Error).message;
      }
      await new Promise((r) => setTimeout(r, 30));
    }
    throw new Error(`redis on :${port} did not answer PING within ${timeoutMs} ms: ${last}\n${proc.log()}`);
  };

  const proc: RedisProcess = {
    host: '127.0.0.1',
    port,
    dir,
    get pid() {
      return child?.pid ?? -1;
    },
    async kill() {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      c.kill('SIGCONT');
      c.kill('SIGKILL');
      await exited(c);
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async start() {
      await proc.kill();
      const logFd = openSync(logPath, 'a');
      child = spawn(REDIS, args, { stdio: ['ignore', logFd, logFd] });
      closeSync(logFd);
      const c = child;
      own(c);
      await waitReady(opts.readyTimeout ?? 10_000);
    },
    command: (...a: string[]) => sendCommand(port, a, opts.password, 3000),
    log: () => {
      try {
        return readFileSync(logPath, 'utf8');
      } catch {
        return '';
      }
    },
    async stop() {
      await proc.kill();
      rmSync(dir, { recursive: true, force: true });
      ownedDirs.delete(dir);
    },
  };
  try {
    await proc.start();
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}
