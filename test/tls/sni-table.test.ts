import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import tls, { type TLSSocket } from 'node:tls';
import type { SslConfig } from '../../src/config/schema/ssl.ts';
import { decryptKey, encryptKey } from '../../src/server/tls/encryption.ts';
import { clientCertProblem, requestClientCertProblem, SniTable, sniCallback, SslEntry } from '../../src/server/tls/sni-table.ts';
import { TlsTerminator } from '../../src/server/tls/terminator.ts';
import { makeTestPki, type Pem } from '../helpers/certs.ts';

const pki = makeTestPki();
const exactA = pki.server('a.test', ['a.test']);
const wildW = pki.server('*.w.test', ['*.w.test']);
const wildXW = pki.server('*.x.w.test', ['*.x.w.test']);
const catchAll = pki.server('catch-all', ['catch.all']);
const fallback = pki.server('fallback.test', ['fallback.test']);
const pairRsa = pki.server('pair.test', ['pair.test'], 'rsa');
const pairEc = pki.server('pair.test', ['pair.test'], 'ec');
const mtls = pki.server('mtls.test', ['mtls.test']);
const alice = pki.client('alice');
const stranger = pki.client('stranger', pki.otherCa('other-ca'));
const intermediate = pki.intermediate('intermediate-ca');
const bob = pki.client('bob', intermediate);

const fp = (pem: Pem) => new X509Certificate(pem.cert).fingerprint256;
const ssl = (pem: Pem, more: Partial<SslConfig>): SslConfig => ({ cert: pem.cert, key: pem.key, ...more });

const closers: (() => void)[] = [];
after(() => {
  for (const close of closers) close();
});

interface Outcome {
  /** what the server wrote once it accepted the connection */
  data: string;
  fingerprint?: string;
  keyType?: string;
  protocol?: string | null;
  error?: string;
}

/** Connects, and reads until the server ends: accepted connections get "ok". */
function exchange(port: number, options: tls.ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    const outcome: Outcome = { data: '' };
    const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...options }, () => {
      const peer = socket.getPeerX509Certificate();
      outcome.fingerprint = peer?.fingerprint256;
      outcome.keyType = peer?.publicKey.asymmetricKeyType;
      outcome.protocol = socket.getProtocol();
    });
    const timer = setTimeout(() => socket.destroy(new Error('timeout')), 5000);
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (outcome.data += d));
    socket.on('error', (e: NodeJS.ErrnoException) => (outcome.error ??= e.code ?? e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(outcome);
    });
  });
}

/** A tls.Server using sniCallback: writes "ok" and ends each secured connection. */
async function sniServer(table: () => SniTable, onMiss: (n: string) => void = () => {}) {
  const server = tls.createServer({ SNICallback: sniCallback(table, onMiss) }, (socket) => socket.end('ok'));
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => server.close());
  return (server.address() as AddressInfo).port;
}

/** A plain listener handing sockets to a TlsTerminator: writes "ok" and ends each accepted connection. */
async function terminatorServer(table: () => SniTable, seen: { rejects: string[]; misses: (string | undefined)[]; entries: string[] } = { rejects: [], misses: [], entries: [] }) {
  const terminator = new TlsTerminator({
    table,
    onSecure: (socket: TLSSocket, entry: SslEntry) => {
      seen.entries.push(entry.id);
      socket.end('ok');
    },
    onMiss: (name) => seen.misses.push(name),
    onReject: (reason) => seen.rejects.push(reason),
    handshakeTimeoutMs: 3000,
  });
  const server = net.createServer((raw) => terminator.accept(raw));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  closers.push(() => server.close());
  return { port: (server.address() as AddressInfo).port, terminator, seen };
}

