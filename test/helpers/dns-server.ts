import { createSocket, type RemoteInfo } from 'node:dgram';
import { once } from 'node:events';
import * as dnsPacket from 'dns-packet';

export interface SrvTarget {
  target: string;
  port: number;
  weight: number;
  priority: number;
}

export type DnsFailure = 'SERVFAIL' | 'REFUSED' | 'NXDOMAIN' | 'drop';
export type RecordType = 'A' | 'AAAA' | 'SRV';

export interface TestDnsServer {
  port: number;
  /** "127.0.0.1:port", the form DnsOptions.servers takes */
  address: string;
  setA(name: string, ips: string[], ttl: number): void;
  setAAAA(name: string, ips: string[], ttl: number): void;
  setSrv(name: string, records: SrvTarget[], ttl: number): void;
  /** forgets every record of the name (and any failWith): it answers NXDOMAIN again */
  remove(name: string): void;
  /**
   * answers every query for the name (of `type` only, when given) with this rcode ('drop': no
   * answer at all); undefined: stop failing
   */
  failWith(name: string, failure: DnsFailure | undefined, type?: RecordType): void;
  /** queries received for the name (every name when omitted), optionally of one type only */
  queries(name?: string, type?: RecordType): number;
  close(): Promise<void>;
}

interface Zone {
  A?: { ips: string[]; ttl: number };
  AAAA?: { ips: string[]; ttl: number };
  SRV?: { records: SrvTarget[]; ttl: number };
}

/** DNS rcodes live in the low four bits of the header flags. */
const RCODE = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const;

/**
 * An authoritative-looking DNS responder on 127.0.0.1 UDP that a test programs record by record.
 * A name it does not know answers NXDOMAIN; a known name without the asked type answers NOERROR
 * with no answers (NODATA), the two cases a resolver must tell apart. Names are case-insensitive
 * and a trailing dot is ignored. Every query is counted, so a test can assert how often a
 * resolver asked.
 */
export async function startDnsServer(): Promise<TestDnsServer> {
  const zones = new Map<string, Zone>();
  /** by "name" (every type) or "name type" */
  const failures = new Map<string, DnsFailure>();
  const seen: Array<{ name: string; type: string }> = [];
  const socket = createSocket('udp4');

  const canonical = (name: string) => name.toLowerCase().replace(/\.$/, '');
  const zone = (name: string) => {
    const key = canonical(name);
    let z = zones.get(key);
    if (!z) zones.set(key, (z = {}));
    return z;
  };

  socket.on('message', (message: Buffer, from: RemoteInfo) => {
    let query: dnsPacket.Packet;
    try {
      query = dnsPacket.decode(message);
    } catch {
      return; // not DNS: a real server would drop it too
    }
    const question = query.questions?.[0];
    if (!question) return;
    const name = canonical(question.name);
    seen.push({ name, type: question.type });

    let rcode: number = RCODE.NOERROR;
    const answers: dnsPacket.Answer[] = [];
    const failure = failures.get(`${name} ${question.type}`) ?? failures.get(name);
    if (failure === 'drop') return;
    if (failure) {
      rcode = RCODE[failure];
    } else {
      const z = zones.get(name);
      if (!z) rcode = RCODE.NXDOMAIN;
      else if (question.type === 'A' && z.A) {
        for (const ip of z.A.ips) answers.push({ type: 'A', name: question.name, ttl: z.A.ttl, data: ip });
      } else if (question.type === 'AAAA' && z.AAAA) {
        for (const ip of z.AAAA.ips) answers.push({ type: 'AAAA', name: question.name, ttl: z.AAAA.ttl, data: ip });
      } else if (question.type === 'SRV' && z.SRV) {
        for (const r of z.SRV.records) answers.push({ type: 'SRV', name: question.name, ttl: z.SRV.ttl, data: { ...r } });
      }
    }
    const response = dnsPacket.encode({
      type: 'response',
      id: query.id,
      // QR is set by type; AA + RD (echoed) + RA, and the rcode in the low bits
      flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcode,
      questions: [question],
      answers,
    });
    socket.send(response, from.port, from.address);
  });

  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const port = socket.address().port;

  return {
    port,
    address: `127.0.0.1:${port}`,
    setA: (name, ips, ttl) => void (zone(name).A = { ips: [...ips], ttl }),
    setAAAA: (name, ips, ttl) => void (zone(name).AAAA = { ips: [...ips], ttl }),
    setSrv: (name, records, ttl) => void (zone(name).SRV = { records: records.map((r) => ({ ...r })), ttl }),
    remove: (name) => {
      const key = canonical(name);
      zones.delete(key);
      for (const f of [...failures.keys()]) if (f === key || f.startsWith(`${key} `)) failures.delete(f);
    },
    failWith: (name, failure, type) => {
      const key = type ? `${canonical(name)} ${type}` : canonical(name);
      if (failure) failures.set(key, failure);
      else failures.delete(key);
    },
    queries: (name, type) =>
      seen.filter((q) => (name === undefined || q.name === canonical(name)) && (type === undefined || q.type === type)).length,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
