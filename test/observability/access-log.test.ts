/**
 * The access log writes real files: JSON lines and nginx combined lines as a log reader sees
 * them, rotation with a writer running in another process (rename + SIGUSR1, as logrotate does),
 * and paths it cannot open or write to.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, renameSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AccessLog } from '../../src/observability/access-log.ts';
import type { ExchangeRecord } from '../../src/observability/exchange.ts';
import { exchangeRecord } from '../helpers/exchange-record.ts';
import { log } from '../../src/observability/log.ts';
import { installExitHook, own, ownedDirs } from '../helpers/owned.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
let dir: string;

before(() => {
  installExitHook();
  dir = mkdtempSync(join(tmpdir(), 'portico-access-log-'));
  ownedDirs.add(dir); // removed by the exit hook
});

function record(over: Partial<ExchangeRecord> = {}): ExchangeRecord {
  return exchangeRecord({
    time: Date.UTC(2026, 10, 26, 16, 53, 14, 7),
    start: 1234.5,
    duration: 0.012345,
    clientAddress: '192.0.2.10',
    clientPort: 51234,
    method: 'POST',
    host: 'api.example.com',
    uri: '/v1/orders?page=2',
    status: 201,
    bytesIn: 512,
    bytesOut: 2048,
    routeId: 'orders',
    serviceId: 'shop',
    upstream: 'upstreams/orders',
    upstreamAddr: '10.0.0.7:8080',
    upstreamStatus: 201,
    failedAttempts: [{ addr: '10.0.0.6:8080', status: 0 }],
    upstreamDuration: 0.0101,
    consumer: 'alice',
    requestId: 'b7c1e6f0-3d1e-4b7a-9a1f-2f6f1e0a9c11',
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    ...over,
  });
}

/** Writes the records through a new AccessLog, closes it, returns the file's lines. */
async function writeLines(name: string, format: 'json' | 'combined', records: ExchangeRecord[]): Promise<string[]> {
  const path = join(dir, name);
  const accessLog = new AccessLog({ path, format });
  for (const r of records) accessLog.finished(r);
  await accessLog.close();
  assert.equal(accessLog.dropped, 0);
  const text = readFileSync(path, 'utf8');
  assert.ok(text.endsWith('\n'), 'the last line is complete');
  return text.slice(0, -1).split('\n');
}

/** Captures what the process logger's error() and warn() receive while `run` runs. */
async function capturingLog<T>(run: () => Promise<T>): Promise<{ result: T; errors: string[]; warnings: string[] }> {
  const errors: string[] = [];
  const warnings: string[] = [];
  const logger = log as unknown as Record<'error' | 'warn', (obj: unknown, msg?: string) => void>;
  const { error, warn } = logger;
  logger.error = (_obj, msg) => errors.push(msg ?? '');
  logger.warn = (_obj, msg) => warnings.push(msg ?? '');
  try {
    return { result: await run(), errors, warnings };
  } finally {
    logger.error = error;
    logger.warn = warn;
  }
}

const HOSTILE = 'say "hi" \\ back\\slash\nnew line\r\ttab \u0000nul \u001f é 漢字 😀 lone\ud800 end';

