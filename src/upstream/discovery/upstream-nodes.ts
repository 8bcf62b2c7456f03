import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { UpstreamConfig } from '../../config/schema/upstream.ts';
import { log } from '../../observability/log.ts';
import { defaultPort, nodeKey, normalizeNodes } from '../nodes.ts';
import type { UpstreamNode } from '../types.ts';
import { DnsWatcher, type DnsAnswer, type DnsOptions } from './dns.ts';

/** The nodes DNS found for one upstream, as every data plane of the instance receives them. */
export interface DiscoveredNodes {
  /** the upstream's key: "upstreams/<id>", "routes/<id>", "services/<id>" */
  upstream: string;
  /**
   * discoverySource() of the config they were found for: a data plane uses them only while its
   * upstream config has the same source (a change of nodes or service_name waits for new answers)
   */
  source: string;
  /** undefined: the upstream no longer needs discovery (forget it) */
  nodes: UpstreamNode[] | undefined;
}

/**
 * What an upstream asks of DNS, as a string (undefined: nothing, every node is an address):
 * `discovery_type: dns` with its service_name, or the host names among its nodes.
 */
export function discoverySource(u: UpstreamConfig): string | undefined {
  const scheme = u.scheme ?? 'http';
  if (u.discovery_type === 'dns') return `dns ${u.service_name} ${scheme}`;
  if (u.nodes === undefined) return undefined;
  const nodes = normalizeNodes(u.nodes, scheme);
  if (nodes.every((n) => isIP(n.host) !== 0)) return undefined;
  return `hosts ${JSON.stringify(nodes.map((n) => [n.host, n.port, n.weight, n.priority]))}`;
}

/** One upstream whose nodes come from DNS. */
interface Discovering {
  key: string;
  source: string;
  config: UpstreamConfig;
  /** watch ids in the DnsWatcher */
  watches: string[];
  /** host name -> its addresses (hosts kind) */
  addresses: Map<string, string[]>;
  /** the service's nodes (dns kind) */
  service: UpstreamNode[] | undefined;
  nodes: UpstreamNode[] | undefined;
}

/** /status: one name an upstream resolves. */
export interface DiscoveryReport {
  upstream: string;
  name: string;
  /** addresses ("host" names) or "host:port" nodes (service names) of the last good answer */
  found: string[];
  resolved_at: string | null;
  next_at: string | null;
  error?: { code: string; message: string; at: string };
}

/**
 * Node discovery by DNS, once per instance in the config pipeline's process: host names among an
 * upstream's nodes are resolved (A and AAAA) and re-resolved by their TTL; `discovery_type: dns`
 * resolves `service_name`. Each upstream's node set goes to `subscribe`rs (the data planes, the
 * health supervisor) whenever it changes. A failed resolution keeps the last good set.
 */
export class NodeDiscovery {
  private readonly watcher: DnsWatcher;
  private readonly upstreams = new Map<string, Discovering>();
  private readonly listeners: Array<(d: DiscoveredNodes) => void> = [];

  /** names of the hosts file: resolved from it, never asked of DNS (as the system resolver does) */
  private readonly hosts: ReadonlyMap<string, string[]>;

  constructor(options: Partial<DnsOptions>, hostsFile = '/etc/hosts') {
    this.watcher = new DnsWatcher(options);
    this.hosts = readHostsFile(hostsFile);
  }

  subscribe(listener: (d: DiscoveredNodes) => void): void {
    this.listeners.push(listener);
  }

  private publish(d: DiscoveredNodes): void {
    for (const l of this.listeners) l(d);
  }

  /** Follows a new snapshot: `changed` is changedUpstreams() of it. */
  update(changed: ReadonlyMap<string, UpstreamConfig | undefined>): void {
    for (const [key, config] of changed) {
      let source: string | undefined;
      try {
        source = config && discoverySource(config);
      } catch {
        source = undefined; // validated objects compile: a guard against a bug only
      }
      const current = this.upstreams.get(key);
      if (current !== undefined && current.source === source) {
        current.config = config!;
        continue;
      }
      if (current !== undefined) {
        for (const id of current.watches) this.watcher.unwatch(id);
        this.upstreams.delete(key);
        if (source === undefined) this.publish({ upstream: key, source: current.source, nodes: undefined });
      }
      if (source !== undefined) this.start(key, source, config!);
    }
  }

