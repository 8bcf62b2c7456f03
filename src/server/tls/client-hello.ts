/**
 * Reads a TLS ClientHello off a plain socket before TLS starts, and puts the bytes back.
 *
 * Why: Node decides some things per server before any SNICallback runs, and an SNICallback's
 * context contributes only one certificate:
 * - protocol versions are negotiated before the SNI callback (OpenSSL's version choice comes
 *   first), so a context's minVersion/maxVersion is ignored for an SNI context;
 * - requestCert/rejectUnauthorized are server options;
 * - an SNI context built with several cert/key pairs (RSA + ECDSA) serves only the last one (Node's
 *   TLSWrap copies SSL_CTX_get0_certificate, the current one, to the connection).
 * With the ClientHello in hand, the listener looks the SNI up first, picks the pair the client can
 * verify and hands the socket to a tls.Server whose options fit the entry (see sni-table.ts
 * handshakeProfile). Only public APIs: socket.unshift and server.emit('connection', socket).
 */
import type { Socket } from 'node:net';

export interface ClientHello {
  /** server_name extension (host_name type), as sent; undefined when absent */
  servername?: string;
  /** versions the client offers: supported_versions when present, else the legacy version */
  versions: string[];
  /** signature_algorithms code points (e.g. 0x0403 ecdsa_secp256r1_sha256); undefined when absent */
  sigalgs?: number[];
  cipherSuites: number[];
}

const VERSION_NAMES: Record<number, string> = { 0x0301: 'TLSv1', 0x0302: 'TLSv1.1', 0x0303: 'TLSv1.2', 0x0304: 'TLSv1.3' };

/** A ClientHello may span records; past this many bytes we stop looking and let TLS decide. */
const MAX_HELLO_BYTES = 64 * 1024;

/**
 * Parses the TLS records at the start of `buf`. 'incomplete': more bytes needed; undefined: not a
 * TLS ClientHello (or malformed: the TLS stack will say so to the client).
 */
export function parseClientHello(buf: Buffer): ClientHello | 'incomplete' | undefined {
  // gather the handshake bytes of consecutive handshake records
  const fragments: Buffer[] = [];
  let have = 0;
  let offset = 0;
  let needed = -1; // handshake message length incl. its 4-byte header, once known
  while (needed < 0 || have < needed) {
    if (buf.length < offset + 5) return 'incomplete';
    if (buf[offset] !== 0x16 || buf[offset + 1] !== 0x03) return undefined;
    const length = buf.readUInt16BE(offset + 3);
    if (length === 0 || length > 16_384 + 2048) return undefined;
    if (buf.length < offset + 5 + length) return 'incomplete';
    const fragment = buf.subarray(offset + 5, offset + 5 + length);
    fragments.push(fragment);
    have += fragment.length;
    offset += 5 + length;
    if (needed < 0 && have >= 4) {
      const head = fragments.length === 1 ? fragment : Buffer.concat(fragments);
      if (head[0] !== 0x01) return undefined; // not a ClientHello
      needed = 4 + head.readUIntBE(1, 3);
      if (needed > MAX_HELLO_BYTES) return undefined;
    }
  }
  const msg = (fragments.length === 1 ? fragments[0]! : Buffer.concat(fragments)).subarray(4, needed);
  try {
    return parseHelloBody(msg);
  } catch {
    return undefined; // a length ran past the end: malformed
  }
}

