import { Type, type Static } from '@sinclair/typebox';
import { StringEnum } from '../config/schema/common.ts';
import { compileLimitBasics, delayed, rejectedAnswer, requireLocalPolicy, sweepExpired, type LimitBasics } from './limit-key.ts';
import { definePlugin } from './types.ts';

/*
 * limit-req (APISIX, after nginx's limit_req / lua-resty-limit-traffic's resty.limit.req): a leaky
 * bucket per key draining `rate` requests per second. Each request adds one to the key's excess
 * (after draining what the time since the last request let out):
 *
 *   excess = max(previous excess - rate × seconds since then + 1, 0)    (0 for a key's first request)
 *
 * excess > burst → rejected (rejected_code, default 503); otherwise the request waits excess / rate
 * seconds (the time the bucket needs to let it out), or none with nodelay. So with rate 2 and
 * burst 2, four requests at once: the 1st goes at once, the 2nd waits 0.5 s, the 3rd 1 s, the 4th
 * is rejected.
 *
 * State: one bucket (excess, time of last request) per <scope>:<key>, kept in this process (per
 * worker with proxy.workers > 1) across recompiles: a new rate applies to the bucket as it is.
 * A bucket is swept once it has drained (it then behaves as a new one). Only policy local is
 * implemented; redis and redis-cluster are rejected with the reason.
 */

const schema = Type.Object({
  rate: Type.Number({ exclusiveMinimum: 0 }),
  burst: Type.Number({ minimum: 0 }),
  key: Type.String(),
  key_type: StringEnum(['var', 'var_combination'] as const, { default: 'var' }),
  policy: StringEnum(['redis', 'redis-cluster', 'local'] as const, { default: 'local' }),
  rejected_code: Type.Integer({ minimum: 200, maximum: 599, default: 503 }),
  rejected_msg: Type.Optional(Type.String({ minLength: 1 })),
  nodelay: Type.Boolean({ default: false }),
  allow_degradation: Type.Boolean({ default: false }),
});

type Conf = Static<typeof schema>;

interface Compiled extends LimitBasics {
  readonly rate: number;
  readonly burst: number;
  readonly nodelay: boolean;
}

interface Bucket {
  /** requests waiting in the bucket right after the last request (may be fractional) */
  excess: number;
  /** ms since the epoch of the last request counted */
  last: number;
  /** when the bucket has drained enough to behave as new (swept after) */
  idleAt: number;
}

const buckets = new Map<string, Bucket>();

export const limitReq = definePlugin({
  name: 'limit-req',
  priority: 1001,
  schema,
  compile(conf: Conf, scope): Compiled {
    requireLocalPolicy('limit-req', conf.policy);
    return {
      ...compileLimitBasics(conf, scope),
      rate: conf.rate,
      burst: conf.burst,
      nodelay: conf.nodelay,
    };
  },
  access(c, ctx) {
    const delayS = incoming(`${c.prefix}:${c.keyOf(ctx)}`, c.rate, c.burst);
    if (delayS === undefined) return rejectedAnswer(c.rejectedCode, c.rejectedMsg);
    return c.nodelay ? undefined : delayed(delayS);
  },
});

/** Counts a request: the seconds it must wait, or undefined when rejected (not counted then). */
function incoming(key: string, rate: number, burst: number): number | undefined {
  const now = Date.now();
  const b = buckets.get(key);
  let excess = 0;
  if (b !== undefined) {
    excess = Math.max(b.excess - (rate * Math.abs(now - b.last)) / 1000 + 1, 0);
    if (excess > burst) return undefined;
  }
  // drained enough that the next request would start from 0, as a new bucket does
  const idleAt = now + ((excess + 1) / rate) * 1000;
  if (b === undefined) {
    buckets.set(key, { excess, last: now, idleAt });
    sweepExpired(buckets, (e, t) => e.idleAt <= t);
  } else {
    b.excess = excess;
    b.last = now;
    b.idleAt = idleAt;
  }
  return excess / rate;
}
