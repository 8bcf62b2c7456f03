import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, isIP } from 'node:net';
import type { UpstreamNode } from '../types.ts';
import { statusOutcome, type ActiveCheck, type Outcome } from './checks.ts';

/** What one probe came to: the outcome it counts as (none: a status in neither list) and what was seen. */
export interface ProbeResult {
  outcome: Outcome | undefined;
  /** "200", "ECONNREFUSED", "timeout after 1000 ms" */
  detail: string;
}

/** "Name: value" lines of `req_headers` as a header object (the Host header is set by the probe). */
function headerObject(lines: readonly string[], host: string): Record<string, string> {
  const headers: Record<string, string> = { host, 'user-agent': 'portico-health-check', connection: 'close' };
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return headers;
}

/**
 * Probes one node once, within `check.timeout` in all (connect and response head): TCP checks
 * connect; HTTP(S) checks send `http_method http_path` and read the status. `hostHeader`: the Host
 * the upstream expects (checks.active.host, else the node's host).
 */
export function probe(node: UpstreamNode, check: ActiveCheck, hostHeader: string): Promise<ProbeResult> {
  const port = check.port ?? node.port;
  return new Promise<ProbeResult>((resolve) => {
    let settled = false;
    let cleanup: () => void = () => undefined;
    const settle = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cleanup();
      resolve(result);
    };
    const timer = setTimeout(() => settle({ outcome: 'timeout', detail: `timeout after ${check.timeout} ms` }), check.timeout);
    const failed = (err: Error & { code?: string }) => settle({ outcome: 'tcp_failure', detail: err.code ?? err.message });
    if (check.type === 'tcp') {
      const socket = connect({ host: node.host, port });
      cleanup = () => socket.destroy();
      socket.once('connect', () => settle({ outcome: 'success', detail: 'connected' }));
      socket.once('error', failed);
      return;
    }
    const options = {
      host: node.host,
      port,
      method: check.method,
      path: check.path,
      headers: headerObject(check.headers, hostHeader),
      agent: false as const,
      // TLS: the SNI is the Host (never an IP address), verified unless https_verify_certificate is off
      servername: isIP(hostHeader) === 0 ? hostHeader.replace(/:\d+$/, '') : undefined,
      rejectUnauthorized: check.verifyCertificate,
    };
    const onResponse = (res: IncomingMessage) => {
      res.resume();
      const status = res.statusCode ?? 0;
      settle({ outcome: statusOutcome(status, check), detail: String(status) });
    };
    const req = check.type === 'https' ? httpsRequest(options, onResponse) : httpRequest(options, onResponse);
    cleanup = () => req.destroy();
    req.once('error', failed);
    req.end(check.body === '' ? undefined : check.body);
  });
}