function parseHelloBody(b: Buffer): ClientHello {
  let p = 0;
  const need = (n: number) => {
    if (p + n > b.length) throw new RangeError('short');
  };
  need(2 + 32);
  const legacyVersion = b.readUInt16BE(p);
  p += 2 + 32; // version, random
  need(1);
  p += 1 + b[p]!; // session id
  need(2);
  const suitesLength = b.readUInt16BE(p);
  p += 2;
  need(suitesLength);
  const cipherSuites: number[] = [];
  for (let i = 0; i + 1 < suitesLength; i += 2) cipherSuites.push(b.readUInt16BE(p + i));
  p += suitesLength;
  need(1);
  p += 1 + b[p]!; // compression methods
  const hello: ClientHello = { versions: [], cipherSuites };
  let supportedVersions: number[] | undefined;
  if (p + 2 <= b.length) {
    const extEnd = p + 2 + b.readUInt16BE(p);
    p += 2;
    while (p + 4 <= extEnd && extEnd <= b.length) {
      const type = b.readUInt16BE(p);
      const len = b.readUInt16BE(p + 2);
      const data = b.subarray(p + 4, p + 4 + len);
      if (data.length !== len) throw new RangeError('short');
      p += 4 + len;
      if (type === 0 && len >= 5) {
        // server_name_list: u16 length, then (u8 type, u16 length, name)*; host_name is type 0
        let q = 2;
        while (q + 3 <= data.length) {
          const nameType = data[q]!;
          const nameLength = data.readUInt16BE(q + 1);
          if (nameType === 0) {
            hello.servername = data.subarray(q + 3, q + 3 + nameLength).toString('latin1');
            break;
          }
          q += 3 + nameLength;
        }
      } else if (type === 13 && len >= 2) {
        const n = data.readUInt16BE(0);
        hello.sigalgs = [];
        for (let i = 2; i + 1 < 2 + n && i + 1 < data.length; i += 2) hello.sigalgs.push(data.readUInt16BE(i));
      } else if (type === 43 && len >= 1) {
        supportedVersions = [];
        for (let i = 1; i + 1 < 1 + data[0]! && i + 1 < data.length; i += 2) supportedVersions.push(data.readUInt16BE(i));
      }
    }
  }
  if (supportedVersions !== undefined) {
    for (const v of supportedVersions) if (VERSION_NAMES[v]) hello.versions.push(VERSION_NAMES[v]);
  } else {
    // no supported_versions: the client speaks up to legacy_version
    for (const [code, name] of Object.entries(VERSION_NAMES)) if (Number(code) <= legacyVersion) hello.versions.push(name);
  }
  return hello;
}

/** ECDSA signature schemes (TLS 1.3 and 1.2 code points: hash << 8 | 3). */
const ECDSA_SIGALGS = new Set([0x0403, 0x0503, 0x0603, 0x0203, 0x0303]);
/** RSA signature schemes: PKCS#1 v1.5 (hash << 8 | 1) and RSA-PSS with an rsaEncryption key (0x0804-0x0806). */
const RSA_SIGALGS = new Set([0x0401, 0x0501, 0x0601, 0x0201, 0x0301, 0x0804, 0x0805, 0x0806]);

/**
 * The key types the client can verify, best first: OpenSSL prefers ECDSA when both fit. In TLS
 * 1.2 the cipher suite also fixes the certificate type: ECDHE-ECDSA suites are 0xC0xx/0xCCA9 ones.
 */
export function acceptedKeyTypes(hello: ClientHello): string[] {
  const tls13 = hello.versions.includes('TLSv1.3');
  // no signature_algorithms extension (TLS 1.2 clients may omit it): RFC 5246 defaults by suite
  const ecSigalg = hello.sigalgs === undefined || hello.sigalgs.some((s) => ECDSA_SIGALGS.has(s));
  const rsaSigalg = hello.sigalgs === undefined || hello.sigalgs.some((s) => RSA_SIGALGS.has(s));
  const ecSuite = hello.cipherSuites.some((s) => ECDSA_SUITES.has(s));
  const types: string[] = [];
  if (ecSigalg && (tls13 || ecSuite)) types.push('ec');
  if (rsaSigalg) types.push('rsa');
  return types;
}

/** TLS 1.2 cipher suites authenticated by an ECDSA certificate (the ones OpenSSL 3 offers and more). */
const ECDSA_SUITES = new Set([
  0xc02b, 0xc02c, 0xc023, 0xc024, 0xc009, 0xc00a, 0xcca9, 0xc0ac, 0xc0ad, 0xc0ae, 0xc0af, 0xc072, 0xc073, 0xc086, 0xc087,
]);

/**
 * Reads the ClientHello from a plain TCP socket and puts the bytes back (socket.unshift), so a
 * tls.Server given the socket afterwards (server.emit('connection', socket)) reads it again.
 * Resolves undefined when the first bytes are not a ClientHello, when the socket ends or errors,
 * or after `timeoutMs` without a complete one; the socket is then left for the caller to hand on
 * or destroy. The socket is paused on return.
 */
export function readClientHello(socket: Socket, timeoutMs = 10_000): Promise<ClientHello | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const finish = (hello: ClientHello | undefined) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      if (total > 0) socket.unshift(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
      resolve(hello);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      const parsed = parseClientHello(chunks.length === 1 ? chunk : Buffer.concat(chunks));
      if (parsed === 'incomplete' && total < MAX_HELLO_BYTES + 5 * 8) return;
      finish(parsed === 'incomplete' ? undefined : parsed);
    };
    const onEnd = () => finish(undefined);
    const timer = setTimeout(onEnd, timeoutMs);
    timer.unref();
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onEnd);
    socket.once('close', onEnd);
  });
}
