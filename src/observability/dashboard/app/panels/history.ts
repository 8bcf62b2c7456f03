/// <reference lib="dom" />
import { useEffect, useState } from 'preact/hooks';
import { adminJson, getJson, HttpError } from '../api.ts';
import { html } from '../html.ts';
import { dateTime } from '../format.ts';
import type { ConfigDiff, HistoryEntry, HistoryResult, RollbackResult, WhoAmI } from '../types.ts';

/** sessionStorage, not localStorage: the key goes when the tab closes; never in the URL */
const KEY_ITEM = 'portico.adminKey';

function storedKey(): string {
  try {
    return sessionStorage.getItem(KEY_ITEM) ?? '';
  } catch {
    return '';
  }
}
function storeKey(key: string): void {
  try {
    if (key) sessionStorage.setItem(KEY_ITEM, key);
    else sessionStorage.removeItem(KEY_ITEM);
  } catch {
    /* storage disabled: the key lives in this page only */
  }
}

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
const json = (v: unknown) => JSON.stringify(v);

/** the value at an RFC 6901 JSON pointer (undefined when absent) */
function pointer(doc: unknown, path: string): unknown {
  let v = doc;
  for (const raw of path.split('/').slice(1)) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return v;
}

function DiffView({ diff }: { diff: ConfigDiff }) {
  const lines: Array<[string, string]> = [];
  for (const o of diff.added) lines.push(['add', `+ ${o.kind}/${o.id} ${json(o.value)}`]);
  for (const o of diff.removed) lines.push(['del', `- ${o.kind}/${o.id}`]);
  for (const c of diff.changed) {
    lines.push(['chg', `~ ${c.kind}/${c.id}`]);
    for (const p of c.patch) {
      const was = p.op === 'add' ? undefined : pointer(c.from.value, p.path);
      lines.push(['chg', `    ${p.op} ${p.path}${'value' in p ? ` ${json(p.value)}` : ''}${was === undefined ? '' : ` (was ${json(was)})`}`]);
    }
  }
  if (lines.length === 0) lines.push(['', '(no change to the config between these revisions)']);
  return html`<pre class="diff">${lines.map(([cls, text]) => html`<div class=${cls}>${text}</div>`)}</pre>`;
}

/**
 * The config history from the Admin API (forwarded by the status listener): who changed what, the
 * diff of each change, and a rollback for admin keys. Absent when the gateway has no `admin` section.
 */
