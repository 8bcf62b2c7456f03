/// <reference lib="dom" />
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { getJson, HttpError } from './api.ts';
import { html } from './html.ts';
import { trafficRates, type TrafficRates } from './traffic.ts';
import type { FleetView, RoutesView, StatusReport, TrafficSnapshot } from './types.ts';
import { Header, type Connection } from './panels/header.ts';
import { RoutesPanel } from './panels/routes.ts';
import { UpstreamsPanel } from './panels/upstreams.ts';
import { ConfigPanel } from './panels/config.ts';
import { FleetPanel } from './panels/fleet.ts';
import { HistoryPanel } from './panels/history.ts';

const POLL_MS = 1000;
/** the fleet view asks etcd and every instance's status listener: not every second */
const FLEET_MS = 3000;

interface State {
  status?: StatusReport;
  traffic?: TrafficSnapshot;
  rates?: TrafficRates;
  routes?: RoutesView;
  /** null: no fleet view here (file source) */
  fleet?: FleetView | null;
  fleetError?: string;
  conn: Connection;
}

/**
 * Polls the status listener once a second: /status and /status/traffic every time, the objects in
 * force only when the revision moved, the fleet every few seconds. One poll at a time: a slow
 * listener slows the page down instead of piling requests up.
 */
function usePolling(): State {
  const [state, setState] = useState<State>({ conn: { updatedAt: undefined, error: undefined, failingSince: undefined } });
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let s: State = state;
    let routesRevision: number | undefined;
    let fleetAt = 0;
    const tick = async () => {
      const started = Date.now();
      try {
        // /status decides whether the listener answers; the other views may be missing (older gateway)
        const [status, traffic] = await Promise.all([getJson<StatusReport>('/status'), getJson<TrafficSnapshot>('/status/traffic').catch(() => undefined)]);
        let { routes, fleet, fleetError } = s;
        if (status.revision !== routesRevision || !routes) {
          const fresh = await getJson<RoutesView>('/status/routes').catch(() => undefined);
          if (fresh) {
            routes = fresh;
            routesRevision = status.revision;
          }
        }
        if (fleet !== null && status.source === 'etcd' && started - fleetAt >= FLEET_MS) {
          fleetAt = started;
          try {
            fleet = await getJson<FleetView>('/status/fleet');
            fleetError = undefined;
          } catch (err) {
            if (err instanceof HttpError && err.status === 404) fleet = null;
            else fleetError = (err as Error).message;
          }
        } else if (status.source !== 'etcd') fleet = null;
        s = {
          status,
          traffic,
          rates: traffic && trafficRates(s.traffic, traffic),
          routes,
          fleet,
          fleetError,
          conn: { updatedAt: Date.now(), error: undefined, failingSince: undefined },
        };
      } catch (err) {
        // keep what was last seen, say since when it is not fresh; rates restart after the gap
        s = { ...s, rates: undefined, conn: { ...s.conn, error: (err as Error).message, failingSince: s.conn.failingSince ?? Date.now() } };
      }
      if (stopped) return;
      setState(s);
      timer = setTimeout(tick, Math.max(0, POLL_MS - (Date.now() - started)));
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);
  return state;
}

function App() {
  const st = usePolling();
  const lastBucket = st.traffic?.buckets[st.traffic.buckets.length - 1];
  return html`
    <${Header} status=${st.status} conn=${st.conn} />
    <main class=${st.conn.error ? 'stale-data' : ''}>
      <${RoutesPanel} view=${st.routes} rates=${st.rates} lastBucket=${lastBucket} />
      <div class="columns">
        <${UpstreamsPanel} view=${st.routes} status=${st.status} traffic=${st.traffic} rates=${st.rates} />
        <${ConfigPanel} status=${st.status} />
      </div>
      ${st.fleet ? html`<${FleetPanel} fleet=${st.fleet} self=${st.status?.instance_id} error=${st.fleetError} />` : ''}
      <${HistoryPanel} revision=${st.status?.revision} />
    </main>
    <footer class="muted">connections open: <span data-testid="connections">${st.traffic?.connections ?? '-'}</span> · refreshes every second from this gateway's status listener</footer>
  `;
}

const root = document.getElementById('app')!;
// the "Loading…" placeholder of index.html is not preact's to diff: clear it
root.textContent = '';
render(html`<${App} />`, root);
