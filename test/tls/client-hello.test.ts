import assert from 'node:assert/strict';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import tls from 'node:tls';
import { acceptedKeyTypes, parseClientHello, readClientHello, type ClientHello } from '../../src/server/tls/client-hello.ts';

const closers: (() => void)[] = [];
after(() => {
  for (const close of closers) close();
});

/** The raw ClientHello bytes a real Node client sends with these options (captured on loopback). */
async function captureHello(options: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => server.close());
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        const all = Buffer.concat(chunks);
        if (parseClientHello(all) !== 'incomplete') {
          socket.destroy();
          resolve(all);
        }
      });
    });
  });
  const client = tls.connect({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', ...options });
  client.on('error', () => {});
  const hello = await got;
  client.destroy();
  return hello;
}

describe('parseClientHello', () => {
  it('reads servername, versions, signature algorithms and suites of a real client', async () => {
    const hello = parseClientHello(await captureHello({ servername: 'Host.Example', sigalgs: 'ECDSA+SHA256:RSA-PSS+SHA256' })) as ClientHello;
    assert.equal(hello.servername, 'Host.Example');
    assert.deepEqual(hello.versions, ['TLSv1.3', 'TLSv1.2']);
    assert.deepEqual(hello.sigalgs, [0x0403, 0x0804]);
    assert.ok(hello.cipherSuites.includes(0x1301), 'TLS_AES_128_GCM_SHA256');
    assert.deepEqual(acceptedKeyTypes(hello), ['ec', 'rsa']);
  });

  it('no SNI from a client connecting by IP; TLS 1.2-only clients; RSA-only clients', async () => {
    const byIp = parseClientHello(await captureHello({ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' })) as ClientHello;
    assert.equal(byIp.servername, undefined);
    assert.ok(!byIp.versions.includes('TLSv1.3'));
    assert.deepEqual(acceptedKeyTypes(byIp), ['rsa'], 'a TLS 1.2 client without ECDSA suites cannot use an EC certificate');
    const rsaOnly = parseClientHello(await captureHello({ servername: 'a.test', sigalgs: 'RSA-PSS+SHA256:RSA+SHA256' })) as ClientHello;
    assert.deepEqual(acceptedKeyTypes(rsaOnly), ['rsa']);
  });

  it('waits for more bytes, refuses what is not a ClientHello', async () => {
    const full = await captureHello({ servername: 'a.test' });
    for (const n of [0, 1, 5, 9, full.length - 1]) assert.equal(parseClientHello(full.subarray(0, n)), 'incomplete', `${n} bytes`);
    assert.equal(parseClientHello(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n')), undefined);
    assert.equal(parseClientHello(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])), undefined, 'empty record');
    // a handshake record that is not a ClientHello (ServerHello type 2)
    const serverHello = Buffer.from(full);
    serverHello[5] = 0x02;
    assert.equal(parseClientHello(serverHello), undefined);
    // lengths that run past the message: malformed, not a crash
    const broken = Buffer.from(full);
    broken.writeUInt16BE(0xffff, 5 + 4 + 2 + 32 + 1 + broken[5 + 4 + 2 + 32]!); // cipher suites length
    assert.equal(parseClientHello(broken), undefined);
  });

  it('reassembles a ClientHello split over several records', async () => {
    const full = await captureHello({ servername: 'split.test' });
    const body = full.subarray(5);
    const cut = 40;
    const record = (part: Buffer) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, part.length >> 8, part.length & 0xff]), part]);
    const split = Buffer.concat([record(body.subarray(0, cut)), record(body.subarray(cut))]);
    assert.equal((parseClientHello(split) as ClientHello).servername, 'split.test');
    assert.equal(parseClientHello(split.subarray(0, split.length - 3)), 'incomplete');
  });
});

describe('readClientHello', () => {
  it('reads a hello sent in pieces and puts every byte back', async () => {
    const full = await captureHello({ servername: 'pieces.test' });
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => server.close());
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [socket] = await accepted;
    const reading = readClientHello(socket, 2000);
    for (let i = 0; i < full.length; i += 50) {
      client.write(full.subarray(i, i + 50));
      await new Promise((r) => setTimeout(r, 5));
    }
    const hello = await reading;
    assert.equal(hello?.servername, 'pieces.test');
    // the bytes are still there for the TLS server
    const again: Buffer[] = [];
    socket.on('data', (c: Buffer) => again.push(c));
    socket.resume();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(Buffer.concat(again), full);
    client.destroy();
    socket.destroy();
  });

  it('gives up after the timeout on a silent client, and on a client that closes', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => server.close());
    const accepted = once(server, 'connection') as Promise<[net.Socket]>;
    const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [socket] = await accepted;
    const start = Date.now();
    assert.equal(await readClientHello(socket, 200), undefined);
    assert.ok(Date.now() - start >= 190);
    const closing = readClientHello(socket, 5000);
    client.end();
    assert.equal(await closing, undefined);
    socket.destroy();
  });
});