  private start(key: string, source: string, config: UpstreamConfig): void {
    const d: Discovering = { key, source, config, watches: [], addresses: new Map(), service: undefined, nodes: undefined };
    this.upstreams.set(key, d);
    const scheme = config.scheme ?? 'http';
    if (config.discovery_type === 'dns') {
      const id = `${key} ${config.service_name}`;
      d.watches.push(id);
      this.watcher.watch(id, { kind: 'service', serviceName: config.service_name!, defaultPort: defaultPort(scheme) }, (answer) => {
        if (answer.kind !== 'service') return;
        d.service = answer.nodes.map((n) => ({ host: n.host, port: n.port, weight: n.weight, priority: n.priority, key: nodeKey(n.host, n.port) }));
        this.changed(d);
      });
      return;
    }
    const names = new Set(normalizeNodes(config.nodes!, scheme).filter((n) => isIP(n.host) === 0).map((n) => n.host));
    for (const name of names) {
      const listed = this.hosts.get(name.toLowerCase());
      if (listed !== undefined) {
        d.addresses.set(name, listed);
        continue;
      }
      const id = `${key} ${name}`;
      d.watches.push(id);
      this.watcher.watch(id, { kind: 'host', name }, (answer: DnsAnswer) => {
        if (answer.kind !== 'host') return;
        d.addresses.set(name, answer.addresses);
        this.changed(d);
      });
    }
    // every name was in the hosts file: the nodes are known now
    if (d.watches.length === 0) queueMicrotask(() => this.changed(d));
  }

  private changed(d: Discovering): void {
    if (this.upstreams.get(d.key) !== d) return;
    d.nodes = d.service ?? resolvedNodes(d.config, d.addresses);
    log.info({ upstream: d.key, nodes: d.nodes.map((n) => n.key) }, 'upstream nodes resolved');
    this.publish({ upstream: d.key, source: d.source, nodes: d.nodes });
  }

  /** The nodes found for `config` of upstream `key`, when it needs discovery and has answers. */
  nodesOf(key: string, config: UpstreamConfig): UpstreamNode[] | undefined {
    const d = this.upstreams.get(key);
    return d !== undefined && d.config === config ? d.nodes : undefined;
  }

  /** Every upstream's current nodes (what a data plane that starts must learn). */
  current(): DiscoveredNodes[] {
    const out: DiscoveredNodes[] = [];
    for (const d of this.upstreams.values()) if (d.nodes !== undefined) out.push({ upstream: d.key, source: d.source, nodes: d.nodes });
    return out;
  }

  /** True once every name watched has had a first answer or a first failure. */
  settled(): boolean {
    return this.watcher.state().every((s) => s.answer !== undefined || s.error !== undefined);
  }

  report(): DiscoveryReport[] {
    const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
    return this.watcher.state().map((s) => ({
      upstream: s.id.slice(0, s.id.indexOf(' ')),
      name: s.query.kind === 'host' ? s.query.name : s.query.serviceName,
      found: s.answer === undefined ? [] : s.answer.kind === 'host' ? s.answer.addresses : s.answer.nodes.map((n) => nodeKey(n.host, n.port)),
      resolved_at: iso(s.resolvedAt),
      next_at: iso(s.nextAt),
      ...(s.error && { error: { code: s.error.code, message: s.error.message, at: new Date(s.error.at).toISOString() } }),
    }));
  }

  stop(): void {
    this.watcher.stop();
    this.upstreams.clear();
  }
}

/**
 * An upstream's nodes with each host name replaced by its addresses, each with the node's port,
 * weight and priority (nginx's `server name`: a name with three addresses is three servers). A
 * name not resolved yet stays as it is (the connection resolves it). The same address twice is one node.
 */
export function resolvedNodes(config: UpstreamConfig, addresses: ReadonlyMap<string, readonly string[]>): UpstreamNode[] {
  const out = new Map<string, UpstreamNode>();
  for (const node of normalizeNodes(config.nodes!, config.scheme ?? 'http')) {
    const found = addresses.get(node.host);
    if (found === undefined || found.length === 0) {
      if (!out.has(node.key)) out.set(node.key, node);
      continue;
    }
    for (const address of found) {
      const key = nodeKey(address, node.port);
      if (!out.has(key)) out.set(key, { host: address, port: node.port, weight: node.weight, priority: node.priority, key, hostname: node.host });
    }
  }
  return [...out.values()];
}

/** The hosts file as name (lower case) -> addresses; an unreadable file is an empty one. */
export function readHostsFile(path: string): Map<string, string[]> {
  const hosts = new Map<string, string[]>();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return hosts;
  }
  for (const line of text.split('\n')) {
    const fields = line.replace(/#.*/, '').trim().split(/\s+/);
    const address = fields[0];
    if (address === undefined || isIP(address) === 0) continue;
    for (const name of fields.slice(1)) {
      const key = name.toLowerCase();
      const list = hosts.get(key);
      if (list === undefined) hosts.set(key, [address]);
      else if (!list.includes(address)) list.push(address);
    }
  }
  return hosts;
}