describe('SniTable.lookup (APISIX radixtree_sni semantics)', () => {
  const table = SniTable.fromSsls(
    [
      ['exact', ssl(exactA, { snis: ['a.test', 'Upper.Test.'] })],
      ['wild', ssl(wildW, { sni: '*.w.test' })],
      ['wild-longer', ssl(wildXW, { sni: '*.x.w.test' })],
      ['all', ssl(catchAll, { sni: '*' })],
      ['off', ssl(exactA, { sni: 'off.test', status: 0 })],
      ['client-cert', ssl(exactA, { type: 'client' })],
      ['dup', ssl(exactA, { snis: ['a.test', 'dup.test'] })],
      ['partial', ssl(exactA, { sni: '*p.test' })],
    ],
    { fallbackSni: 'A.TEST' },
  );
  const id = (name: string | undefined) => table.lookup(name)?.id;

  it('exact names first, case-insensitive, trailing dot ignored (both sides)', () => {
    assert.equal(id('a.test'), 'exact');
    assert.equal(id('A.TEST'), 'exact');
    assert.equal(id('a.test.'), 'exact');
    assert.equal(id('upper.test'), 'exact');
    assert.equal(id('dup.test'), 'dup');
  });

  it('wildcards stand for one label; the longest suffix wins; `*` takes the rest', () => {
    assert.equal(id('b.w.test'), 'wild');
    assert.equal(id('y.x.w.test'), 'wild-longer');
    assert.equal(id('x.w.test'), 'wild', 'x.w.test is one label under *.w.test');
    // APISIX: *.w.test does not match z.y.w.test (radixtree-sni.t TEST 11); here the catch-all takes it
    assert.equal(id('z.y.w.test'), 'all');
    assert.equal(id('w.test'), 'all');
    assert.equal(id('B.W.TEST.'), 'wild');
    assert.equal(id('xp.test'), 'partial', '*p.test: a partial first label, as APISIX');
    assert.equal(id('p.test'), 'all');
    assert.equal(id('unknown.example'), 'all');
  });

  it('leaves out disabled and client-type objects; reports duplicate names', () => {
    assert.equal(id('off.test'), 'all');
    assert.deepEqual([...table.entries.keys()].sort(), ['all', 'dup', 'exact', 'partial', 'wild', 'wild-longer']);
    assert.deepEqual(table.duplicates, ['a.test (dup)']);
  });

  it('no servername: the fallback SNI, else nothing', () => {
    assert.equal(id(undefined), 'exact');
    const noFallback = SniTable.fromSsls([['exact', ssl(exactA, { sni: 'a.test' })]]);
    assert.equal(noFallback.lookup(undefined), undefined);
    assert.equal(noFallback.lookup(''), undefined);
    assert.equal(noFallback.lookup('b.test'), undefined);
  });

  it('withChanges keeps untouched entries (and their contexts), replaces and deletes', () => {
    const a = new SslEntry('a', ssl(exactA, { sni: 'a.test' }));
    const w = new SslEntry('w', ssl(wildW, { sni: '*.w.test' }));
    const t1 = new SniTable([a, w]);
    const ctx = t1.lookup('a.test')!.context();
    const w2 = new SslEntry('w', ssl(wildXW, { sni: '*.x.w.test' }));
    const t2 = t1.withChanges([w2], []);
    assert.equal(t2.lookup('a.test'), a);
    assert.equal(t2.lookup('a.test')!.context(), ctx, 'the context is made once per entry');
    assert.equal(t2.lookup('b.w.test'), undefined);
    assert.equal(t2.lookup('c.x.w.test'), w2);
    const t3 = t2.withChanges([], ['a']);
    assert.equal(t3.lookup('a.test'), undefined);
    assert.equal(t3.size, 1);
  });

  it('builds 10,000 entries without parsing any PEM (contexts are made at the first handshake)', (t) => {
    // garbage PEM: a build that parsed it would throw
    const bogus: SslConfig = { cert: 'x'.repeat(128), key: 'y'.repeat(64), sni: 'x' };
    const ssls: [string, SslConfig][] = [];
    for (let i = 0; i < 10_000; i++) ssls.push([`s${i}`, { ...bogus, snis: [`h${i}.example.com`, `*.h${i}.example.com`] }]);
    const start = performance.now();
    const big = SniTable.fromSsls(ssls);
    const ms = performance.now() - start;
    t.diagnostic(`SniTable of 10,000 ssl objects (20,000 names) built in ${ms.toFixed(1)} ms`);
    assert.equal(big.size, 10_000);
    assert.equal(big.lookup('a.h9999.example.com')?.id, 's9999');
    const lookups = performance.now();
    for (let i = 0; i < 100_000; i++) big.lookup(`q.h${i % 10_000}.example.com`);
    t.diagnostic(`100,000 wildcard lookups in ${(performance.now() - lookups).toFixed(1)} ms`);
    assert.throws(() => big.lookup('h1.example.com')!.context());
  });
});

