/// <reference lib="dom" />
import { html } from '../html.ts';
import { ago, count, dateTime } from '../format.ts';
import type { StatusReport } from '../types.ts';

type Rejected = StatusReport['rejected'][number];

/** the reason text: `reason` in RejectionRecord (older notes call it `message`) */
const reasonOf = (r: Rejected) => r.reason ?? (r as { message?: string }).message ?? '';

/** What is in force by kind, what was rejected and why, and certificates about to expire. */
export function ConfigPanel({ status }: { status: StatusReport | undefined }) {
  if (!status) return html`<section class="panel" data-testid="config-panel"><h2>Config</h2><p class="muted">loading…</p></section>`;
  const failures = Object.entries(status.plugin_failures ?? {}).filter(([, n]) => n > 0);
  return html`
    <section class="panel" data-testid="config-panel">
      <h2>Config</h2>
      <div class="counts" data-testid="counts">
        ${Object.entries(status.counts).map(
          ([kind, n]) => html`<div class=${`count ${n === 0 ? 'zero' : ''}`} data-testid=${`count-${kind}`}><b>${count(n)}</b> ${kind}</div>`,
        )}
      </div>
      <h3>Rejected <span class=${`badge ${status.rejected.length ? 'bad' : 'ok'}`} data-testid="rejected-count">${status.rejected.length}</span></h3>
      ${status.rejected.length === 0
        ? html`<p class="muted">every object the source sent is in force</p>`
        : html`<table class="grid">
            <thead><tr><th>object</th><th>code</th><th>reason</th><th>when</th></tr></thead>
            <tbody>
              ${status.rejected.map(
                (r) => html`<tr key=${`${r.kind}/${r.id}`} data-testid=${`rejected-${r.kind}-${r.id}`}>
                  <td class="mono">${r.kind}/${r.id}</td>
                  <td class="mono">${r.code}</td>
                  <td class="reason" data-testid="reason">${reasonOf(r)}</td>
                  <td class="nowrap" title=${`${dateTime(r.at)}, source revision ${r.modRevision}`}>${ago(r.at)}</td>
                </tr>`,
              )}
            </tbody>
          </table>`}
      ${failures.length
        ? html`<h3>Plugin failures</h3><p>${failures.map(([p, n]) => html`<span class="badge bad">${p}: ${count(n)}</span> `)}</p>`
        : ''}
      ${status.tls_refusals && (status.tls_refusals.no_certificate || status.tls_refusals.refused)
        ? html`<p class="muted">TLS refused: ${count(status.tls_refusals.no_certificate)} without a certificate for the SNI, ${count(status.tls_refusals.refused)} in or after the handshake</p>`
        : ''}
      ${status.certificates?.length
        ? html`<h3>Certificates</h3>
            <table class="grid">
              <thead><tr><th>ssl</th><th>SNIs</th><th>type</th><th>expires</th><th class="num">days left</th></tr></thead>
              <tbody>
                ${status.certificates.map(
                  (c) => html`<tr key=${c.id} data-testid=${`certificate-${c.id}`} class=${c.enabled ? '' : 'disabled'}>
                    <td class="mono">${c.id}</td><td class="mono">${c.snis.join(' ')}</td><td>${c.type}</td><td>${dateTime(c.not_after)}</td>
                    <td class=${`num ${c.days_left < 0 ? 'bad-text' : c.days_left < 14 ? 'warn-text' : ''}`}>${c.days_left}</td>
                  </tr>`,
                )}
              </tbody>
            </table>`
        : ''}
    </section>
  `;
}
