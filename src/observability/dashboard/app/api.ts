/// <reference lib="dom" />
// Same-origin requests to the status listener, each bounded in time: a listener that stops
// answering must show as such within a poll or two, not leave requests hanging.

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const TIMEOUT_MS = 3000;

export async function getJson<T>(path: string, init: RequestInit = {}, timeoutMs = TIMEOUT_MS): Promise<T> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  try {
    const res = await fetch(path, { cache: 'no-store', ...init, signal: ctl.signal });
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!res.ok) {
      const msg = (body as { error_msg?: string } | undefined)?.error_msg ?? (text.slice(0, 200) || res.statusText);
      throw new HttpError(res.status, msg);
    }
    return body as T;
  } catch (err) {
    if (ctl.signal.aborted) throw new Error(`${path}: no answer within ${timeoutMs} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** The Admin API forwarded by the status listener: the key goes in a header, never in the URL. */
export function adminJson<T>(path: string, key: string, init: RequestInit = {}): Promise<T> {
  const headers: Record<string, string> = { 'X-API-KEY': key };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  return getJson<T>(`/portico/admin/${path}`, { ...init, headers }, 15_000);
}