describe('handshakes through sniCallback', () => {
  it('serves the entry the SNI finds: exact, wildcard, longest wildcard, any case; no entry fails the handshake', async () => {
    const misses: string[] = [];
    const table = SniTable.fromSsls([
      ['exact', ssl(exactA, { sni: 'a.test' })],
      ['wild', ssl(wildW, { sni: '*.w.test' })],
      ['wild-longer', ssl(wildXW, { sni: '*.x.w.test' })],
    ]);
    const port = await sniServer(() => table, (n) => misses.push(n));
    const cases: [string, Pem][] = [
      ['a.test', exactA],
      ['A.Test', exactA],
      ['b.w.test', wildW],
      ['c.x.w.test', wildXW],
      ['C.X.W.TEST', wildXW],
    ];
    for (const [servername, pem] of cases) {
      const o = await exchange(port, { servername });
      assert.equal(o.data, 'ok', `${servername}: ${o.error}`);
      assert.equal(o.fingerprint, fp(pem), servername);
    }
    // verification by a real client: the CA and the name
    const verified = await exchange(port, { servername: 'b.w.test', ca: pki.ca.cert, rejectUnauthorized: true });
    assert.equal(verified.data, 'ok', verified.error);
    for (const servername of ['nope.test', 'z.y.w.test', 'w.test']) {
      const o = await exchange(port, { servername });
      assert.equal(o.data, '', servername);
      assert.ok(o.error, `${servername}: the handshake must fail`);
    }
    assert.deepEqual(misses, ['nope.test', 'z.y.w.test', 'w.test']);
  });

  it('a swapped table is seen by the next handshake', async () => {
    let table = SniTable.fromSsls([['1', ssl(exactA, { sni: 'a.test' })]]);
    const port = await sniServer(() => table);
    assert.equal((await exchange(port, { servername: 'a.test' })).fingerprint, fp(exactA));
    // the object is replaced: a new entry, a new context
    table = table.withChanges([new SslEntry('1', ssl(wildW, { sni: 'a.test' }))]);
    assert.equal((await exchange(port, { servername: 'a.test' })).fingerprint, fp(wildW));
    table = table.withChanges([], ['1']);
    assert.ok((await exchange(port, { servername: 'a.test' })).error);
  });

  it('serves a key stored encrypted with the keyring', async () => {
    const keyring = ['qeddd145sfvddff3'];
    const stored = ssl({ cert: exactA.cert, key: encryptKey(exactA.key, keyring) }, { sni: 'a.test' });
    const table = SniTable.fromSsls([['enc', stored]], { decryptKey: (s) => decryptKey(s, keyring) });
    const port = await sniServer(() => table);
    const o = await exchange(port, { servername: 'a.test' });
    assert.equal(o.data, 'ok', o.error);
    assert.equal(o.fingerprint, fp(exactA));
  });
});

