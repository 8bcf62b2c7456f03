/// <reference lib="dom" />
import { html } from '../html.ts';
import { ago, dateTime, plural } from '../format.ts';
import type { FleetView } from '../types.ts';

/** Every instance registered in etcd and whether it serves the newest config change. */
export function FleetPanel({ fleet, self, error }: { fleet: FleetView; self: string | undefined; error: string | undefined }) {
  const behind = fleet.instances.filter((i) => !i.converged).length;
  return html`
    <section class="panel" data-testid="fleet-panel">
      <h2>Fleet <span class="muted">${plural(fleet.instances.length, 'instance')}, config revision ${fleet.configRevision}${fleet.approximate ? ' (approximate)' : ''}, etcd revision ${fleet.etcdRevision}</span>
        ${behind ? html`<span class="badge warn">${behind} behind</span>` : html`<span class="badge ok">converged</span>`}
        ${error ? html`<span class="badge bad" title=${error}>not refreshed</span>` : ''}</h2>
      <table class="grid">
        <thead><tr><th>instance</th><th>host</th><th>proxy</th><th>status</th><th>version</th><th class="num">revision</th><th>state</th><th class="num">rejected</th><th>started</th></tr></thead>
        <tbody>
          ${fleet.instances.map(
            (i) => html`<tr key=${i.instance_id} data-testid=${`fleet-${i.instance_id}`} class=${i.instance_id === self ? 'self' : ''}>
              <td class="mono">${i.instance_id}${i.instance_id === self ? html` <span class="badge info">this one</span>` : ''}</td>
              <td>${i.hostname} <span class="muted">pid ${i.pid}</span></td>
              <td class="mono">${i.address.join(' ')}</td>
              <td class="mono">${i.status_address}</td>
              <td>${i.version}</td>
              <td class="num" title=${i.from === 'record' ? `from its etcd record (${dateTime(i.updated_at)})` : 'asked live'}>${i.revision}${i.from === 'record' ? '*' : ''}</td>
              <td>
                ${i.converged ? html`<span class="badge ok">converged</span>` : html`<span class="badge warn">behind</span>`}
                ${i.ready ? '' : html` <span class="badge bad">not ready</span>`}
                ${i.stale ? html` <span class="badge warn">stale</span>` : ''}
              </td>
              <td class=${`num ${i.rejected ? 'bad-text' : ''}`}>${i.rejected}</td>
              <td title=${dateTime(i.started_at)}>${ago(i.started_at)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>
  `;
}
