import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { after, describe, it } from 'node:test';

import type { UpstreamConfig } from '../../src/config/schema/upstream.ts';
import { proxyTcp, streamIdleTimeout, DEFAULT_PROXY_TIMEOUT_MS, type StreamUpstream, type TcpSession, type TcpSessionEnd } from '../../src/proxy/stream/tcp.ts';
import { HealthBook, type HealthVerdict } from '../../src/upstream/health/book.ts';
import { compileUpstream } from '../../src/runtime/upstream.ts';
import type { UpstreamNode } from '../../src/upstream/types.ts';
import { makeTestPki } from '../helpers/certs.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

// --- harness: real servers on loopback, every one closed at the end --------------------------------

const servers: net.Server[] = [];
const children: ChildProcess[] = [];
after(async () => {
  for (const child of children) if (child.exitCode === null) process.kill(child.pid!, 'SIGKILL');
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

async function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, host, r));
  // connections still open at the end must not keep close() waiting
  server.on('connection', (s) => server.once('close', () => s.destroy()));
  return (server.address() as net.AddressInfo).port;
}

/** Echoes every byte, and ends its side after the client ended its own (half-close aware). */
async function echoServer(greeting?: string): Promise<number> {
  return listen(
    net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('error', () => undefined);
      if (greeting !== undefined) s.write(greeting);
      s.pipe(s);
    }),
  );
}

/** A port nothing listens on: connects to it are refused. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

interface Gateway {
  port: number;
  /** the gateway's side of each client connection */
  clients: net.Socket[];
  sessions: TcpSession[];
  ends: TcpSessionEnd[];
}

/** What the lead's stream listener does: every connection goes through proxyTcp. */
/**
 * `mapped`: each accepted client reports its IPv4 address as a dual-stack (`::`) listener does,
 * `::ffff:a.b.c.d` (for hosts without IPv6, where such a listener cannot be opened)
 */
async function gateway(upstream: StreamUpstream, idleTimeout = 10_000, host = '127.0.0.1', mapped = false): Promise<Gateway> {
  const g: Gateway = { port: 0, clients: [], sessions: [], ends: [] };
  g.port = await listen(
    net.createServer({ allowHalfOpen: true }, (client) => {
      if (mapped) Object.defineProperty(client, 'remoteAddress', { value: `::ffff:${client.remoteAddress}` });
      g.clients.push(client);
      const session = proxyTcp(client, upstream, { idleTimeout });
      g.sessions.push(session);
      void session.closed.then((end) => g.ends.push(end));
    }),
    host,
  );
  return g;
}

function target(u: UpstreamConfig, book?: HealthBook): StreamUpstream {
  return compileUpstream('stream_routes/t', u, undefined, book);
}

function connect(port: number, localAddress?: string, host = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, localAddress, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the socket sends until its end (or close), as one buffer. */
function readAll(s: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('close', () => resolve(Buffer.concat(chunks)));
    s.on('error', () => undefined);
  });
}

/** One round trip: write `text`, end, read the whole answer. */
async function exchange(port: number, text: string | Buffer, localAddress?: string, host?: string): Promise<string> {
  const s = await connect(port, localAddress, host);
  const answer = readAll(s);
  s.end(text);
  return (await answer).toString();
}

/** A node whose accept queue is full: a connect to it neither succeeds nor fails (SYNs are dropped). */
async function blackholePort(): Promise<number> {
  // a child process that listens with a backlog of 1 and then blocks its event loop, so the
  // kernel's accept queue fills up and further SYNs are dropped
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
         console.log(s.address().port);
         setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000), 50);
       });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(child);
  const port = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
  await sleep(200);
  // fill the accept queue: connects complete in the kernel until it is full
  for (let i = 0; i < 8; i++) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    const hung = await new Promise<boolean>((r) => {
      s.once('connect', () => r(false));
      setTimeout(() => r(true), 300);
    });
    if (hung) {
      s.destroy();
      return port;
    }
  }
  throw new Error('could not fill the accept queue of the blackhole node');
}

/** a hang fails its own test, not the whole file */
const T = { timeout: 20_000 };

// --- tests ------------------------------------------------------------------------------------------

