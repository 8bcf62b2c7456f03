import type { ChecksConfig } from '../../config/schema/upstream.ts';

/** What one outcome of a probe or of a real request counts as (lua-resty-healthcheck's counters). */
export type Outcome = 'success' | 'http_failure' | 'tcp_failure' | 'timeout';

/** Thresholds of one kind of check: how many consecutive outcomes flip a node. 0 = that counter is off. */
export interface Thresholds {
  successes: number;
  httpFailures: number;
  tcpFailures: number;
  timeouts: number;
}

export interface ActiveCheck extends Thresholds {
  type: 'http' | 'https' | 'tcp';
  /** ms */
  timeout: number;
  concurrency: number;
  host: string | undefined;
  port: number | undefined;
  method: string;
  path: string;
  body: string;
  verifyCertificate: boolean;
  /** raw header lines, "Name: value" */
  headers: string[];
  /** ms between probes of a healthy node, and of an unhealthy one */
  healthyInterval: number;
  unhealthyInterval: number;
  healthyStatuses: ReadonlySet<number>;
  unhealthyStatuses: ReadonlySet<number>;
}

export interface PassiveCheck extends Thresholds {
  healthyStatuses: ReadonlySet<number>;
  unhealthyStatuses: ReadonlySet<number>;
  /** ms after which a node passive checks took out gets traffic again, when no active check runs */
  readmitAfter: number;
}

/** An upstream's `checks` with APISIX's defaults filled in. */
export interface HealthChecks {
  active: ActiveCheck | undefined;
  passive: PassiveCheck | undefined;
  /**
   * Identity of the checks block: health state (verdicts, counters, probes) survives every change
   * of the upstream that keeps it, and starts over when it changes.
   */
  id: string;
}

/** A stable JSON text (keys sorted), so that `{a, b}` and `{b, a}` are the same checks. */
function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value);
}

const ACTIVE_HEALTHY = [200, 302];
const ACTIVE_UNHEALTHY = [429, 404, 500, 501, 502, 503, 504, 505];
const PASSIVE_HEALTHY = [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308];
const PASSIVE_UNHEALTHY = [429, 500, 503];

/** Compiles a schema-valid `checks` block (defaults as APISIX's schema_def.lua). */
export function compileChecks(checks: ChecksConfig | undefined): HealthChecks | undefined {
  if (checks === undefined || (checks.active === undefined && checks.passive === undefined)) return undefined;
  const a = checks.active;
  const p = checks.passive;
  return {
    id: stableJson(checks),
    active: a && {
      type: a.type ?? 'http',
      timeout: (a.timeout ?? 1) * 1000,
      concurrency: a.concurrency ?? 10,
      host: a.host,
      port: a.port,
      method: a.http_method ?? 'GET',
      path: a.http_path ?? '/',
      body: a.http_req_body ?? '',
      verifyCertificate: a.https_verify_certificate ?? true,
      headers: a.req_headers ?? [],
      healthyInterval: (a.healthy?.interval ?? 1) * 1000,
      unhealthyInterval: (a.unhealthy?.interval ?? 1) * 1000,
      healthyStatuses: new Set(a.healthy?.http_statuses ?? ACTIVE_HEALTHY),
      unhealthyStatuses: new Set(a.unhealthy?.http_statuses ?? ACTIVE_UNHEALTHY),
      successes: a.healthy?.successes ?? 2,
      httpFailures: a.unhealthy?.http_failures ?? 5,
      tcpFailures: a.unhealthy?.tcp_failures ?? 2,
      timeouts: a.unhealthy?.timeouts ?? 3,
    },
    passive: p && {
      healthyStatuses: new Set(p.healthy?.http_statuses ?? PASSIVE_HEALTHY),
      unhealthyStatuses: new Set(p.unhealthy?.http_statuses ?? PASSIVE_UNHEALTHY),
      successes: p.healthy?.successes ?? 5,
      httpFailures: p.unhealthy?.http_failures ?? 5,
      tcpFailures: p.unhealthy?.tcp_failures ?? 2,
      timeouts: p.unhealthy?.timeouts ?? 7,
      readmitAfter: (p.readmit_after ?? 10) * 1000,
    },
  };
}

/** What an HTTP status counts as for a check: success, failure, or nothing (in neither list). */
export function statusOutcome(status: number, check: { healthyStatuses: ReadonlySet<number>; unhealthyStatuses: ReadonlySet<number> }): Outcome | undefined {
  if (check.unhealthyStatuses.has(status)) return 'http_failure';
  if (check.healthyStatuses.has(status)) return 'success';
  return undefined;
}

/**
 * One node's consecutive outcomes (lua-resty-healthcheck's semantics): a success resets the
 * failure counters and a failure the success counter; reaching a threshold flips the node, and a
 * flip starts every counter over. Outcomes that agree with the node's state are not counted.
 */
export class NodeCounters {
  private successes = 0;
  private httpFailures = 0;
  private tcpFailures = 0;
  private timeouts = 0;

  constructor(public healthy = true) {}

  /** Counts an outcome; returns the node's new health when it flipped, else undefined. */
  report(outcome: Outcome, t: Thresholds): boolean | undefined {
    if (outcome === 'success') {
      this.httpFailures = this.tcpFailures = this.timeouts = 0;
      if (this.healthy || t.successes === 0) return undefined;
      if (++this.successes < t.successes) return undefined;
      this.set(true);
      return true;
    }
    this.successes = 0;
    if (!this.healthy) return undefined;
    let reached: boolean;
    if (outcome === 'http_failure') reached = t.httpFailures > 0 && ++this.httpFailures >= t.httpFailures;
    else if (outcome === 'tcp_failure') reached = t.tcpFailures > 0 && ++this.tcpFailures >= t.tcpFailures;
    else reached = t.timeouts > 0 && ++this.timeouts >= t.timeouts;
    if (!reached) return undefined;
    this.set(false);
    return false;
  }

  /** The node was flipped (here or elsewhere): counting starts over. */
  set(healthy: boolean): void {
    this.healthy = healthy;
    this.successes = this.httpFailures = this.tcpFailures = this.timeouts = 0;
  }
}
