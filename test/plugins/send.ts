/**
 * Requests for the plugin tests (ip-restriction, uri-blocker, fault-injection, request-id, cors,
 * redirect): node:http on a fresh connection, so a test controls every header (Host, an empty
 * value, OPTIONS) and sees the answer as sent (no redirect following, repeated headers joined).
 */
import assert from 'node:assert/strict';
import { request, type IncomingHttpHeaders } from 'node:http';
import type { GatewayProcess } from '../helpers/gateway.ts';
import { waitUntil } from '../helpers/wait.ts';

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  ms: number;
}

export function send(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body, ms: performance.now() - started }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in 10 s`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Waits until /status rejects each [kind, id] and checks that its reason contains the text. */
export async function expectRejected(gw: GatewayProcess, expected: readonly (readonly [string, string, string])[]): Promise<void> {
  const st = await waitUntil(async () => {
    const s = await gw.status();
    return expected.every(([kind, id]) => s.rejected.some((r) => r.kind === kind && r.id === id)) ? s : undefined;
  }, 5_000, 'the invalid objects to be rejected', 50);
  for (const [kind, id, reason] of expected) {
    const r = st.rejected.find((x) => x.kind === kind && x.id === id)!;
    assert.ok(r.reason.includes(reason), `${kind}/${id}: expected "${reason}" in: ${r.reason}`);
  }
}