export function HistoryPanel({ revision }: { revision: number | undefined }) {
  /** undefined: not known yet; false: no Admin API behind this status listener */
  const [available, setAvailable] = useState<boolean | undefined>(undefined);
  const [key, setKey] = useState(storedKey);
  const [draft, setDraft] = useState('');
  /** the key's owner, with the key it was asked for: a request never goes out with a key not (yet) known */
  const [auth, setAuth] = useState<{ key: string; me: WhoAmI } | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [history, setHistory] = useState<HistoryResult | undefined>(undefined);
  const [open, setOpen] = useState<Record<number, ConfigDiff | string | undefined>>({});
  const [confirming, setConfirming] = useState<number | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<string | undefined>(undefined);

  // is there an Admin API? 401 without a key says yes, 404 says no
  useEffect(() => {
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const probe = async () => {
      const features = await getJson<{ admin: boolean | null }>('/dashboard/features.json').catch(() => ({ admin: null }));
      if (stop) return;
      if (features.admin !== null) return setAvailable(features.admin);
      return getJson('/portico/admin/whoami').then(
        () => !stop && setAvailable(true),
        (err) => {
          if (stop) return;
          if (err instanceof HttpError && err.status === 404) setAvailable(false);
          else if (err instanceof HttpError) setAvailable(true);
          else timer = setTimeout(probe, 5000);
        },
      );
    };
    void probe();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, []);

  // who is this key?
  useEffect(() => {
    setAuth(undefined);
    if (!available || !key) return;
    let stop = false;
    adminJson<WhoAmI>('whoami', key).then(
      (me) => {
        if (stop) return;
        setAuth({ key, me });
        setError(undefined);
      },
      (err) => {
        if (stop) return;
        setError(err instanceof HttpError && err.status === 401 ? 'this key is not accepted' : message(err));
      },
    );
    return () => {
      stop = true;
    };
  }, [available, key]);

  // the history, again whenever the served revision moves
  useEffect(() => {
    if (!auth) {
      setHistory(undefined);
      return;
    }
    let stop = false;
    adminJson<HistoryResult>('history?limit=50', auth.key).then(
      (h) => {
        if (stop) return;
        setHistory(h);
        setError(undefined);
      },
      (err) => !stop && setError(message(err)),
    );
    return () => {
      stop = true;
    };
  }, [auth, revision]);

  if (available !== true) return null;
  const who = auth?.key === key ? auth.me : undefined;

  const useKey = (e: Event) => {
    e.preventDefault();
    const k = draft.trim();
    storeKey(k);
    setKey(k);
    setDraft('');
    setResult(undefined);
  };
  const forget = () => {
    storeKey('');
    setKey('');
    setError(undefined);
    setResult(undefined);
  };
  const toggleDiff = (rev: number) => {
    if (open[rev] !== undefined) {
      const next = { ...open };
      delete next[rev];
      setOpen(next);
      return;
    }
    setOpen({ ...open, [rev]: 'loading…' });
    if (!auth) return;
    adminJson<ConfigDiff>(`diff?from=${rev - 1}&to=${rev}`, auth.key).then(
      (d) => setOpen((o) => (rev in o ? { ...o, [rev]: d } : o)),
      (err) => setOpen((o) => (rev in o ? { ...o, [rev]: message(err) } : o)),
    );
  };
  const rollback = (rev: number) => {
    if (!auth) return;
    setBusy(true);
    adminJson<RollbackResult>('rollback', auth.key, { method: 'POST', body: JSON.stringify({ revision: rev }) })
      .then(
        (r) =>
          setResult(
            `rolled back to revision ${rev}: now revision ${r.revision}` +
              (r.restored.length ? `, restored ${r.restored.join(', ')}` : '') +
              (r.deleted.length ? `, deleted ${r.deleted.join(', ')}` : '') +
              (r.restored.length + r.deleted.length === 0 ? ' (nothing to change)' : ''),
          ),
        (err) => setResult(`rollback refused: ${message(err)}`),
      )
      .finally(() => {
        setBusy(false);
        setConfirming(undefined);
      });
  };
  const readOnly = who?.role !== 'admin';

  return html`
    <section class="panel" data-testid="history-panel">
      <div class="panel-head">
        <h2>History ${who ? html`<span class="muted" data-testid="whoami">as ${who.name} (${who.role}${readOnly ? ', read-only' : ''})</span>` : ''}</h2>
        ${key
          ? html`<button type="button" onClick=${forget} data-testid="admin-forget">forget key</button>`
          : html`<form class="key" onSubmit=${useKey}>
              <input type="password" autocomplete="off" placeholder="Admin API key" value=${draft} onInput=${(e: Event) => setDraft((e.target as HTMLInputElement).value)} data-testid="admin-key" />
              <button type="submit" data-testid="admin-key-use">use key</button>
            </form>`}
      </div>
      ${!key ? html`<p class="muted">An Admin API key shows the config history (viewer), and lets an admin roll back. It is kept in this tab only.</p>` : ''}
      ${error ? html`<div class="banner bad" data-testid="admin-error">${error}</div>` : ''}
      ${result ? html`<div class=${`banner ${result.startsWith('rollback refused') ? 'bad' : 'ok'}`} data-testid="rollback-result">${result}</div>` : ''}
      ${history &&
      html`<table class="grid">
        <thead><tr><th class="num">revision</th><th>when</th><th>object</th><th>op</th><th>by</th><th></th></tr></thead>
        <tbody>
          ${history.entries.length === 0 ? html`<tr><td colspan="6" class="muted">no changes in revisions ${history.fromRevision}–${history.toRevision}</td></tr>` : ''}
          ${history.entries.map((e: HistoryEntry) => {
            const diff = open[e.revision];
            return html`
              <tr key=${e.revision + e.kind + e.id} data-testid=${`history-entry-${e.revision}`}>
                <td class="num">${e.revision}</td>
                <td>${dateTime(e.time)}</td>
                <td class="mono">${e.kind}/${e.id}</td>
                <td>${e.op}</td>
                <td>${e.by ? `${e.by.key_name} (${e.by.role})` : html`<span class="muted">outside the Admin API</span>`}</td>
                <td class="actions">
                  <button type="button" onClick=${() => toggleDiff(e.revision)} data-testid=${`diff-toggle-${e.revision}`}>${diff === undefined ? 'diff' : 'hide'}</button>
                  <button type="button" disabled=${readOnly || busy} title=${readOnly ? 'a viewer key is read-only' : `write the config as it was at revision ${e.revision} back`}
                    onClick=${() => setConfirming(e.revision)} data-testid=${`rollback-${e.revision}`}>roll back to here</button>
                </td>
              </tr>
              ${confirming === e.revision
                ? html`<tr class="confirm" data-testid="rollback-confirm-row"><td colspan="6">
                    Roll the whole config back to revision ${e.revision}, as it was right after this change? Every instance applies it at once.
                    <button type="button" class="danger" disabled=${busy} onClick=${() => rollback(e.revision)} data-testid="rollback-confirm">roll back</button>
                    <button type="button" disabled=${busy} onClick=${() => setConfirming(undefined)} data-testid="rollback-cancel">cancel</button>
                  </td></tr>`
                : ''}
              ${diff !== undefined
                ? html`<tr class="diff-row" data-testid=${`diff-${e.revision}`}><td colspan="6">${typeof diff === 'string' ? html`<span class="muted">${diff}</span>` : html`<${DiffView} diff=${diff} />`}</td></tr>`
                : ''}
            `;
          })}
        </tbody>
      </table>
      ${history.truncated ? html`<p class="muted">older revisions not searched</p>` : ''}`}
    </section>
  `;
}
