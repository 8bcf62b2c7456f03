import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, it } from 'node:test';

import type { UpstreamConfig } from '../../src/config/schema/upstream.ts';
import { UdpRelay, udpIdleTimeout, DEFAULT_UDP_IDLE_MS, type UdpRelayOptions, type UdpSessionEnd } from '../../src/proxy/stream/udp.ts';
import type { StreamUpstream } from '../../src/proxy/stream/tcp.ts';
import { StreamRouter } from '../../src/router/stream.ts';
import { compileUpstream } from '../../src/runtime/upstream.ts';
import { HealthBook, type HealthVerdict } from '../../src/upstream/health/book.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

// --- harness: every socket made here is closed at the end ----------------------------------------

const sockets: dgram.Socket[] = [];
const relays: UdpRelay[] = [];
after(() => {
  for (const r of relays) r.close();
  for (const s of sockets) {
    try {
      s.close();
    } catch {
      /* already closed */
    }
  }
});

async function bind(address = '127.0.0.1'): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, address, r));
  return s;
}

const portOf = (s: dgram.Socket) => s.address().port;

/** Answers every datagram with `<name>:<datagram>`. */
async function echoNode(name: string): Promise<dgram.Socket> {
  const s = await bind();
  s.on('message', (msg, rinfo) => s.send(`${name}:${msg}`, rinfo.port, rinfo.address));
  return s;
}

/** A UDP port nothing is bound to: datagrams to it get ICMP port unreachable. */
async function closedPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = portOf(s);
  await new Promise<void>((r) => s.close(r));
  return port;
}

function target(u: UpstreamConfig, book?: HealthBook): StreamUpstream {
  return compileUpstream('stream_routes/u', u, undefined, book);
}

interface Harness {
  relay: UdpRelay<string>;
  listener: dgram.Socket;
  ends: UdpSessionEnd<string>[];
}

async function relayTo(upstream: StreamUpstream, options: Partial<UdpRelayOptions<string>> & { idleTimeout?: number } = {}): Promise<Harness> {
  const listener = await bind();
  const ends: UdpSessionEnd<string>[] = [];
  const relay = new UdpRelay<string>(listener, {
    match: () => ({ upstream, idleTimeout: options.idleTimeout, route: 'r1' }),
    onSessionEnd: (e) => ends.push(e),
    ...options,
  });
  relays.push(relay as UdpRelay);
  return { relay, listener, ends };
}

/** A client socket that collects what it receives. */
async function client(address = '127.0.0.1'): Promise<{ socket: dgram.Socket; got: string[]; send(text: string, port: number): void }> {
  const socket = await bind(address);
  const got: string[] = [];
  socket.on('message', (m) => got.push(String(m)));
  return { socket, got, send: (text, port) => socket.send(text, port, '127.0.0.1') };
}

/** a hang fails its own test, not the whole file */
const T = { timeout: 20_000 };

// --- tests ------------------------------------------------------------------------------------------

