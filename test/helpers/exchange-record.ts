import type { ExchangeRecord } from '../../src/observability/exchange.ts';
import { RequestObservers } from '../../src/observability/observers.ts';

/** No traffic, log or tracer: begin() only builds the record, as the transports get it. */
const bare = new RequestObservers(undefined, undefined, undefined);

/**
 * A finished request as the transports record it, for observer tests: a plain GET answered 200
 * with no route, no upstream and no trace (the fields as RequestObservers.begin() starts them, at
 * a fixed time); `fields` sets what a test is about.
 */
export function exchangeRecord(fields: Partial<ExchangeRecord> = {}): ExchangeRecord {
  return {
    ...bare.begin('GET', '/', 'example.com', '1.1', '127.0.0.1', 40000, []),
    time: 1_700_000_000_000,
    start: 0,
    duration: 0.01,
    status: 200,
    ...fields,
  };
}
