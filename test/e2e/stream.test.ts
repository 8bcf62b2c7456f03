/**
 * Stream routes (TCP, TLS-terminated TCP, UDP) through a real gateway process to real echo
 * servers on loopback: 50 MB both ways with half-close, routing by server port and SNI, a route's
 * upstream changed live, a deleted route's sessions cut after drain_timeout, UDP with two clients.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { makeTestPki } from '../helpers/certs.ts';
import { freePort } from '../helpers/etcd.ts';
import { startGateway, writeRoutes, type GatewayProcess } from '../helpers/gateway.ts';
import { sleep, waitUntil } from '../helpers/wait.ts';

interface Echo {
  port: number;
  address: string;
  connections: number;
  close(): Promise<void>;
}

/** A TCP server that answers `tag` first, then echoes every byte; ends its side after the client's FIN. */
async function tcpEcho(tag: string): Promise<Echo> {
  const sockets = new Set<net.Socket>();
  const echo: Echo = { port: 0, address: '', connections: 0, close: async () => {} };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    echo.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(tag);
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  echo.port = (server.address() as net.AddressInfo).port;
  echo.address = `127.0.0.1:${echo.port}`;
  echo.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return echo;
}

/** Connects, collects what arrives, resolves when the gateway side ends. */
function client(port: number, opts: { tls?: { servername: string } } = {}): { socket: net.Socket; received: () => Buffer; ended: Promise<void>; ready: Promise<void> } {
  const socket = opts.tls
    ? tlsConnect({ port, host: '127.0.0.1', servername: opts.tls.servername, rejectUnauthorized: false, allowHalfOpen: true } as never)
    : net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  // the gateway's end: its FIN ('end', the socket is half-open here) or a close
  const ended = new Promise<void>((r) => {
    socket.once('end', () => r());
    socket.once('close', () => r());
  });
  const ready = once(socket, opts.tls ? 'secureConnect' : 'connect').then(() => undefined);
  return { socket, received: () => Buffer.concat(chunks), ended, ready };
}