describe('access log: JSON lines', () => {
  it('writes every field with its documented name, type and value, and nothing else', async () => {
    const r = record();
    const [line, ...rest] = await writeLines('full.json.log', 'json', [r]);
    assert.equal(rest.length, 0);
    const parsed = JSON.parse(line!);
    assert.deepEqual(Object.keys(parsed), [
      'time', 'client_addr', 'client_port', 'method', 'host', 'uri', 'protocol', 'status', 'bytes_in', 'bytes_out',
      'request_time', 'upstream_addr', 'upstream_status', 'upstream_time', 'route_id', 'service_id', 'upstream',
      'consumer', 'request_id', 'trace_id', 'aborted',
    ]);
    assert.deepEqual(parsed, {
      time: '2026-11-26T16:53:14.007Z',
      client_addr: '192.0.2.10',
      client_port: 51234,
      method: 'POST',
      host: 'api.example.com',
      uri: '/v1/orders?page=2',
      protocol: 'HTTP/1.1',
      status: 201,
      bytes_in: 512,
      bytes_out: 2048,
      request_time: 0.012,
      upstream_addr: '10.0.0.7:8080',
      upstream_status: 201,
      upstream_time: 0.01,
      route_id: 'orders',
      service_id: 'shop',
      upstream: 'upstreams/orders',
      consumer: 'alice',
      request_id: 'b7c1e6f0-3d1e-4b7a-9a1f-2f6f1e0a9c11',
      trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
      aborted: false,
    });
  });

  it('a request that reached no upstream: upstream_time null, empty strings, status 0 when the client left', async () => {
    // (the helper's record has no route, upstream, consumer, request id or trace)
    const r = exchangeRecord({ time: Date.UTC(2026, 0, 2, 3, 4, 5, 999), duration: 1.23456, status: 0, aborted: true, host: '' });
    const [line] = await writeLines('no-upstream.json.log', 'json', [r]);
    const parsed = JSON.parse(line!);
    assert.equal(parsed.time, '2026-01-02T03:04:05.999Z');
    assert.equal(parsed.upstream_time, null);
    assert.equal(parsed.request_time, 1.235);
    assert.equal(parsed.status, 0);
    assert.equal(parsed.aborted, true);
    assert.equal(parsed.upstream_status, 0);
    for (const key of ['host', 'upstream_addr', 'route_id', 'service_id', 'upstream', 'consumer', 'request_id', 'trace_id']) {
      assert.equal(parsed[key], '', key);
    }
  });

  it('hostile strings (quotes, backslashes, newlines, NUL, non-ASCII, a lone surrogate) stay on one line and round-trip', async () => {
    // (the method is an HTTP token — both parsers refuse anything else — and is written as it is)
    const r = record({ uri: '/' + HOSTILE, host: HOSTILE, method: 'PATCH', requestId: HOSTILE, consumer: 'bob\\"' });
    const lines = await writeLines('hostile.json.log', 'json', [r, record()]);
    assert.equal(lines.length, 2, 'the newline inside the values did not split the line');
    const parsed = JSON.parse(lines[0]!);
    assert.equal(parsed.uri, '/' + HOSTILE);
    assert.equal(parsed.host, HOSTILE);
    assert.equal(parsed.method, 'PATCH');
    assert.equal(parsed.request_id, HOSTILE);
    assert.equal(parsed.consumer, 'bob\\"');
    assert.equal(JSON.parse(lines[1]!).uri, '/v1/orders?page=2');
  });
});

