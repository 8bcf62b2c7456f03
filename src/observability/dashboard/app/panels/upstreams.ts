/// <reference lib="dom" />
import { html } from '../html.ts';
import { ago, count, dateTime, rate } from '../format.ts';
import { nodeKey, type TrafficRates } from '../traffic.ts';
import type { Nodes, NodeTraffic, RoutesView, StatusReport, TrafficSnapshot } from '../types.ts';

type Health = NonNullable<StatusReport['upstream_health']>[number]['nodes'][number];

interface NodeRow {
  node: string;
  weight?: number;
  health?: Health;
  traffic?: NodeTraffic;
}

interface Group {
  key: string;
  name?: string;
  type?: string;
  /** discovery_type and service_name, when nodes come from DNS */
  discovery?: string;
  checks?: string[];
  dns?: NonNullable<StatusReport['upstream_dns']>[number];
  nodes: Map<string, NodeRow>;
}

const CLASSES = ['2xx', '3xx', '4xx', '5xx', '000'];

function configNodes(nodes: Nodes | undefined): Array<{ node: string; weight?: number }> {
  if (!nodes) return [];
  if (Array.isArray(nodes)) return nodes.map((n) => ({ node: n.port ? `${n.host}:${n.port}` : n.host, weight: n.weight }));
  return Object.entries(nodes).map(([node, weight]) => ({ node, weight }));
}

/** Upstreams in config, inline upstreams seen in traffic, and checked ones, each with its nodes. */
function groupsOf(view: RoutesView | undefined, status: StatusReport | undefined, traffic: TrafficSnapshot | undefined): Group[] {
  const groups = new Map<string, Group>();
  const group = (key: string) => {
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { key, nodes: new Map() }));
    return g;
  };
  const row = (g: Group, node: string) => {
    let r = g.nodes.get(node);
    if (!r) g.nodes.set(node, (r = { node }));
    return r;
  };
  for (const u of view?.upstreams ?? []) {
    const g = group(`upstreams/${u.id}`);
    g.name = u.name;
    g.type = u.type;
    if (u.discovery_type) g.discovery = `${u.discovery_type}: ${u.service_name ?? ''}`;
    for (const n of configNodes(u.nodes)) row(g, n.node).weight = n.weight;
  }
  for (const h of status?.upstream_health ?? []) {
    const g = group(h.upstream);
    g.checks = h.checks;
    for (const n of h.nodes) row(g, n.node).health = n;
  }
  for (const d of status?.upstream_dns ?? []) group(d.upstream).dns = d;
  for (const t of traffic?.upstreams ?? []) if (t.upstream) row(group(t.upstream), t.node).traffic = t;
  return [...groups.values()].sort((a, b) => a.key.localeCompare(b.key, 'en', { numeric: true }));
}

function HealthCell({ g, n }: { g: Group; n: NodeRow }) {
  if (n.health) {
    const h = n.health;
    return html`<span class=${`badge ${h.healthy ? 'ok' : 'bad'}`} title=${`since ${h.since} (${h.by})${h.last_probe ? `\nlast probe ${h.last_probe.at}: ${h.last_probe.result}` : ''}`}
      >${h.healthy ? 'healthy' : 'unhealthy'}</span> <span class="muted">${h.by}, ${ago(h.since)}</span>`;
  }
  return html`<span class="muted">${g.checks ? 'not checked yet' : 'no checks'}</span>`;
}

/** Each upstream's nodes: health when checked, requests by status class, the last failure. */
export function UpstreamsPanel(props: { view: RoutesView | undefined; status: StatusReport | undefined; traffic: TrafficSnapshot | undefined; rates: TrafficRates | undefined }) {
  const groups = groupsOf(props.view, props.status, props.traffic);
  return html`
    <section class="panel" data-testid="upstreams-panel">
      <h2>Upstreams <span class="muted">${groups.length}</span></h2>
      ${groups.length === 0 ? html`<p class="muted">no upstreams</p>` : ''}
      ${groups.map(
        (g) => html`<div class="upstream" key=${g.key} data-testid=${`upstream-${g.key}`}>
          <h3><span class="mono">${g.key}</span> ${g.name ? html`<span>${g.name}</span>` : ''} ${g.type ? html`<span class="badge info">${g.type}</span>` : ''} ${g.discovery ? html`<span class="badge info">${g.discovery}</span>` : ''}
            ${g.checks ? html`<span class="badge info">checks: ${g.checks.join(', ')}</span>` : ''}
            ${g.dns?.error ? html`<span class="badge bad" title=${g.dns.error.message}>DNS ${g.dns.name}: ${g.dns.error.code}</span>` : ''}</h3>
          <table class="grid">
            <thead><tr><th>node</th><th class="num">weight</th><th>health</th><th class="num">req/s</th>${CLASSES.map((c) => html`<th class="num">${c === '000' ? 'failed' : c}</th>`)}<th>last error</th></tr></thead>
            <tbody>
              ${[...g.nodes.values()].map(
                (n) => html`<tr key=${n.node} data-testid=${`node-${g.key}-${n.node}`}>
                  <td class="mono">${n.node}</td>
                  <td class="num">${n.weight ?? ''}</td>
                  <td data-testid="health"><${HealthCell} g=${g} n=${n} /></td>
                  <td class="num">${rate(props.rates?.nodes.get(nodeKey(g.key, n.node)))}</td>
                  ${CLASSES.map((c) => html`<td class=${`num ${c === '5xx' || c === '000' ? (n.traffic?.codes[c] ? 'bad-text' : '') : ''}`}>${n.traffic?.codes[c] ? count(n.traffic.codes[c]) : ''}</td>`)}
                  <td data-testid="last-error">${n.traffic?.lastError
                    ? html`<span title=${dateTime(new Date(n.traffic.lastError.at).toISOString())}>${n.traffic.lastError.status || 'no response'} on routes/${n.traffic.lastError.route}, ${ago(n.traffic.lastError.at)}</span>`
                    : ''}</td>
                </tr>`,
              )}
            </tbody>
          </table>
        </div>`,
      )}
    </section>
  `;
}