describe('stream routes (TCP, TLS, UDP)', () => {
  let a: Echo;
  let b: Echo;
  let gw: GatewayProcess;
  let tcpPort: number;
  let tcpPort2: number;
  let tlsPort: number;
  let udpPort: number;
  let udpEcho: dgram.Socket;
  let udpEchoPort: number;
  let routes: Record<string, unknown>;

  before(async () => {
    a = await tcpEcho('A:');
    b = await tcpEcho('B:');
    udpEcho = dgram.createSocket('udp4');
    // echoes each datagram prefixed with the sender's port, so each client sees only its own
    udpEcho.on('message', (msg, rinfo) => udpEcho.send(Buffer.concat([Buffer.from(`${msg.toString()}@echo`)]), rinfo.port, rinfo.address));
    udpEcho.bind(0, '127.0.0.1');
    await once(udpEcho, 'listening');
    udpEchoPort = udpEcho.address().port;
    [tcpPort, tcpPort2, tlsPort, udpPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    const pki = makeTestPki();
    const cert = pki.server('stream', ['*.stream.test']);
    routes = {
      upstreams: [{ id: 'ua', scheme: 'tcp', nodes: { [a.address]: 1 } }, { id: 'ub', nodes: { [b.address]: 1 } }],
      ssls: [{ id: 's', cert: cert.cert, key: cert.key, snis: ['*.stream.test'] }],
      stream_routes: [
        { id: '1', server_port: tcpPort, upstream_id: 'ua' },
        { id: '2', server_port: tcpPort2, upstream_id: 'ub' },
        { id: '3', server_port: tlsPort, sni: 'b.stream.test', upstream_id: 'ub' },
        { id: '4', server_port: tlsPort, upstream_id: 'ua' },
        { id: '5', server_port: udpPort, upstream: { nodes: { [`127.0.0.1:${udpEchoPort}`]: 1 }, timeout: { read: 2 } } },
      ],
    };
    gw = await startGateway({
      drainTimeout: 1,
      proxy: {
        stream_listen: [
          { addr: `127.0.0.1:${tcpPort}` },
          { addr: `127.0.0.1:${tcpPort2}` },
          { addr: `127.0.0.1:${tlsPort}`, tls: true },
          { addr: `127.0.0.1:${udpPort}`, udp: true },
        ],
      },
      routes,
    });
  });
  after(async () => {
    await gw?.stop();
    await gw?.cleanup();
    await a?.close();
    await b?.close();
    udpEcho?.close();
  });

  test('TCP: 50 MB through and back, with half-close: the client ends its side and still gets every byte', async () => {
    const c = client(tcpPort);
    await c.ready;
    const body = randomBytes(50 * 1024 * 1024);
    c.socket.end(body);
    await c.ended;
    const got = c.received();
    assert.equal(got.subarray(0, 2).toString(), 'A:');
    assert.equal(got.length, body.length + 2);
    assert.equal(createHash('sha256').update(got.subarray(2)).digest('hex'), createHash('sha256').update(body).digest('hex'));
  });

  test('routes by server port, and by SNI on a TLS listener (an SNI route first, then the plain one)', async () => {
    const second = client(tcpPort2);
    await waitUntil(() => second.received().length >= 2, 2000, 'the greeting');
    assert.equal(second.received().toString(), 'B:');
    second.socket.destroy();
    const bySni = client(tlsPort, { tls: { servername: 'b.stream.test' } });
    await waitUntil(() => bySni.received().length >= 2, 2000, 'the greeting over TLS');
    assert.equal(bySni.received().toString(), 'B:');
    bySni.socket.write('hello');
    await waitUntil(() => bySni.received().length >= 7, 2000, 'the echo over TLS');
    assert.equal(bySni.received().toString(), 'B:hello');
    bySni.socket.destroy();
    const other = client(tlsPort, { tls: { servername: 'c.stream.test' } });
    await waitUntil(() => other.received().length >= 2, 2000, 'the greeting of the plain route');
    assert.equal(other.received().toString(), 'A:');
    other.socket.destroy();
  });

  test("a route's upstream changed live: new connections go to the new node, an open one keeps its node", async () => {
    const before = client(tcpPort);
    await waitUntil(() => before.received().length >= 2, 2000, 'the greeting');
    const next = structuredClone(routes) as { stream_routes: Array<Record<string, unknown>> };
    next.stream_routes[0]!.upstream_id = 'ub';
    writeRoutes(gw.routesPath, next);
    await waitUntil(async () => {
      const c = client(tcpPort);
      await waitUntil(() => c.received().length >= 2, 2000, 'a greeting');
      c.socket.destroy();
      return c.received().toString() === 'B:';
    }, 5000, 'new connections on the new upstream');
    before.socket.write('still');
    await waitUntil(() => before.received().length >= 7, 2000, 'the echo on the old connection');
    assert.equal(before.received().toString(), 'A:still');
    before.socket.destroy();
    writeRoutes(gw.routesPath, routes);
    await sleep(300);
  });

  test('a deleted route: new connections are closed at once, open ones after drain_timeout (1 s)', async () => {
    const open = client(tcpPort2);
    await waitUntil(() => open.received().length >= 2, 2000, 'the greeting');
    const t0 = Date.now();
    const next = structuredClone(routes) as { stream_routes: Array<{ id: string }> };
    next.stream_routes = next.stream_routes.filter((r) => r.id !== '2');
    writeRoutes(gw.routesPath, next);
    await waitUntil(async () => {
      const c = client(tcpPort2);
      await Promise.race([c.ended, sleep(500)]);
      c.socket.destroy();
      return c.received().length === 0;
    }, 5000, 'new connections refused');
    await open.ended;
    const after = Date.now() - t0;
    assert.ok(after >= 900 && after < 4000, `cut after ${after} ms`);
    writeRoutes(gw.routesPath, routes);
  });

  test('UDP: two clients each get their own replies', async () => {
    const clients = [dgram.createSocket('udp4'), dgram.createSocket('udp4')];
    try {
      const replies: string[][] = [[], []];
      clients.forEach((c, i) => c.on('message', (m) => replies[i]!.push(m.toString())));
      for (let round = 0; round < 3; round++) {
        clients.forEach((c, i) => c.send(`c${i}-${round}`, udpPort, '127.0.0.1'));
        await sleep(50);
      }
      await waitUntil(() => replies[0]!.length === 3 && replies[1]!.length === 3, 3000, 'three replies each');
      assert.deepEqual(replies[0], ['c0-0@echo', 'c0-1@echo', 'c0-2@echo']);
      assert.deepEqual(replies[1], ['c1-0@echo', 'c1-1@echo', 'c1-2@echo']);
    } finally {
      for (const c of clients) c.close();
    }
  });
});

describe('stream routes with proxy.workers: 2', () => {
  test('TCP connections are served by both workers; UDP by one, each client in one session', async () => {
    const echo = await tcpEcho('E:');
    const udpEcho = dgram.createSocket('udp4');
    const sources = new Set<number>();
    udpEcho.on('message', (msg, rinfo) => {
      sources.add(rinfo.port);
      udpEcho.send(msg, rinfo.port, rinfo.address);
    });
    udpEcho.bind(0, '127.0.0.1');
    await once(udpEcho, 'listening');
    const [tcpPort, udpPort] = [await freePort(), await freePort()];
    const gw = await startGateway({
      workers: 2,
      proxy: { stream_listen: [{ addr: `127.0.0.1:${tcpPort}` }, { addr: `127.0.0.1:${udpPort}`, udp: true }] },
      routes: {
        stream_routes: [
          { id: 't', server_port: tcpPort, upstream: { nodes: { [echo.address]: 1 } } },
          { id: 'u', server_port: udpPort, upstream: { scheme: 'udp', nodes: { [`127.0.0.1:${udpEcho.address().port}`]: 1 } } },
        ],
      },
    });
    const c = dgram.createSocket('udp4');
    try {
      for (let i = 0; i < 10; i++) {
        const t = client(tcpPort);
        await waitUntil(() => t.received().length >= 2, 2000, 'a greeting');
        t.socket.destroy();
      }
      assert.equal(echo.connections, 10);
      const replies: string[] = [];
      c.on('message', (m) => replies.push(m.toString()));
      for (let i = 0; i < 20; i++) c.send(`d${i}`, udpPort, '127.0.0.1');
      await waitUntil(() => replies.length === 20, 3000, 'twenty replies');
      // one session: the echo server saw one source port for this client
      assert.equal(sources.size, 1);
    } finally {
      c.close();
      await gw.stop();
      await gw.cleanup();
      await echo.close();
      udpEcho.close();
    }
  });
});
