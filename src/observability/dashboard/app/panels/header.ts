/// <reference lib="dom" />
import { html } from '../html.ts';
import { ago, clock, dateTime } from '../format.ts';
import type { StatusReport } from '../types.ts';

export interface Connection {
  /** Date.now() of the last answered poll */
  updatedAt: number | undefined;
  /** why the last poll failed (undefined: it did not) */
  error: string | undefined;
  /** since when polls fail */
  failingSince: number | undefined;
}

const badge = (cls: string, text: string, testid: string, title = '') => html`<span class=${`badge ${cls}`} data-testid=${testid} title=${title}>${text}</span>`;

/** Who this instance is, what it serves, and whether the page is up to date. */
export function Header({ status, conn }: { status: StatusReport | undefined; conn: Connection }) {
  const s = status;
  return html`
    <header class="top">
      <div class="brand">Portico<span class="sub">dashboard</span></div>
      ${s &&
      html`<dl class="facts">
        <div><dt>instance</dt><dd data-testid="instance">${s.instance_id}</dd></div>
        <div><dt>version</dt><dd data-testid="version">${s.version}</dd></div>
        <div><dt>source</dt><dd><span data-testid="source">${s.source}</span>${s.source_detail ? html` <span class="muted" title="source detail">${s.source_detail}</span>` : ''}</dd></div>
        <div><dt>revision</dt><dd data-testid="revision">${s.revision}</dd></div>
        <div><dt>last applied</dt><dd data-testid="last-applied" title=${s.last_applied ?? ''}>${dateTime(s.last_applied)}</dd></div>
        <div class="badges">
          ${s.ready ? badge('ok', 'ready', 'ready') : badge('bad', 'not ready', 'ready')}
          ${s.stale ? badge('warn', s.from_snapshot ? 'stale (snapshot)' : 'stale', 'stale', 'what is served may differ from the source') : ''}
          ${s.connected
            ? badge('ok', 'connected', 'connected', `since ${s.connected_since}`)
            : badge('bad', 'disconnected', 'connected', `since ${s.connected_since}`)}
          ${s.workers ? badge('info', `${s.workers.filter((w) => w.listening).length}/${s.workers.length} workers`, 'workers', s.workers.map((w) => `pid ${w.pid}: revision ${w.revision ?? '-'}`).join('\n')) : ''}
        </div>
      </dl>`}
      <div class="updated">
        ${conn.error
          ? html`<span class="badge bad" data-testid="offline" title=${conn.error}>status listener not answering${conn.failingSince ? ` since ${clock(conn.failingSince)}` : ''}</span>`
          : ''}
        <span data-testid="updated">${conn.updatedAt ? `updated ${clock(conn.updatedAt)}` : 'waiting for the status listener…'}</span>
      </div>
    </header>
    ${s?.source_error &&
    html`<div class="banner bad" data-testid="source-error"><b>${s.source_error.code}</b> ${s.source_error.message}
      ${s.connected_since ? html` <span class="muted">(${ago(s.connected_since)})</span>` : ''}</div>`}
  `;
}