describe('access log: nginx combined', () => {
  // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
  const COMBINED =
    /^(\S+) - (\S+) \[(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\] "((?:[^"\\]|\\x[0-9A-F]{2})*)" (\d{3}) (\d+) "((?:[^"\\]|\\x[0-9A-F]{2})*)" "((?:[^"\\]|\\x[0-9A-F]{2})*)"$/;
  const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  /** ms since the epoch of a $time_local (whatever the process's time zone) */
  function epochOf(m: RegExpMatchArray): number {
    const [d, mon, y, h, mi, s, sign, oh, om] = m.slice(3, 12);
    const local = Date.UTC(Number(y), MONTHS.indexOf(mon!), Number(d), Number(h), Number(mi), Number(s));
    const offset = (Number(oh) * 60 + Number(om)) * 60_000 * (sign === '-' ? -1 : 1);
    return local - offset;
  }

  it('writes the combined format: client, consumer as remote_user, local time, request line, status, bytes, "-" for absent headers', async () => {
    const r = record();
    const [line] = await writeLines('full.combined.log', 'combined', [r]);
    const m = line!.match(COMBINED);
    assert.ok(m, `combined format: ${line}`);
    assert.equal(m[1], '192.0.2.10');
    assert.equal(m[2], 'alice');
    assert.equal(epochOf(m), Date.UTC(2026, 10, 26, 16, 53, 14));
    assert.equal(m[12], 'POST /v1/orders?page=2 HTTP/1.1');
    assert.equal(m[13], '201');
    assert.equal(m[14], '2048');
    assert.equal(m[15], '-');
    assert.equal(m[16], '-');
  });

  it('escapes like nginx (\\xHH) in the request line and headers; no consumer is "-", no response is 000', async () => {
    const r = Object.assign(record({ uri: '/a"b\\c\nd\u00e9€', consumer: '', status: 0, method: 'GET' }), {
      referer: 'https://ref.example/?q="x"',
      userAgent: 'curl/8.5.0 \u0001',
    });
    const lines = await writeLines('hostile.combined.log', 'combined', [r]);
    assert.equal(lines.length, 1);
    const m = lines[0]!.match(COMBINED);
    assert.ok(m, `combined format: ${lines[0]}`);
    assert.equal(m[2], '-');
    assert.equal(m[12], 'GET /a\\x22b\\x5Cc\\x0Ad\\xE9\\xE2\\x82\\xAC HTTP/1.1');
    assert.equal(m[13], '000');
    assert.equal(m[15], 'https://ref.example/?q=\\x22x\\x22');
    assert.equal(m[16], 'curl/8.5.0 \\x01');
  });
});

describe('access log: buffering', () => {
  it('a few lines are written by the interval timer without a flush, flush() writes the rest, close() leaves nothing behind', async () => {
    const path = join(dir, 'buffered.log');
    const accessLog = new AccessLog({ path, format: 'combined', flushInterval: 50 });
    const lines = () => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').length - 1 : 0);
    for (let i = 0; i < 3; i++) accessLog.finished(record({ uri: `/timer/${i}` }));
    await sleep(10);
    assert.equal(lines(), 0, 'three short lines wait for more (nothing written per line)');
    await waitUntil(() => lines() === 3, 5_000, 'the interval timer writes them');
    for (let i = 0; i < 5; i++) accessLog.finished(record({ uri: `/flush/${i}` }));
    await accessLog.flush();
    assert.equal(lines(), 8);
    for (let i = 0; i < 1000; i++) accessLog.finished(record({ uri: `/close/${i}` }));
    await accessLog.close();
    assert.equal(lines(), 1008);
    assert.equal(accessLog.dropped, 0);
    assert.equal(statSync(path).mode & 0o777, 0o640 & ~process.umask());
  });

  it("path 'stdout': the lines go to the process's stdout", async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'access-log-writer.ts'), 'stdout', 'exit-later'], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    own(child);
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    assert.deepEqual(stdout.split('\n').slice(0, -1).map((l) => JSON.parse(l).uri), ['/seq/0', '/seq/1', '/seq/2']);
  });

  it('over bufferLimit, lines are dropped and counted (one warning), never queued without bound', async () => {
    const path = join(dir, 'overflow.log');
    const { warnings } = await capturingLog(async () => {
      const accessLog = new AccessLog({ path, format: 'json', bufferLimit: 64 * 1024 });
      // all in one turn of the event loop: nothing can be written meanwhile
      for (let i = 0; i < 1000; i++) accessLog.finished(record({ uri: `/overflow/${i}` }));
      const dropped = accessLog.dropped;
      // 64 KiB hold ~120 of these ~540-byte lines, plus the 16 KiB batch being filled
      assert.ok(dropped > 800, `dropped ${dropped}`);
      await accessLog.close();
      assert.equal(accessLog.dropped, dropped);
      const written = readFileSync(path, 'utf8').split('\n').slice(0, -1);
      assert.equal(written.length + dropped, 1000, 'every line is either in the file or counted');
      assert.ok(written.length < 200, `written ${written.length}: the limit held`);
      for (const line of written) JSON.parse(line);
    });
    assert.equal(warnings.length, 1, warnings.join('; '));
    assert.match(warnings[0]!, /not keeping up/);
  });

  for (const mode of ['exit', 'exit-later']) {
    it(`lines still buffered when the process exits without close() are written (${mode === 'exit' ? 'file not open yet' : 'file open'})`, async () => {
      const path = join(dir, `${mode}.log`);
      const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'access-log-writer.ts'), path, mode], { cwd: repo, stdio: 'ignore' });
      own(child);
      const code = await new Promise((resolve) => child.on('exit', resolve));
      assert.equal(code, 0);
      const lines = readFileSync(path, 'utf8').split('\n');
      assert.deepEqual(lines.slice(0, -1).map((l) => JSON.parse(l).uri), ['/seq/0', '/seq/1', '/seq/2']);
    });
  }
});