describe('proxyTcp', { timeout: 120_000 }, () => {
  it('relays 50 MB both ways intact, and the answer after the client ended its side', T, async () => {
    const g = await gateway(target({ nodes: { [`127.0.0.1:${await echoServer()}`]: 1 } }));
    const s = await connect(g.port);
    const block = randomBytes(1024 * 1024);
    const sent = createHash('sha256');
    const received = createHash('sha256');
    let receivedBytes = 0;
    s.on('data', (c: Buffer) => {
      received.update(c);
      receivedBytes += c.length;
    });
    const ended = new Promise<void>((r) => s.once('end', r));
    for (let i = 0; i < 50; i++) {
      sent.update(block);
      if (!s.write(block)) await new Promise((r) => s.once('drain', r));
    }
    // the client's FIN reaches the echo node, which ends after echoing everything: the bytes still
    // in flight must arrive after the client stopped sending
    s.end();
    await ended;
    assert.equal(receivedBytes, 50 * 1024 * 1024);
    assert.equal(received.digest('hex'), sent.digest('hex'));
    await waitUntil(() => g.ends.length === 1, 5000, 'session end');
    const end = g.ends[0]!;
    assert.equal(end.reason, 'done');
    assert.equal(end.bytesFromClient, 50 * 1024 * 1024);
    assert.equal(end.bytesToClient, 50 * 1024 * 1024);
    assert.equal(end.tries, 1);
  });

  it('holds no more than a socket buffer for a client that does not read (backpressure)', T, async () => {
    // a node that sends 64 MB as fast as it may
    const node = await listen(
      net.createServer((s) => {
        s.on('error', () => undefined);
        const block = Buffer.alloc(1024 * 1024, 7);
        let sent = 0;
        const pump = () => {
          while (sent < 64) {
            sent++;
            if (!s.write(block)) return void s.once('drain', pump);
          }
          s.end();
        };
        pump();
      }),
    );
    const g = await gateway(target({ nodes: { [`127.0.0.1:${node}`]: 1 } }));
    const c = await connect(g.port);
    c.pause();
    await sleep(500);
    // without backpressure the gateway would have read (and queued for the client) everything the
    // kernel let it: tens of MB
    const queued = g.clients[0]!.writableLength;
    const read = g.sessions[0]!.stats.bytesToClient;
    assert.ok(queued <= 1024 * 1024, `queued for the client: ${queued} bytes`);
    assert.ok(read < 48 * 1024 * 1024, `read from the node while the client read nothing: ${read} bytes`);
    let got = 0;
    c.on('data', (chunk: Buffer) => (got += chunk.length));
    c.resume();
    await new Promise((r) => c.once('end', r));
    assert.equal(got, 64 * 1024 * 1024);
  });

  it('keeps the upstream→client direction open after the client FIN (node answers only then)', T, async () => {
    // a node that reads the whole request and answers with its digest only after the client's FIN
    const node = await listen(
      net.createServer({ allowHalfOpen: true }, (s) => {
        const h = createHash('sha256');
        s.on('data', (c) => h.update(c));
        s.on('end', () => setTimeout(() => s.end(`sha256:${h.digest('hex')}`), 100));
      }),
    );
    const g = await gateway(target({ nodes: { [`127.0.0.1:${node}`]: 1 } }));
    const body = randomBytes(256 * 1024);
    const answer = await exchange(g.port, body);
    assert.equal(answer, `sha256:${createHash('sha256').update(body).digest('hex')}`);
  });

  it('the node ending first: the client still sends, the node still reads', T, async () => {
    // the node says hello, ends its side at once, and then counts what the client sends
    let nodeGot = '';
    const nodeDone = new Promise<void>((resolve) => {
      void listen(
        net.createServer({ allowHalfOpen: true }, (s) => {
          s.end('bye-first');
          s.on('data', (c) => (nodeGot += c));
          s.on('end', () => resolve());
        }),
      ).then(async (node) => {
        const g = await gateway(target({ nodes: { [`127.0.0.1:${node}`]: 1 } }));
        const c = await connect(g.port);
        const got = readAll(c);
        await new Promise((r) => c.once('end', r));
        c.end('late words');
        assert.equal((await got).toString(), 'bye-first');
      });
    });
    await nodeDone;
    assert.equal(nodeGot, 'late words');
  });

  it('retries the next node when a connect is refused, and reports it to passive health', T, async () => {
    const verdicts: HealthVerdict[] = [];
    const book = new HealthBook((v) => verdicts.push(v));
    const dead = await closedPort();
    const live = await echoServer();
    const up = target({ nodes: { [`127.0.0.1:${dead}`]: 1, [`127.0.0.1:${live}`]: 1 }, checks: { passive: { unhealthy: { tcp_failures: 2 } } } }, book);
    const g = await gateway(up);
    for (let i = 0; i < 4; i++) assert.equal(await exchange(g.port, `hi ${i}`), `hi ${i}`);
    await waitUntil(() => g.ends.length === 4, 5000, 'session ends');
    // roundrobin sends every other connection to the dead node first: those took two tries,
    // until two refusals made the dead node unhealthy and it was skipped
    assert.ok(g.ends.some((e) => e.tries === 2), `some session retried: ${JSON.stringify(g.ends.map((e) => e.tries))}`);
    assert.ok(g.ends.every((e) => e.reason === 'done' && e.node === `127.0.0.1:${live}`));
    assert.deepEqual(
      verdicts.map((v) => [v.node, v.healthy, v.by]),
      [[`127.0.0.1:${dead}`, false, 'passive']],
    );
    assert.ok(up.health!.down.has(`127.0.0.1:${dead}`));
  });

  it('retries: 0 closes the client when the only try fails', T, async () => {
    const dead = await closedPort();
    const live = await echoServer();
    const nodes = { [`127.0.0.1:${dead}`]: 1, [`127.0.0.1:${live}`]: 1 };
    const g = await gateway(target({ nodes, retries: 0, type: 'roundrobin' }));
    const answers = [await exchange(g.port, 'a'), await exchange(g.port, 'b')];
    await waitUntil(() => g.ends.length === 2, 5000, 'session ends');
    // roundrobin: one of the two went to the dead node and was not retried: closed without an answer
    assert.equal(answers.filter((a) => a === '').length, 1);
    const failed = g.ends.find((e) => e.reason === 'connect_failed')!;
    assert.equal(failed.tries, 1);
    assert.match(failed.error ?? '', /ECONNREFUSED/);
  });

  it('gives up a node after timeout.connect and tries the next one', T, async () => {
    const hole = await blackholePort();
    const live = await echoServer();
    const verdicts: HealthVerdict[] = [];
    const book = new HealthBook((v) => verdicts.push(v));
    // the blackhole node has the higher priority: it is tried first
    const up = target(
      {
        nodes: [
          { host: '127.0.0.1', port: hole, weight: 1, priority: 1 },
          { host: '127.0.0.1', port: live, weight: 1 },
        ],
        timeout: { connect: 0.3 },
        checks: { passive: { unhealthy: { timeouts: 1 } } },
      },
      book,
    );
    const g = await gateway(up);
    const t0 = performance.now();
    assert.equal(await exchange(g.port, 'through'), 'through');
    const took = performance.now() - t0;
    await waitUntil(() => g.ends.length === 1, 5000, 'session end');
    assert.equal(g.ends[0]!.tries, 2);
    assert.ok(took >= 280 && took < 3000, `took ${took} ms`);
    assert.deepEqual(verdicts.map((v) => [v.node, v.healthy]), [[`127.0.0.1:${hole}`, false]]);
  });

  it('chash on remote_addr keeps each client address on one node', T, async () => {
    const nodes: Record<string, number> = {};
    for (const name of ['A', 'B', 'C']) nodes[`127.0.0.1:${await echoServer(name)}`] = 1;
    const g = await gateway(target({ type: 'chash', hash_on: 'vars', key: 'remote_addr', nodes }));
    const seen = new Map<string, Set<string>>();
    for (let round = 0; round < 3; round++) {
      for (let i = 2; i <= 13; i++) {
        const address = `127.0.0.${i}`;
        const answer = await exchange(g.port, '', address);
        if (!seen.has(address)) seen.set(address, new Set());
        seen.get(address)!.add(answer);
      }
    }
    for (const [address, names] of seen) assert.equal(names.size, 1, `${address} went to ${[...names].join(', ')}`);
    const used = new Set([...seen.values()].map((s) => [...s][0]));
    assert.ok(used.size >= 2, `12 client addresses spread over ${used.size} node(s)`);
  });

  it('chash hashes an IPv4 client the same on a dual-stack listener (::ffff: unmapped)', T, async () => {
    const nodes: Record<string, number> = {};
    for (const name of ['A', 'B', 'C', 'D']) nodes[`127.0.0.1:${await echoServer(name)}`] = 1;
    const config: UpstreamConfig = { type: 'chash', key: 'remote_addr', nodes };
    const v4 = await gateway(target(config));
    let dual: Gateway;
    try {
      dual = await gateway(target(config), 10_000, '::');
    } catch {
      // no IPv6 on this host: an IPv4 listener whose clients report the addresses a dual-stack one would
      dual = await gateway(target(config), 10_000, '127.0.0.1', true);
    }
    for (let i = 2; i <= 9; i++) {
      const address = `127.0.0.${i}`;
      const viaV4 = await exchange(v4.port, '', address);
      // Node reports this client as ::ffff:127.0.0.x on the dual-stack socket
      const viaDual = await exchange(dual.port, '', address, '127.0.0.1');
      assert.equal(viaDual, viaV4, `${address}: ${viaV4} via the IPv4 listener, ${viaDual} via the dual-stack one`);
    }
    await waitUntil(() => dual.ends.length === 8, 5000, 'session ends');
    assert.ok(dual.clients.every((c) => c.remoteAddress?.startsWith('::ffff:')), 'the dual-stack listener saw mapped addresses');
  });

  it('closes a session after idleTimeout without a byte either way, not before', T, async () => {
    const g = await gateway(target({ nodes: { [`127.0.0.1:${await echoServer()}`]: 1 } }), 300);
    const s = await connect(g.port);
    // the gateway's FIN (the client is half-open capable: 'end', not 'close')
    const closed = new Promise<number>((r) => {
      s.once('end', () => r(performance.now()));
      s.once('close', () => r(performance.now()));
    });
    s.on('error', () => undefined);
    s.resume();
    // traffic every 100 ms for 700 ms keeps it open past the idle time
    const t0 = performance.now();
    for (let i = 0; i < 7; i++) {
      s.write('x');
      await sleep(100);
    }
    assert.equal(s.readableEnded, false);
    const quietFrom = performance.now();
    const at = await closed;
    assert.ok(quietFrom - t0 >= 690);
    assert.ok(at - quietFrom >= 150 && at - quietFrom < 1500, `closed ${at - quietFrom} ms after the last byte`);
    await waitUntil(() => g.ends.length === 1, 5000, 'session end');
    assert.equal(g.ends[0]!.reason, 'idle_timeout');
    assert.equal(g.ends[0]!.bytesFromClient, 7);
    assert.equal(g.ends[0]!.bytesToClient, 7);
  });

  it('close() cuts a live session (a deleted route)', T, async () => {
    const g = await gateway(target({ nodes: { [`127.0.0.1:${await echoServer()}`]: 1 } }));
    const s = await connect(g.port);
    const got = readAll(s);
    s.write('before');
    await waitUntil(() => g.sessions[0]?.stats.bytesToClient === 6, 5000, 'echo');
    g.sessions[0]!.close();
    assert.equal((await got).toString(), 'before');
    const end = await g.sessions[0]!.closed;
    assert.equal(end.reason, 'closed');
  });

  it('passes a reset by the node on to the client as a reset', T, async () => {
    const node = await listen(net.createServer((s) => s.once('data', () => s.resetAndDestroy())));
    const g = await gateway(target({ nodes: { [`127.0.0.1:${node}`]: 1 } }));
    const s = await connect(g.port);
    const error = new Promise<NodeJS.ErrnoException>((r) => s.once('error', r));
    s.write('boom');
    assert.equal((await error).code, 'ECONNRESET');
    await waitUntil(() => g.ends.length === 1, 5000, 'session end');
    assert.equal(g.ends[0]!.reason, 'upstream_error');
  });

  it('proxies a TLS-terminated client (a TLSSocket): echo, half-close, and a node reset', T, async () => {
    const pki = makeTestPki();
    const pem = pki.server('stream.test', ['stream.test']);
    const echo = await echoServer();
    const resetting = await listen(net.createServer((s) => s.once('data', () => s.resetAndDestroy())));
    const ends: TcpSessionEnd[] = [];
    const port = await listen(
      tls.createServer({ ...pem, allowHalfOpen: true }, (client) => {
        const node = client.servername === 'reset.test' ? resetting : echo;
        void proxyTcp(client, target({ nodes: { [`127.0.0.1:${node}`]: 1 } }), { idleTimeout: 10_000, sni: client.servername || undefined }).closed.then((e) => ends.push(e));
      }),
    );
    const open = (servername: string) =>
      new Promise<tls.TLSSocket>((resolve, reject) => {
        // allowHalfOpen: honoured by tls.connect (passed to its TLSSocket) though not in its typings
        const options = { port, host: '127.0.0.1', servername, ca: pki.ca.cert, allowHalfOpen: true, checkServerIdentity: () => undefined };
        const s = tls.connect(options as tls.ConnectionOptions);
        s.once('secureConnect', () => resolve(s));
        s.once('error', reject);
      });
    const a = await open('stream.test');
    const answer = readAll(a);
    a.end('over tls');
    assert.equal((await answer).toString(), 'over tls');
    const b = await open('reset.test');
    // a TLSSocket has no TCP handle of its own to reset: the client sees the connection end
    const closed = new Promise<void>((r) => {
      b.once('end', () => r());
      b.once('close', () => r());
    });
    b.on('error', () => undefined);
    b.resume();
    b.write('boom');
    await closed;
    await waitUntil(() => ends.length === 2, 5000, 'session ends');
    assert.deepEqual(ends.map((e) => e.reason).sort(), ['done', 'upstream_error']);
  });

  it('tells the balancer of every session it started (least_conn counts open sessions)', T, async () => {
    const up = target({ type: 'least_conn', nodes: { [`127.0.0.1:${await echoServer()}`]: 1, [`127.0.0.1:${await closedPort()}`]: 1 } });
    const open = new Map<UpstreamNode, number>();
    const counting: StreamUpstream = {
      ...up,
      balancer: {
        pick: (tried, req) => up.balancer.pick(tried, req),
        started: (n) => open.set(n, (open.get(n) ?? 0) + 1),
        done: (n) => open.set(n, open.get(n)! - 1),
      },
    };
    const g = await gateway(counting);
    const clients = await Promise.all([0, 1, 2, 3].map(() => connect(g.port)));
    await waitUntil(() => g.sessions.length === 4 && g.sessions.every((s) => s.stats.connectMs >= 0), 5000, 'all connected');
    assert.equal([...open.values()].reduce((a, b) => a + b, 0), 4, 'one open count per live session');
    for (const c of clients) c.end();
    await waitUntil(() => g.ends.length === 4, 5000, 'session ends');
    assert.deepEqual([...open.values()].filter((n) => n !== 0), []);
  });

  it('ends at once with no_node for an upstream without nodes', T, async () => {
    const g = await gateway(target({ nodes: {} }));
    assert.equal(await exchange(g.port, 'x'), '');
    await waitUntil(() => g.ends.length === 1, 5000, 'session end');
    assert.equal(g.ends[0]!.reason, 'no_node');
  });

  it('keeps what the client sent (and its FIN) while the first node times out, for the next node', T, async () => {
    const hole = await blackholePort();
    const live = await echoServer();
    const up = target({
      nodes: [
        { host: '127.0.0.1', port: hole, weight: 1, priority: 1 },
        { host: '127.0.0.1', port: live, weight: 1 },
      ],
      timeout: { connect: 0.3 },
    });
    const g = await gateway(up);
    // the whole request and the FIN arrive before any node accepted (`printf req | nc -N`)
    assert.equal(await exchange(g.port, 'early request'), 'early request');
    await waitUntil(() => g.ends.length === 1, 5000, 'session end');
    assert.equal(g.ends[0]!.tries, 2);
    assert.equal(g.ends[0]!.reason, 'done');
  });

  it('close() while connecting does not count against the node', T, async () => {
    const hole = await blackholePort();
    const verdicts: HealthVerdict[] = [];
    const opened = new Map<string, number>();
    const up = target(
      { nodes: { [`127.0.0.1:${hole}`]: 1 }, timeout: { connect: 5 }, checks: { passive: { unhealthy: { timeouts: 1, tcp_failures: 1 } } } },
      new HealthBook((v) => verdicts.push(v)),
    );
    const g = await gateway({
      ...up,
      balancer: {
        pick: (tried, req) => up.balancer.pick(tried, req),
        started: (n) => opened.set(n.key, (opened.get(n.key) ?? 0) + 1),
        done: (n, _ms, failed) => opened.set(n.key, opened.get(n.key)! - (failed ? 100 : 1)),
      },
    });
    const s = await connect(g.port);
    const got = readAll(s);
    await waitUntil(() => g.sessions.length === 1, 5000, 'session');
    await sleep(100);
    g.sessions[0]!.close();
    assert.equal((await got).toString(), '');
    const end = await g.sessions[0]!.closed;
    assert.equal(end.reason, 'closed');
    assert.deepEqual(verdicts, []);
    assert.deepEqual([...opened.values()], [0], 'started once, done once, not failed');
  });

  it('idle timeout: the upstream timeout.send/read (max), else nginx proxy_timeout 10 min', T, () => {
    assert.equal(streamIdleTimeout(undefined), DEFAULT_PROXY_TIMEOUT_MS);
    assert.equal(streamIdleTimeout({}), 600_000);
    assert.equal(streamIdleTimeout({ read: 30 }), 30_000);
    assert.equal(streamIdleTimeout({ send: 5, read: 3 }), 5000);
  });
});
