/// <reference lib="dom" />
import { useState } from 'preact/hooks';
import { html } from '../html.ts';
import { bound, count, percent, plural, rate } from '../format.ts';
import { NO_RATES, type IntervalRates, type TrafficRates } from '../traffic.ts';
import type { RoutesView } from '../types.ts';

type Route = RoutesView['routes'][number];
type SortKey = 'id' | 'rate' | 'errors' | 'p99';

/** rows drawn at most: thousands of routes stay usable, the filter finds the rest */
const MAX_ROWS = 300;

const list = (v: string[] | string | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const byId = new Intl.Collator('en', { numeric: true });

function matches(r: Route, services: Map<string, string>, q: string): boolean {
  if (!q) return true;
  const text = [r.id, r.name, r.uri, ...(r.uris ?? []), r.host, ...(r.hosts ?? []), r.service_id, r.service_id && services.get(r.service_id), r.upstream_id]
    .filter(Boolean)
    .join(' ')
    .toLowerCase();
  return text.includes(q);
}

function RatesCells({ r, lastBucket }: { r: IntervalRates | undefined; lastBucket: number | undefined }) {
  const x = r ?? NO_RATES;
  return html`
    <td class="num" data-testid="rate">${rate(r ? x.rate : undefined)}</td>
    <td class=${`num ${x.errors5xx > 0 ? 'bad-text' : ''}`} data-testid="errors">${percent(x.errors5xx, x.requests)}</td>
    <td class=${`num ${x.errors4xx > 0 ? 'warn-text' : ''}`} data-testid="errors4xx">${percent(x.errors4xx, x.requests)}</td>
    <td class="num" data-testid="p99">${bound(x.p99, lastBucket)}</td>
  `;
}

/** Every route in force with its live request rate, error shares and p99. */
export function RoutesPanel({ view, rates, lastBucket }: { view: RoutesView | undefined; rates: TrafficRates | undefined; lastBucket: number | undefined }) {
  const [filter, setFilter] = useState('');
  const [sort, setSort] = useState<SortKey>('id');
  if (!view) return html`<section class="panel" data-testid="routes-panel"><h2>Routes & services</h2><p class="muted">loading…</p></section>`;
  const services = new Map(view.services.map((s) => [s.id, s.name ?? '']));
  const q = filter.trim().toLowerCase();
  const shown = view.routes.filter((r) => matches(r, services, q));
  // a route absent from the traffic had no request yet: 0 req/s once there is an interval to speak of
  const of = (r: Route) => rates?.routes.get(r.id) ?? (rates ? NO_RATES : undefined);
  const key: Record<SortKey, (r: Route) => number> = {
    id: () => 0,
    rate: (r) => of(r)?.rate ?? 0,
    errors: (r) => of(r)?.errors5xx ?? 0,
    p99: (r) => of(r)?.p99 ?? -1,
  };
  shown.sort((a, b) => key[sort](b) - key[sort](a) || byId.compare(a.id, b.id));
  const unmatched = rates?.routes.get('');
  const th = (k: SortKey, label: string) =>
    html`<th class=${`num sortable ${sort === k ? 'sorted' : ''}`} onClick=${() => setSort(sort === k ? 'id' : k)} title="sort">${label}</th>`;
  return html`
    <section class="panel" data-testid="routes-panel">
      <div class="panel-head">
        <h2>Routes & services <span class="muted">${plural(view.totals?.routes ?? view.routes.length, 'route')}, ${plural(view.totals?.services ?? view.services.length, 'service')}${view.totals && view.totals.routes > view.routes.length ? ` (the first ${count(view.routes.length)} listed)` : ''}</span></h2>
        <input type="search" placeholder="filter: id, name, uri, host" value=${filter} onInput=${(e: Event) => setFilter((e.target as HTMLInputElement).value)} data-testid="route-filter" />
      </div>
      <table class="grid">
        <thead>
          <tr><th>id</th><th>name</th><th>uri</th><th>hosts</th><th>methods</th><th>service / upstream</th>
          ${th('rate', 'req/s')}${th('errors', '5xx')}<th class="num">4xx</th>${th('p99', 'p99')}</tr>
        </thead>
        <tbody>
          ${shown.slice(0, MAX_ROWS).map(
            (r) => html`<tr key=${r.id} data-testid=${`route-row-${r.id}`} class=${r.status === 0 ? 'disabled' : ''}>
              <td class="mono">${r.id}</td>
              <td>${r.name ?? ''}${r.status === 0 ? html` <span class="badge warn">disabled</span>` : ''}</td>
              <td class="mono">${[r.uri, ...(r.uris ?? [])].filter(Boolean).join(' ')}</td>
              <td class="mono">${[...list(r.host), ...list(r.hosts)].join(' ') || html`<span class="muted">any</span>`}</td>
              <td>${r.methods?.join(' ') ?? html`<span class="muted">any</span>`}</td>
              <td class="mono">${r.service_id ? `services/${r.service_id}${services.get(r.service_id) ? ` (${services.get(r.service_id)})` : ''}` : ''}${r.service_id && r.upstream_id ? ' ' : ''}${r.upstream_id ? `upstreams/${r.upstream_id}` : ''}</td>
              <${RatesCells} r=${of(r)} lastBucket=${lastBucket} />
            </tr>`,
          )}
          ${shown.length > MAX_ROWS ? html`<tr><td colspan="10" class="muted">${shown.length - MAX_ROWS} more: filter to narrow</td></tr>` : ''}
          ${unmatched && unmatched.requests > 0
            ? html`<tr data-testid="route-row-unmatched" class="muted-row"><td colspan="6">no route matched (404)</td><${RatesCells} r=${unmatched} lastBucket=${lastBucket} /></tr>`
            : ''}
        </tbody>
        <tfoot>
          <tr data-testid="route-total"><td colspan="6">all requests</td><${RatesCells} r=${rates?.total} lastBucket=${lastBucket} /></tr>
        </tfoot>
      </table>
    </section>
  `;
}