describe('access log: rotation', () => {
  it('a writer in another process: rename + SIGUSR1 three times, no line lost, duplicated or split, every file gets lines', { timeout: 60_000 }, async () => {
    const path = join(dir, 'rotated.log');
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'access-log-writer.ts'), path], {
      cwd: repo,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    own(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const size = (p: string) => statSync(p, { throwIfNoEntry: false })?.size ?? 0;
      await waitUntil(() => size(path) > 0, 20_000, 'the writer writes its first lines');
      for (let k = 1; k <= 3; k++) {
        renameSync(path, `${path}.${k}`);
        process.kill(child.pid!, 'SIGUSR1');
        await waitUntil(() => size(path) > 0, 10_000, `lines in the file reopened after rename ${k}`);
        await sleep(100);
      }
      process.kill(child.pid!, 'SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(resolve, 20_000, 'timeout')))]);
      clearTimeout(timer);
      assert.equal(code, 0, `writer exit (stderr: ${stderr})`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    const { written, dropped } = JSON.parse(stdout) as { written: number; dropped: number };
    assert.equal(dropped, 0);
    assert.ok(written > 1000, `the writer wrote ${written} lines`);

    const seen = new Uint8Array(written);
    let previousLast = -1;
    for (const file of [`${path}.1`, `${path}.2`, `${path}.3`, path]) {
      const text = readFileSync(file, 'utf8');
      assert.ok(text.endsWith('\n'), `${file} ends with a whole line`);
      const lines = text.slice(0, -1).split('\n');
      assert.ok(lines.length > 0 && lines[0] !== '', `${file} received lines`);
      for (const line of lines) {
        const n = Number(/^\/seq\/(\d+)$/.exec(JSON.parse(line).uri)![1]);
        assert.ok(n < written, `seq ${n} was written`);
        assert.equal(seen[n], 0, `seq ${n} appears once`);
        seen[n] = 1;
        // one writer, writes in order: each file holds the next run of lines
        assert.equal(n, previousLast + 1, `${file}: seq ${n} follows ${previousLast}`);
        previousLast = n;
      }
    }
    assert.equal(previousLast, written - 1, 'every line written is in one of the files');
  });
});

describe('access log: workers', () => {
  it('three processes appending to one file: every line whole, none lost', { timeout: 60_000 }, async () => {
    const path = join(dir, 'shared.log');
    const writers = ['a', 'b', 'c'].map((id) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'fixtures', 'access-log-writer.ts'), path], {
        cwd: repo,
        stdio: ['ignore', 'pipe', 'ignore'],
        env: { ...process.env, ACCESS_LOG_WRITER: id },
      });
      own(child);
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      return { id, child, exited, report: () => JSON.parse(stdout) as { written: number; dropped: number } };
    });
    try {
      // lines from a writer mean it has its signal handlers (a SIGTERM before would just kill it)
      const allWriting = () => {
        if ((statSync(path, { throwIfNoEntry: false })?.size ?? 0) < 3_000_000) return false;
        const text = readFileSync(path, 'latin1');
        return writers.every((w) => text.includes(`"/${w.id}/seq/`));
      };
      await waitUntil(allWriting, 20_000, 'all writers writing, the file past 3 MB', 50);
      for (const w of writers) process.kill(w.child.pid!, 'SIGTERM');
      for (const w of writers) assert.equal(await w.exited, 0);
    } finally {
      for (const w of writers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    }
    const text = readFileSync(path, 'utf8');
    assert.ok(text.endsWith('\n'));
    const next = new Map(writers.map((w) => [w.id, 0]));
    for (const line of text.slice(0, -1).split('\n')) {
      const [, id, n] = /^\/(\w)\/seq\/(\d+)$/.exec(JSON.parse(line).uri)!;
      // each writer's lines arrive whole and in its own order, interleaved only line by line
      assert.equal(Number(n), next.get(id!), `writer ${id}`);
      next.set(id!, Number(n) + 1);
    }
    for (const w of writers) {
      const { written, dropped } = w.report();
      assert.equal(dropped, 0);
      assert.equal(next.get(w.id), written, `all of writer ${w.id}'s lines are in the file`);
    }
  });
});