describe('UdpRelay', { timeout: 60_000 }, () => {
  it('relays datagrams both ways, each client getting only its own replies', T, async () => {
    const node = await echoNode('n');
    const h = await relayTo(target({ nodes: { [`127.0.0.1:${portOf(node)}`]: 1 } }));
    const port = portOf(h.listener);
    const a = await client();
    const b = await client();
    for (let i = 0; i < 20; i++) {
      a.send(`a${i}`, port);
      b.send(`b${i}`, port);
    }
    await waitUntil(() => a.got.length === 20 && b.got.length === 20, 5000, 'replies');
    assert.deepEqual([...a.got].sort(), Array.from({ length: 20 }, (_, i) => `n:a${i}`).sort());
    assert.deepEqual([...b.got].sort(), Array.from({ length: 20 }, (_, i) => `n:b${i}`).sort());
    assert.equal(h.relay.size, 2);
    assert.equal(h.relay.stats.created, 2);
  });

  it('ends a session after idleTimeout without a datagram; the next datagram opens a new one', T, async () => {
    const node = await echoNode('n');
    const h = await relayTo(target({ nodes: { [`127.0.0.1:${portOf(node)}`]: 1 } }), { idleTimeout: 200 });
    const port = portOf(h.listener);
    const a = await client();
    // a datagram every 80 ms keeps the session for longer than its idle time
    for (let i = 0; i < 5; i++) {
      a.send(`k${i}`, port);
      await sleep(80);
    }
    assert.equal(h.relay.size, 1);
    assert.equal(h.ends.length, 0);
    await waitUntil(() => h.ends.length === 1, 2000, 'idle end');
    assert.equal(h.relay.size, 0);
    const end = h.ends[0]!;
    assert.equal(end.reason, 'idle_timeout');
    assert.equal(end.datagramsFromClient, 5);
    assert.equal(end.datagramsToClient, 5);
    assert.equal(end.route, 'r1');
    assert.equal(end.client, `127.0.0.1:${portOf(a.socket)}`);
    a.send('again', port);
    await waitUntil(() => a.got.includes('n:again'), 2000, 'reply in a new session');
    assert.equal(h.relay.stats.created, 2);
  });

  it('keeps a client on one node and spreads clients (chash on remote_addr)', T, async () => {
    const nodes: Record<string, number> = {};
    for (const name of ['A', 'B', 'C']) nodes[`127.0.0.1:${portOf(await echoNode(name))}`] = 1;
    const h = await relayTo(target({ type: 'chash', key: 'remote_addr', nodes }), { idleTimeout: 50 });
    const port = portOf(h.listener);
    const byAddress = new Map<string, Set<string>>();
    for (let round = 0; round < 2; round++) {
      for (let i = 2; i <= 10; i++) {
        const c = await client(`127.0.0.${i}`);
        c.send('x', port);
        await waitUntil(() => c.got.length === 1, 2000, 'reply');
        const seen = byAddress.get(`127.0.0.${i}`) ?? new Set();
        seen.add(c.got[0]!.split(':')[0]!);
        byAddress.set(`127.0.0.${i}`, seen);
      }
      // every session expired: the second round picks again
      await waitUntil(() => h.relay.size === 0, 2000, 'sessions expired');
    }
    for (const [address, names] of byAddress) assert.equal(names.size, 1, `${address} went to ${[...names].join(', ')}`);
    assert.ok(new Set([...byAddress.values()].map((s) => [...s][0])).size >= 2, 'clients spread over nodes');
  });

  it('drops datagrams of new clients past maxSessions, and counts them', T, async () => {
    const node = await echoNode('n');
    const warnings: string[] = [];
    const h = await relayTo(target({ nodes: { [`127.0.0.1:${portOf(node)}`]: 1 } }), {
      maxSessions: 1,
      log: { warn: (_o: unknown, msg?: string) => void warnings.push(String(msg)), debug: () => undefined } as never,
    });
    const port = portOf(h.listener);
    const a = await client();
    const b = await client();
    a.send('first', port);
    await waitUntil(() => a.got.length === 1, 2000, 'first reply');
    b.send('second', port);
    b.send('third', port);
    a.send('fourth', port);
    await waitUntil(() => a.got.length === 2, 2000, 'existing session still served');
    await sleep(100);
    assert.deepEqual(b.got, []);
    assert.equal(h.relay.stats.droppedOverCap, 2);
    assert.equal(warnings.length, 1, 'one warning, not one per datagram');
    assert.match(warnings[0]!, /session cap/);
  });

  it('routes a first datagram through match(): unrouted clients get nothing', T, async () => {
    const node = await echoNode('n');
    const upstream = target({ nodes: { [`127.0.0.1:${portOf(node)}`]: 1 } });
    const router = new StreamRouter([{ id: 'only-127.0.0.3', remote_addr: '127.0.0.3' }]);
    const listener = await bind();
    const relay = new UdpRelay(listener, {
      match: (first) => {
        const route = router.match(first);
        return route && { upstream, route: route.id };
      },
    });
    relays.push(relay as UdpRelay);
    const port = portOf(listener);
    const allowed = await client('127.0.0.3');
    const other = await client('127.0.0.4');
    allowed.send('yes', port);
    other.send('no', port);
    await waitUntil(() => allowed.got.length === 1, 2000, 'routed reply');
    await sleep(100);
    assert.deepEqual(other.got, []);
    assert.equal(relay.stats.unrouted, 1);
  });

  it('ends the session when the node is unreachable, reporting it to passive health', T, async () => {
    const dead = await closedPort();
    const verdicts: HealthVerdict[] = [];
    const book = new HealthBook((v) => verdicts.push(v));
    const h = await relayTo(target({ nodes: { [`127.0.0.1:${dead}`]: 1 }, checks: { passive: { unhealthy: { tcp_failures: 1 } } } }, book));
    const a = await client();
    a.send('anyone?', portOf(h.listener));
    await waitUntil(() => h.ends.length === 1, 2000, 'session end');
    assert.equal(h.ends[0]!.reason, 'upstream_error');
    assert.match(h.ends[0]!.error ?? '', /ECONNREFUSED/);
    assert.deepEqual(verdicts.map((v) => [v.node, v.healthy]), [[`127.0.0.1:${dead}`, false]]);
  });

  it('closeSessions() ends the sessions of one route; close() all', T, async () => {
    const node = await echoNode('n');
    const upstream = target({ nodes: { [`127.0.0.1:${portOf(node)}`]: 1 } });
    const listener = await bind();
    const ends: UdpSessionEnd<string>[] = [];
    // clients on 127.0.0.5 belong to route "five", the others to "rest"
    const relay = new UdpRelay<string>(listener, {
      match: (first) => ({ upstream, route: first.remoteAddr === '127.0.0.5' ? 'five' : 'rest' }),
      onSessionEnd: (e) => ends.push(e),
    });
    relays.push(relay as UdpRelay);
    const five = await client('127.0.0.5');
    const six = await client('127.0.0.6');
    five.send('x', portOf(listener));
    six.send('x', portOf(listener));
    await waitUntil(() => five.got.length === 1 && six.got.length === 1, 2000, 'replies');
    assert.equal(relay.closeSessions((route) => route === 'five'), 1);
    assert.deepEqual(ends.map((e) => [e.route, e.reason]), [['five', 'closed']]);
    assert.equal(relay.size, 1);
    relay.close();
    assert.equal(relay.size, 0);
    six.send('after close', portOf(listener));
    await sleep(100);
    assert.equal(six.got.length, 1, 'a closed relay relays nothing');
  });

  it('idle time: the upstream timeout.send/read (max), else 60 s', T, () => {
    assert.equal(udpIdleTimeout(undefined), DEFAULT_UDP_IDLE_MS);
    assert.equal(DEFAULT_UDP_IDLE_MS, 60_000);
    assert.equal(udpIdleTimeout({ read: 2, send: 7 }), 7000);
  });
});