describe('handshakes through TlsTerminator (ClientHello read first)', () => {
  it('RSA + ECDSA pairs: each client gets the certificate it can verify', async () => {
    const table = SniTable.fromSsls([['pair', ssl(pairRsa, { sni: 'pair.test', certs: [pairEc.cert], keys: [pairEc.key] })]]);
    const { port } = await terminatorServer(() => table);
    const cases: [string, tls.ConnectionOptions, string][] = [
      ['TLS 1.3, default client', {}, 'ec'],
      ['TLS 1.3, ECDSA sigalgs only', { sigalgs: 'ECDSA+SHA256:ECDSA+SHA384' }, 'ec'],
      ['TLS 1.3, RSA-PSS sigalgs only', { sigalgs: 'RSA-PSS+SHA256:RSA-PSS+SHA384' }, 'rsa'],
      ['TLS 1.2, ECDSA sigalgs only', { maxVersion: 'TLSv1.2', sigalgs: 'ECDSA+SHA256' }, 'ec'],
      ['TLS 1.2, RSA sigalgs only', { maxVersion: 'TLSv1.2', sigalgs: 'RSA+SHA256:RSA-PSS+SHA256' }, 'rsa'],
      ['TLS 1.2, ECDHE-RSA ciphers only', { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' }, 'rsa'],
      ['TLS 1.2, ECDHE-ECDSA ciphers only', { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' }, 'ec'],
    ];
    for (const [name, options, keyType] of cases) {
      const o = await exchange(port, { servername: 'pair.test', ...options });
      assert.equal(o.data, 'ok', `${name}: ${o.error}`);
      assert.equal(o.keyType, keyType, name);
      assert.equal(o.fingerprint, fp(keyType === 'ec' ? pairEc : pairRsa), name);
    }
  });

  it('mutual TLS per SNI: a CA-signed client certificate is accepted, none or a stranger refused; other SNIs ask for none', async () => {
    const table = SniTable.fromSsls([
      ['mtls', ssl(mtls, { sni: 'mtls.test', client: { ca: pki.ca.cert } })],
      ['plain', ssl(exactA, { sni: 'a.test' })],
    ]);
    const { port, seen } = await terminatorServer(() => table);
    const accepted = await exchange(port, { servername: 'mtls.test', cert: alice.cert, key: alice.key });
    assert.equal(accepted.data, 'ok', accepted.error);
    assert.equal(accepted.fingerprint, fp(mtls));
    for (const [name, options] of [
      ['no certificate', {}],
      ['a certificate of another CA', { cert: stranger.cert, key: stranger.key }],
    ] as const) {
      for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
        const o = await exchange(port, { servername: 'mtls.test', maxVersion, ...options });
        assert.equal(o.data, '', `${name} over ${maxVersion} must be refused`);
      }
    }
    assert.ok(seen.rejects.length >= 4, seen.rejects.join('; '));
    // the plain SNI on the same listener sends no CertificateRequest: the client's cert is not used
    const server = await new Promise<boolean>((resolve) => {
      const table2 = SniTable.fromSsls([['plain', ssl(exactA, { sni: 'a.test' })]]);
      const terminator = new TlsTerminator({
        table: () => table2,
        onSecure: (socket) => {
          resolve(Object.keys(socket.getPeerCertificate()).length > 0);
          socket.end('ok');
        },
      });
      const plain = net.createServer((raw) => terminator.accept(raw)).listen(0, '127.0.0.1', () => {
        closers.push(() => plain.close());
        void exchange((plain.address() as AddressInfo).port, { servername: 'a.test', cert: alice.cert, key: alice.key });
      });
    });
    assert.equal(server, false, 'a client certificate was requested for a plain SNI');
  });

  it('client.depth bounds the intermediate certificates; skip_mtls_uri_regex defers the check to requests', async () => {
    const chain = { cert: bob.cert + intermediate.cert, key: bob.key };
    const strict = SniTable.fromSsls([['d0', ssl(mtls, { sni: 'mtls.test', client: { ca: pki.ca.cert, depth: 0 } })]]);
    const lenient = SniTable.fromSsls([['d1', ssl(mtls, { sni: 'mtls.test', client: { ca: pki.ca.cert, depth: 1 } })]]);
    const s0 = await terminatorServer(() => strict);
    const s1 = await terminatorServer(() => lenient);
    assert.equal((await exchange(s1.port, { servername: 'mtls.test', ...chain })).data, 'ok');
    assert.equal((await exchange(s0.port, { servername: 'mtls.test', ...chain })).data, '');
    assert.match(s0.seen.rejects.join(';'), /certificate chain too long \(1 intermediate certificates, depth 0\)/);
    assert.equal((await exchange(s0.port, { servername: 'mtls.test', cert: alice.cert, key: alice.key })).data, 'ok');

    // skip_mtls_uri_regex: the handshake goes through without a certificate; requests are checked
    const lax = SniTable.fromSsls([['lax', ssl(mtls, { sni: 'mtls.test', client: { ca: pki.ca.cert, skip_mtls_uri_regex: ['^/health$'] } })]]);
    const problems: (string | undefined)[] = [];
    const requests: (string | undefined)[][] = [];
    const terminator = new TlsTerminator({
      table: () => lax,
      onSecure: (socket, entry) => {
        problems.push(clientCertProblem(socket, entry));
        requests.push(['/health', '/api/health', '/healthz'].map((uri) => requestClientCertProblem(socket, lax, entry, 'mtls.test', uri)));
        socket.end('ok');
      },
    });
    const server = net.createServer((raw) => terminator.accept(raw)).listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    assert.equal((await exchange(port, { servername: 'mtls.test' })).data, 'ok');
    assert.equal((await exchange(port, { servername: 'mtls.test', cert: stranger.cert, key: stranger.key })).data, 'ok');
    assert.equal((await exchange(port, { servername: 'mtls.test', cert: alice.cert, key: alice.key })).data, 'ok');
    assert.equal(problems[0], 'client certificate was not present');
    assert.match(problems[1]!, /^client certificate verification is not passed: /);
    assert.equal(problems[2], undefined);
    // per request: /health is exempt, other paths need the verified certificate (APISIX: 400)
    assert.deepEqual(requests[0], [undefined, 'client certificate was not present', 'client certificate was not present']);
    assert.equal(requests[1]![0], undefined);
    assert.match(requests[1]![1]!, /^client certificate verification is not passed: /);
    assert.deepEqual(requests[2], [undefined, undefined, undefined]);
  });

  it('a request whose Host needs a client certificate is refused on a connection made for another SNI', async () => {
    const table = SniTable.fromSsls([
      ['mtls', ssl(mtls, { sni: 'mtls.test', client: { ca: pki.ca.cert } })],
      ['wild', ssl(wildW, { sni: '*.w.test' })],
    ]);
    const answers: (string | undefined)[][] = [];
    const terminator = new TlsTerminator({
      table: () => table,
      onSecure: (socket, entry) => {
        answers.push(['MTLS.test:8443', 'b.w.test', undefined].map((host) => requestClientCertProblem(socket, table, entry, host, '/')));
        socket.end('ok');
      },
    });
    const server = net.createServer((raw) => terminator.accept(raw)).listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    assert.equal((await exchange(port, { servername: 'b.w.test' })).data, 'ok');
    assert.equal((await exchange(port, { servername: 'mtls.test', cert: alice.cert, key: alice.key })).data, 'ok');
    assert.deepEqual(answers, [
      ['client certificate verified with SNI b.w.test, but the host is mtls.test', undefined, undefined],
      [undefined, undefined, undefined],
    ]);
  });

  it('ssl_protocols per SNI: negotiated within the entry\'s versions, refused outside them', async () => {
    const table = SniTable.fromSsls([
      ['only13', ssl(exactA, { sni: 'a.test', ssl_protocols: ['TLSv1.3'] })],
      ['only12', ssl(wildW, { sni: '*.w.test', ssl_protocols: ['TLSv1.2'] })],
      ['default', ssl(catchAll, { sni: '*' })],
    ]);
    const { port } = await terminatorServer(() => table);
    assert.equal((await exchange(port, { servername: 'a.test' })).protocol, 'TLSv1.3');
    assert.equal((await exchange(port, { servername: 'a.test', maxVersion: 'TLSv1.2' })).data, '');
    const twelve = await exchange(port, { servername: 'b.w.test' });
    assert.equal(twelve.data, 'ok', twelve.error);
    assert.equal(twelve.protocol, 'TLSv1.2', 'a client offering 1.2 and 1.3 gets 1.2 for a TLSv1.2-only SNI');
    assert.equal((await exchange(port, { servername: 'b.w.test', minVersion: 'TLSv1.3' })).data, '');
    assert.equal((await exchange(port, { servername: 'other.test' })).protocol, 'TLSv1.3');
    assert.equal((await exchange(port, { servername: 'other.test', maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2');
  });

  it('mutual TLS: no session resumption, so a session verified for one CA cannot enter an SNI of another', async () => {
    const caB = pki.otherCa('ca-b');
    const mtlsB = pki.server('mtls-b.test', ['mtls-b.test']);
    const table = SniTable.fromSsls([
      ['a', ssl(mtls, { sni: 'mtls.test', client: { ca: pki.ca.cert } })],
      ['b', ssl(mtlsB, { sni: 'mtls-b.test', client: { ca: caB.cert } })],
      ['plain', ssl(exactA, { sni: 'a.test' })],
    ]);
    const reused: boolean[] = [];
    const terminator = new TlsTerminator({
      table: () => table,
      onSecure: (socket) => {
        reused.push(socket.isSessionReused());
        socket.end('ok');
      },
    });
    const server = net.createServer((raw) => terminator.accept(raw)).listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const connect = (servername: string, session?: Buffer, maxVersion: tls.SecureVersion = 'TLSv1.3') =>
      new Promise<{ data: string; session?: Buffer }>((resolve) => {
        let data = '';
        let ticket: Buffer | undefined;
        const s = tls.connect({ port, host: '127.0.0.1', servername, rejectUnauthorized: false, cert: alice.cert, key: alice.key, maxVersion, ...(session && { session }) });
        s.on('session', (t: Buffer) => (ticket = t));
        s.setEncoding('utf8');
        s.on('data', (d: string) => (data += d));
        s.on('error', () => {});
        s.on('close', () => resolve({ data, session: ticket ?? s.getSession() }));
      });
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      const first = await connect('mtls.test', undefined, version);
      assert.equal(first.data, 'ok');
      assert.ok(first.session, 'the client has a session to offer');
      assert.equal((await connect('mtls.test', first.session, version)).data, 'ok');
      assert.equal((await connect('mtls-b.test', first.session, version)).data, '', `${version}: alice's CA is not mtls-b's`);
    }
    assert.deepEqual(reused, [false, false, false, false], 'every mTLS handshake is a full one');
    // plain SNIs keep resumption
    const plain = await connect('a.test');
    await connect('a.test', plain.session);
    assert.deepEqual(reused.slice(-2), [false, true]);
  });

  it('TLSv1.1 when an ssl object lists it (OpenSSL security level 0 for that object only)', async () => {
    const table = SniTable.fromSsls([
      ['old', ssl(exactA, { sni: 'a.test', ssl_protocols: ['TLSv1.1', 'TLSv1.2'] })],
      ['new', ssl(wildW, { sni: '*.w.test' })],
    ]);
    const { port } = await terminatorServer(() => table);
    const legacy = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0' } as const;
    const o = await exchange(port, { servername: 'a.test', ...legacy });
    assert.equal(o.data, 'ok', o.error);
    assert.equal(o.protocol, 'TLSv1.1');
    assert.equal((await exchange(port, { servername: 'b.w.test', ...legacy })).data, '');
  });

  it('(the Node behaviour the terminator works around) an SNI context with two pairs serves only one', async () => {
    const both = tls.createSecureContext({ cert: [pairRsa.cert, pairEc.cert], key: [pairRsa.key, pairEc.key] });
    const server = tls.createServer({ SNICallback: (_n, cb) => cb(null, both) }, (s) => s.end('ok'));
    server.on('tlsClientError', () => {});
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    closers.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const ecClient = await exchange(port, { servername: 'pair.test', sigalgs: 'ECDSA+SHA256' });
    const rsaClient = await exchange(port, { servername: 'pair.test', sigalgs: 'RSA-PSS+SHA256' });
    // if Node ever serves both, this fails: then one context per entry would do
    assert.ok(ecClient.data !== 'ok' || rsaClient.data !== 'ok', 'Node now serves several pairs of an SNI context');
  });

  it('no SNI: the fallback entry, or a refused connection', async () => {
    const withFallback = SniTable.fromSsls(
      [
        ['fb', ssl(fallback, { sni: 'fallback.test' })],
        ['a', ssl(exactA, { sni: 'a.test' })],
      ],
      { fallbackSni: 'fallback.test' },
    );
    const { port, seen } = await terminatorServer(() => withFallback);
    const o = await exchange(port, {}); // connecting to an IP: Node sends no SNI
    assert.equal(o.data, 'ok', o.error);
    assert.equal(o.fingerprint, fp(fallback));
    assert.equal((await exchange(port, { servername: 'a.test' })).fingerprint, fp(exactA), 'SNI clients still get theirs');
    assert.deepEqual(seen.entries, ['fb', 'a']);

    const without = SniTable.fromSsls([['a', ssl(exactA, { sni: 'a.test' })]]);
    const second = await terminatorServer(() => without);
    const refused = await exchange(second.port, {});
    assert.equal(refused.data, '');
    assert.deepEqual(second.seen.misses, [undefined]);
  });
});