describe('access log: failures never reach the request', () => {
  it('a path that cannot be opened (a directory): finished() does not throw, the error is logged once, lines are counted as dropped', async () => {
    const { errors } = await capturingLog(async () => {
      const accessLog = new AccessLog({ path: dir, format: 'json' });
      for (let i = 0; i < 10; i++) accessLog.finished(record());
      await waitUntil(() => accessLog.lastError, 5_000, 'the open error');
      assert.equal((accessLog.lastError as NodeJS.ErrnoException).code, 'EISDIR');
      for (let i = 0; i < 5; i++) accessLog.finished(record());
      assert.equal(accessLog.dropped, 15);
      await accessLog.flush();
      await accessLog.close();
      accessLog.finished(record());
      assert.equal(accessLog.dropped, 16);
    });
    assert.equal(errors.length, 1, errors.join('; '));
    assert.match(errors[0]!, /cannot open/);
  });

  it('a path under a missing directory is reported the same way, and reopen() retries the open', async () => {
    const missing = join(dir, 'later', 'access.log');
    const { errors, result: accessLog } = await capturingLog(async () => {
      const accessLog = new AccessLog({ path: missing, format: 'combined' });
      accessLog.finished(record());
      await waitUntil(() => accessLog.lastError, 5_000, 'the open error');
      assert.equal((accessLog.lastError as NodeJS.ErrnoException).code, 'ENOENT');
      assert.equal(accessLog.dropped, 1);
      // the operator creates the directory, logrotate (or portico reopen) signals
      const { mkdirSync } = await import('node:fs');
      mkdirSync(dirname(missing));
      accessLog.reopen();
      await waitUntil(() => existsSync(missing), 5_000, 'the file opened on reopen');
      accessLog.finished(record());
      await accessLog.close();
      return accessLog;
    });
    assert.equal(errors.length, 1);
    assert.equal(accessLog.dropped, 1);
    assert.equal(readFileSync(missing, 'utf8').split('\n').length, 2, 'the line after the reopen was written');
  });

  it('writes that fail (ENOSPC on /dev/full): logged once, retried each interval, every line counted as dropped', { skip: !existsSync('/dev/full') }, async () => {
    const { errors } = await capturingLog(async () => {
      const accessLog = new AccessLog({ path: '/dev/full', format: 'json', flushInterval: 20 });
      for (let i = 0; i < 100; i++) accessLog.finished(record()); // ~50 KB: more than one batch
      await waitUntil(() => accessLog.lastError, 5_000, 'the write error');
      assert.equal((accessLog.lastError as NodeJS.ErrnoException).code, 'ENOSPC');
      for (let i = 0; i < 20; i++) accessLog.finished(record());
      await sleep(150); // several retries, each failing
      await accessLog.flush(); // returns: the failure is reported, not waited out
      await accessLog.close();
      assert.equal(accessLog.dropped, 120, 'every line is accounted for as dropped');
    });
    assert.equal(errors.length, 1, errors.join('; '));
    assert.match(errors[0]!, /write failed/);
  });
});
