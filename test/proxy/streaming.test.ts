import assert from 'node:assert/strict';
import http, { type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ConnectionPools } from '../../src/upstream/pools.ts';
import { makeTarget, prefixRoutes, startGateway, startUpstream, type Running } from './helpers.ts';

const MB = 1024 * 1024;
const TOTAL = 100 * MB;
/** bytes produced but not yet received after a 1.5 s stall of the other side: socket buffers at most (see the tests) */
const IN_FLIGHT_MAX = 64 * MB;
const chunk = Buffer.alloc(64 * 1024, 'x');

/** Writes `total` bytes of generated data, honouring backpressure; resolves when all were accepted. */
function produce(out: Writable, total: number, progress?: { produced: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const size = Math.min(chunk.length, total - sent);
        sent += size;
        if (progress) progress.produced = sent;
        if (!out.write(size === chunk.length ? chunk : chunk.subarray(0, size))) {
          out.once('drain', pump);
          return;
        }
      }
      out.end(resolve);
    };
    out.on('error', reject);
    pump();
  });
}

// A full GC before each sample, so the peak counts memory that is live, not garbage a lazy GC
// has not collected yet (how much of that piles up differs between Node versions).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Peak growth of RSS and of live Buffer memory (arrayBuffers) over the baseline while `work` runs. */
async function peakGrowth(work: () => Promise<void>): Promise<{ rss: number; buffers: number }> {
  gc();
  const base = process.memoryUsage();
  let rss = 0;
  let buffers = 0;
  const sample = (): void => {
    gc();
    const now = process.memoryUsage();
    rss = Math.max(rss, now.rss - base.rss);
    buffers = Math.max(buffers, now.arrayBuffers - base.arrayBuffers);
  };
  const timer = setInterval(sample, 50);
  try {
    await work();
  } finally {
    clearInterval(timer);
    sample();
  }
  return { rss, buffers };
}

describe('streaming through the proxy', () => {
  const pools = new ConnectionPools();
  let upstream: Running;
  let gateway: Running;
  const upstreamClosed: Array<{ finished: boolean }> = [];
  /** bytes the producer got accepted vs the consumer had read, at the end of the consumer's stall */
  const uploadProgress = { produced: 0, inFlightAfterStall: 0 };
  const downloadProgress = { produced: 0, inFlightAfterStall: 0 };

  before(async () => {
    upstream = await startUpstream((req, res) => {
      if (req.url === '/upload') {
        let received = 0;
        let stalled = false;
        req.on('data', (c: Buffer) => {
          received += c.length;
          // a slow reader for a while: without backpressure the proxy would buffer what follows
          if (!stalled && received > 10 * MB) {
            stalled = true;
            req.pause();
            setTimeout(() => {
              uploadProgress.inFlightAfterStall = uploadProgress.produced - received;
              req.resume();
            }, 1500);
          }
        });
        req.on('end', () => res.end(String(received)));
        return;
      }
      if (req.url === '/download') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        void produce(res, TOTAL, downloadProgress);
        return;
      }
      if (req.url === '/endless') {
        res.writeHead(200);
        res.on('close', () => upstreamClosed.push({ finished: res.writableFinished }));
        endless(res);
        return;
      }
      res.writeHead(404).end();
    });
    gateway = await startGateway(prefixRoutes({ '/': makeTarget({ [`127.0.0.1:${upstream.port}`]: 1 }) }), pools);
    // warm up code paths so the measurement below sees steady state, not first-use allocations
    await upload(4 * MB);
    await download();
  });

  after(async () => {
    await gateway.close();
    await upstream.close();
    await pools.destroy();
  });

  function upload(total: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: gateway.port, path: '/upload', method: 'POST', agent: false, headers: { 'content-length': String(total) } },
        (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve(Number(body)));
        },
      );
      req.on('error', reject);
      produce(req, total, uploadProgress).catch(reject);
    });
  }

  function download(): Promise<number> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: gateway.port, path: '/download', agent: false }, (res) => {
          let received = 0;
          let stalled = false;
          res.on('data', (c: Buffer) => {
            received += c.length;
            if (!stalled && received > 10 * MB) {
              stalled = true;
              res.pause();
              setTimeout(() => {
                downloadProgress.inFlightAfterStall = downloadProgress.produced - received;
                res.resume();
              }, 1500);
            }
          });
          res.on('end', () => resolve(received));
          res.on('error', reject);
        })
        .on('error', reject);
    });
  }

  it('streams a 100 MB upload with flat memory', async (t) => {
    let received = 0;
    const growth = await peakGrowth(async () => {
      received = await upload(TOTAL);
    });
    // while the upstream stalled, the client must have been held back (socket buffers only: on
    // loopback the kernel may grow one receive buffer to net.ipv4.tcp_rmem's max, 32 MB here, so
    // the bound is IN_FLIGHT_MAX; without backpressure nearly all of the 100 MB would be in flight)
    assert.ok(uploadProgress.inFlightAfterStall < IN_FLIGHT_MAX, `${(uploadProgress.inFlightAfterStall / MB).toFixed(1)} MB in flight`);
    assert.equal(received, TOTAL);
    t.diagnostic(`peak growth: RSS ${(growth.rss / MB).toFixed(1)} MB, live Buffers ${(growth.buffers / MB).toFixed(1)} MB`);
    assert.ok(growth.rss < 50 * MB, `RSS grew by ${(growth.rss / MB).toFixed(1)} MB`);
    assert.ok(growth.buffers < 50 * MB, `Buffers grew by ${(growth.buffers / MB).toFixed(1)} MB`);
  });

  it('streams a 100 MB download with flat memory', async (t) => {
    let received = 0;
    const growth = await peakGrowth(async () => {
      received = await download();
    });
    assert.ok(downloadProgress.inFlightAfterStall < IN_FLIGHT_MAX, `${(downloadProgress.inFlightAfterStall / MB).toFixed(1)} MB in flight`);
    assert.equal(received, TOTAL);
    t.diagnostic(`peak growth: RSS ${(growth.rss / MB).toFixed(1)} MB, live Buffers ${(growth.buffers / MB).toFixed(1)} MB`);
    assert.ok(growth.rss < 50 * MB, `RSS grew by ${(growth.rss / MB).toFixed(1)} MB`);
    assert.ok(growth.buffers < 50 * MB, `Buffers grew by ${(growth.buffers / MB).toFixed(1)} MB`);
  });

  it('closes the upstream request when the client aborts mid-download', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: gateway.port, path: '/endless', agent: false }, (res) => {
        let received = 0;
        res.on('data', (c: Buffer) => {
          received += c.length;
          if (received > 2 * MB) {
            req.destroy();
            resolve();
          }
        });
      });
      req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
    });
    const deadline = Date.now() + 3000;
    while (upstreamClosed.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(upstreamClosed, [{ finished: false }]);
  });
});

function endless(res: ServerResponse): void {
  const pump = (): void => {
    while (!res.destroyed) {
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
  };
  pump();
}
