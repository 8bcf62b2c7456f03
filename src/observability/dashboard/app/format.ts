/// <reference lib="dom" />
export const pad2 = (n: number) => String(n).padStart(2, '0');

/** hh:mm:ss of a time, local clock */
export function clock(t: number | Date): string {
  const d = typeof t === 'number' ? new Date(t) : t;
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** "2026-11-26 17:03:04" from an ISO time (local clock), "-" when none */
export function dateTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${clock(d)}`;
}

/** "12 s ago", "3 min ago" */
export function ago(at: number | string, now = Date.now()): string {
  const t = typeof at === 'number' ? at : Date.parse(at);
  if (Number.isNaN(t)) return '-';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function rate(perSecond: number | undefined): string {
  if (perSecond === undefined) return '-';
  if (perSecond === 0) return '0';
  if (perSecond < 10) return perSecond.toFixed(1);
  return Math.round(perSecond).toLocaleString('en-US');
}

export function percent(share: number, requests: number): string {
  if (!requests) return '-';
  const p = share * 100;
  return p === 0 ? '0%' : p < 0.1 ? '<0.1%' : p < 10 ? `${p.toFixed(1)}%` : `${Math.round(p)}%`;
}

/** a duration bound in seconds: "≤ 5 ms", "> 10 s" (above the last bucket), "-" (no requests) */
export function bound(seconds: number | null, lastBucket: number | undefined): string {
  if (seconds === null) return '-';
  if (seconds === Infinity) return lastBucket === undefined ? '-' : `> ${duration(lastBucket)}`;
  return `≤ ${duration(seconds)}`;
}

export function duration(seconds: number): string {
  if (seconds < 0.001) return `${Math.round(seconds * 1e6)} µs`;
  if (seconds < 1) return `${+(seconds * 1000).toPrecision(3)} ms`;
  return `${+seconds.toPrecision(3)} s`;
}

export const count = (n: number) => n.toLocaleString('en-US');

export const plural = (n: number, noun: string) => `${count(n)} ${noun}${n === 1 ? '' : 's'}`;
