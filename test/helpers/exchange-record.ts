import type { ExchangeRecord } from '../../src/observability/exchange.ts';

/**
 * A finished request as the transports record it, for observer tests: a plain GET answered 200
 * with no route, no upstream and no trace; `fields` sets what a test is about.
 */
export function exchangeRecord(fields: Partial<ExchangeRecord> = {}): ExchangeRecord {
  return {
    time: 1_700_000_000_000,
    start: 0,
    duration: 0.01,
    clientAddress: '127.0.0.1',
    clientPort: 40000,
    method: 'GET',
    host: 'example.com',
    uri: '/',
    protocol: 'HTTP/1.1',
    status: 200,
    bytesIn: 0,
    bytesOut: 0,
    aborted: false,
    routeId: '',
    serviceId: '',
    upstream: '',
    upstreamAddr: '',
    upstreamStatus: 0,
    failedAttempts: undefined,
    upstreamDuration: -1,
    consumer: '',
    requestId: '',
    traceId: '',
    referer: '',
    userAgent: '',
    ...fields,
  };
}
