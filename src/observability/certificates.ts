import { X509Certificate } from 'node:crypto';
import type { Snapshot } from '../config/snapshot.ts';
import type { SslConfig } from '../config/schema/ssl.ts';
import { sslSnis } from '../config/schema/ssl.ts';

/** One ssl object's certificates as /status shows them: names and expiry, never key material. */
export interface CertificateReport {
  id: string;
  snis: string[];
  /** `server` (served by SNI) or `client` */
  type: string;
  enabled: boolean;
  /** the earliest notAfter of the object's certificates (ISO time) */
  not_after: string;
  /** whole days until not_after (negative: expired) */
  days_left: number;
}

const DAY_MS = 86_400_000;
/** notAfter of each ssl value, parsed once per version of the object (certificates only: no key is read) */
const expiries = new WeakMap<SslConfig, number>();

function earliestExpiry(ssl: SslConfig): number {
  let at = expiries.get(ssl);
  if (at === undefined) {
    at = Infinity;
    for (const pem of [ssl.cert, ...(ssl.certs ?? [])]) {
      // the leaf is the first certificate of each chain
      const expiry = Date.parse(new X509Certificate(pem).validTo);
      if (expiry < at) at = expiry;
    }
    expiries.set(ssl, at);
  }
  return at;
}

export function certificateReport(snapshot: Snapshot, now = Date.now()): CertificateReport[] {
  const out: CertificateReport[] = [];
  for (const [id, stored] of snapshot.ssls) {
    const ssl = stored.value;
    const notAfter = earliestExpiry(ssl);
    out.push({
      id,
      snis: sslSnis(ssl),
      type: ssl.type ?? 'server',
      enabled: (ssl.status ?? 1) === 1,
      not_after: new Date(notAfter).toISOString(),
      days_left: Math.floor((notAfter - now) / DAY_MS),
    });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
}
