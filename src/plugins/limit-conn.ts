import { Type, type Static } from '@sinclair/typebox';
import { StringEnum } from '../config/schema/common.ts';
import { compileLimitBasics, compileTemplate, delayed, rejectedAnswer, requireLocalPolicy, type LimitBasics } from './limit-key.ts';
import { definePlugin, type PluginContext } from './types.ts';

/*
 * limit-conn (APISIX, after lua-resty-limit-traffic's resty.limit.conn): at most `conn` requests
 * in progress per key, plus `burst` more that are delayed; beyond conn + burst a request is
 * rejected (rejected_code, default 503). A request is counted in access and uncounted in log (which
 * runs once the response is sent or the client has left). The n-th concurrent request over `conn`
 * waits unit_delay × floor((n − 1) / conn) seconds; unit_delay starts at default_conn_delay and,
 * unless only_use_default_delay, follows the requests' latency (the mean of itself and each
 * finished request's time, as resty.limit.conn does).
 *
 * State: a count per <scope>:<key> (deleted at 0, so it never outgrows the requests in progress)
 * and a unit delay per scope, kept in this process (per worker with proxy.workers > 1) across
 * recompiles. A request remembers which counter it took (ctx.vars), so a config change while it
 * runs still releases the right one. Only policy local is implemented; redis and redis-cluster are
 * rejected with the reason.
 */

const IntOrVar = (min: { exclusiveMinimum: number } | { minimum: number }) => Type.Union([Type.Integer(min), Type.String()]);

const schema = Type.Object({
  conn: IntOrVar({ exclusiveMinimum: 0 }),
  burst: IntOrVar({ minimum: 0 }),
  default_conn_delay: Type.Number({ exclusiveMinimum: 0 }),
  only_use_default_delay: Type.Boolean({ default: false }),
  key: Type.String(),
  key_type: StringEnum(['var', 'var_combination'] as const, { default: 'var' }),
  policy: StringEnum(['redis', 'redis-cluster', 'local'] as const, { default: 'local' }),
  rejected_code: Type.Integer({ minimum: 200, maximum: 599, default: 503 }),
  rejected_msg: Type.Optional(Type.String({ minLength: 1 })),
  allow_degradation: Type.Boolean({ default: false }),
});

type Conf = Static<typeof schema>;

type Amount = number | ((ctx: PluginContext) => number | undefined);

interface Compiled extends LimitBasics {
  readonly conn: Amount;
  readonly burst: Amount;
  readonly defaultDelay: number;
  readonly onlyDefaultDelay: boolean;
  readonly allowDegradation: boolean;
}

/** What a request took, to give back in log. */
interface Taken {
  readonly key: string;
  readonly prefix: string;
  /** seconds it was delayed */
  readonly delay: number;
  readonly defaultDelay: number;
  readonly onlyDefaultDelay: boolean;
}

/** ctx.vars entry: the counters this request holds (a global rule's and a route's limit-conn) */
const TAKEN_VAR = 'limit-conn.taken';

const inProgress = new Map<string, number>();
/** per scope: the current unit delay (s), and the default it started from */
const unitDelays = new Map<string, { delay: number; from: number }>();

function compileAmount(value: number | string, min: number): Amount {
  if (typeof value === 'number') return value;
  const template = compileTemplate(value);
  return (ctx) => {
    const text = template(ctx).value;
    const n = text.trim() === '' ? NaN : Number(text);
    return Number.isSafeInteger(n) && n >= min ? n : undefined;
  };
}

function unitDelay(prefix: string, defaultDelay: number): { delay: number; from: number } {
  let u = unitDelays.get(prefix);
  // a changed default_conn_delay starts over from the new default
  if (u === undefined || u.from !== defaultDelay) {
    u = { delay: defaultDelay, from: defaultDelay };
    unitDelays.set(prefix, u);
  }
  return u;
}

export const limitConn = definePlugin({
  name: 'limit-conn',
  priority: 1003,
  schema,
  compile(conf: Conf, scope): Compiled {
    requireLocalPolicy('limit-conn', conf.policy);
    return {
      ...compileLimitBasics(conf, scope),
      conn: compileAmount(conf.conn, 1),
      burst: compileAmount(conf.burst, 0),
      defaultDelay: conf.default_conn_delay,
      onlyDefaultDelay: conf.only_use_default_delay,
      allowDegradation: conf.allow_degradation,
    };
  },
  access(c, ctx) {
    const conn = typeof c.conn === 'number' ? c.conn : c.conn(ctx);
    const burst = typeof c.burst === 'number' ? c.burst : c.burst(ctx);
    if (conn === undefined || burst === undefined) return c.allowDegradation ? undefined : { status: 500 };
    const key = `${c.prefix}:${c.keyOf(ctx)}`;
    const n = (inProgress.get(key) ?? 0) + 1;
    if (n > conn + burst) return rejectedAnswer(c.rejectedCode, c.rejectedMsg);
    inProgress.set(key, n);
    const delay = n > conn ? unitDelay(c.prefix, c.defaultDelay).delay * Math.floor((n - 1) / conn) : 0;
    let taken = ctx.vars.get(TAKEN_VAR) as Taken[] | undefined;
    if (taken === undefined) ctx.vars.set(TAKEN_VAR, (taken = []));
    taken.push({ key, prefix: c.prefix, delay, defaultDelay: c.defaultDelay, onlyDefaultDelay: c.onlyDefaultDelay });
    return delayed(delay);
  },
  log(_c, ctx) {
    const taken = ctx.vars.get(TAKEN_VAR) as Taken[] | undefined;
    if (taken === undefined) return;
    // every limit-conn of the request is released by the first log: the list is emptied
    ctx.vars.delete(TAKEN_VAR);
    const elapsed = (Date.now() - ctx.startedAt) / 1000;
    for (const t of taken) {
      const n = (inProgress.get(t.key) ?? 1) - 1;
      if (n <= 0) inProgress.delete(t.key);
      else inProgress.set(t.key, n);
      if (!t.onlyDefaultDelay) {
        // resty.limit.conn: unit_delay = (latency + unit_delay) / 2, latency without the delay
        const u = unitDelay(t.prefix, t.defaultDelay);
        u.delay = (Math.max(0, elapsed - t.delay) + u.delay) / 2;
      }
    }
  },
});
