/**
 * Throwaway PKI for TLS tests, made with the openssl CLI: a CA, server certificates with chosen
 * SANs (RSA 2048 or EC P-256), an intermediate CA, client certificates, an expired certificate.
 * Everything lives in one temp dir removed at exit (owned.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { installExitHook, ownedDirs } from './owned.ts';

export interface Pem {
  cert: string;
  key: string;
}

export interface TestPki {
  dir: string;
  ca: Pem;
  /** a server certificate signed by the CA, SAN = the given DNS names */
  server(name: string, sans: string[], kind?: 'rsa' | 'ec', opts?: { days?: number; expired?: boolean }): Pem;
  /** a client certificate (extendedKeyUsage clientAuth) signed by `issuer` (default: the CA) */
  client(name: string, issuer?: Pem): Pem;
  /** an intermediate CA signed by the root CA */
  intermediate(name: string): Pem;
  /** another self-signed CA, unrelated to `ca` */
  otherCa(name: string): Pem;
}

export function makeTestPki(): TestPki {
  installExitHook();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'portico-tls-'));
  ownedDirs.add(dir);
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const read = (n: string): Pem => ({ cert: readFileSync(f(`${n}.pem`), 'utf8'), key: readFileSync(f(`${n}.key`), 'utf8') });
  let serial = 1;
  const files = new Map<Pem, string>();

  const newKey = (n: string, kind: 'rsa' | 'ec') =>
    kind === 'rsa'
      ? ssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', f(`${n}.key`))
      : ssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', f(`${n}.key`));

  const selfSigned = (n: string): Pem => {
    newKey(n, 'rsa');
    ssl('req', '-x509', '-new', '-key', f(`${n}.key`), '-days', '2', '-subj', `/CN=${n}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', f(`${n}.pem`));
    const pem = read(n);
    files.set(pem, n);
    return pem;
  };

  /** sign `n`.key into `n`.pem with `issuer`; `ext` lines go into an extfile */
  const sign = (n: string, subject: string, issuer: Pem, ext: string[], days: string[]) => {
    const issuerName = files.get(issuer)!;
    ssl('req', '-new', '-key', f(`${n}.key`), '-subj', subject, '-out', f(`${n}.csr`));
    writeFileSync(f(`${n}.ext`), ext.join('\n') + '\n');
    ssl('x509', '-req', '-in', f(`${n}.csr`), '-CA', f(`${issuerName}.pem`), '-CAkey', f(`${issuerName}.key`),
      '-set_serial', String(serial++), ...days, '-extfile', f(`${n}.ext`), '-out', f(`${n}.pem`));
    const pem = read(n);
    files.set(pem, n);
    return pem;
  };

  const ca = selfSigned('ca');
  let count = 0;
  const unique = (name: string) => `${name.replace(/[^a-zA-Z0-9.-]/g, '_')}-${count++}`;

  return {
    dir,
    ca,
    server(name, sans, kind = 'rsa', opts = {}) {
      const n = unique(name);
      newKey(n, kind);
      const ext = [`subjectAltName=${sans.map((s) => `DNS:${s}`).join(',')}`, 'extendedKeyUsage=serverAuth'];
      if (!opts.expired) return sign(n, `/CN=${name}`, ca, sans.length ? ext : ext.slice(1), ['-days', String(opts.days ?? 2)]);
      // openssl 3.0's x509 has no -not_before/-not_after: `ca` with explicit dates does
      const issuerName = files.get(ca)!;
      writeFileSync(f(`${n}.cnf`), [
        '[ca]', 'default_ca=tca', '[tca]', `database=${f(`${n}.db`)}`, `new_certs_dir=${dir}`, 'default_md=sha256',
        'policy=any', 'copy_extensions=none', 'unique_subject=no', `serial=${f(`${n}.serial`)}`,
        '[any]', 'commonName=supplied', '[ext]', ...ext,
      ].join('\n') + '\n');
      writeFileSync(f(`${n}.db`), '');
      writeFileSync(f(`${n}.serial`), `${(1000 + serial++).toString(16).padStart(4, '0')}\n`);
      ssl('req', '-new', '-key', f(`${n}.key`), '-subj', `/CN=${name}`, '-out', f(`${n}.csr`));
      ssl('ca', '-batch', '-config', f(`${n}.cnf`), '-cert', f(`${issuerName}.pem`), '-keyfile', f(`${issuerName}.key`),
        '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-extensions', 'ext', '-notext',
        '-in', f(`${n}.csr`), '-out', f(`${n}.pem`));
      const pem = read(n);
      files.set(pem, n);
      return pem;
    },
    client(name, issuer = ca) {
      const n = unique(name);
      newKey(n, 'rsa');
      return sign(n, `/CN=${name}`, issuer, ['extendedKeyUsage=clientAuth'], ['-days', '2']);
    },
    intermediate(name) {
      const n = unique(name);
      newKey(n, 'rsa');
      return sign(n, `/CN=${name}`, ca, ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'], ['-days', '2']);
    },
    otherCa(name) {
      return selfSigned(unique(name));
    },
  };
}
