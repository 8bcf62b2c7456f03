import { Type, type Static } from '@sinclair/typebox';
import type { Redis } from 'ioredis';
import { StringEnum } from '../config/schema/common.ts';
import { log } from '../observability/log.ts';
import { compileLimitKey, compileTemplate, rejectedAnswer, scopePrefix, sweepExpired } from './limit-key.ts';
import { definePlugin, type PluginAnswer, type PluginContext } from './types.ts';
import { onFirstUse } from '../lazy-package.ts';

/*
 * limit-count (APISIX): at most `count` requests per `time_window` seconds per key, in fixed
 * windows that start with a key's first request. Every answer carries X-RateLimit-Limit,
 * X-RateLimit-Remaining and X-RateLimit-Reset (seconds left in the window) unless
 * show_limit_quota_header is false.
 *
 * State model. A counter is (count used, window end), found by
 *   <scope of the config>:<key>      or    group:<group>:<key>
 * so it belongs to where the plugin is configured (route r1, service s1, ...), not to one compiled
 * config: a recompile (count raised, any change to the route or elsewhere) keeps the counter, and a
 * new count applies to it at once. Rejected requests are not counted (the counter never exceeds the
 * count in force when it was reached), so raising the count lets requests through at once.
 *
 * policy local: counters in this process (one per worker with proxy.workers > 1), swept when their
 * window has ended. policy redis: counters in Redis, shared by every gateway using it; one ioredis
 * client per (host, port, database, user, password, ssl), shared by every config naming it. A
 * request whose counter cannot be reached (Redis down, timeout) is answered 500
 * {"error_msg":"failed to limit count"}, or let through when allow_degradation is true (APISIX);
 * the outage is logged once, and its end once. The client reconnects by itself.
 */

const CountOrVar = Type.Union([Type.Integer({ exclusiveMinimum: 0 }), Type.String()]);

const schema = Type.Object(
  {
    count: CountOrVar,
    time_window: CountOrVar,
    group: Type.Optional(Type.String()),
    key: Type.String({ default: 'remote_addr' }),
    key_type: StringEnum(['var', 'var_combination', 'constant'] as const, { default: 'var' }),
    rejected_code: Type.Integer({ minimum: 200, maximum: 599, default: 503 }),
    rejected_msg: Type.Optional(Type.String({ minLength: 1 })),
    policy: StringEnum(['local', 'redis', 'redis-cluster'] as const, { default: 'local' }),
    allow_degradation: Type.Boolean({ default: false }),
    show_limit_quota_header: Type.Boolean({ default: true }),
    redis_host: Type.Optional(Type.String({ minLength: 2 })),
    redis_port: Type.Optional(Type.Integer({ minimum: 1 })),
    redis_username: Type.Optional(Type.String({ minLength: 1 })),
    redis_password: Type.Optional(Type.String()),
    redis_database: Type.Optional(Type.Integer({ minimum: 0 })),
    redis_timeout: Type.Optional(Type.Integer({ minimum: 1 })),
    redis_ssl: Type.Optional(Type.Boolean()),
    redis_ssl_verify: Type.Optional(Type.Boolean()),
  },
  {
    // APISIX: policy redis needs redis_host
    if: { properties: { policy: { const: 'redis' } }, required: ['policy'] },
    then: { required: ['redis_host'] },
  },
);

type Conf = Static<typeof schema>;

/** count or time_window: a number, or a "$var" template read per request (APISIX). */
type Amount = number | ((ctx: PluginContext) => number | undefined);

interface Compiled {
  readonly count: Amount;
  readonly timeWindow: Amount;
  readonly keyOf: (ctx: PluginContext) => string;
  /** counter name without the key: "routes/r1" or "group:g" */
  readonly prefix: string;
  readonly rejectedCode: number;
  readonly rejectedMsg: string | undefined;
  readonly allowDegradation: boolean;
  readonly showHeaders: boolean;
  readonly redis: RedisCounter | undefined;
}

/** What one request's check found: allowed or not, and the headers' values. */
interface Verdict {
  readonly allowed: boolean;
  readonly limit: number;
  readonly remaining: number;
  /** ms left in the window */
  readonly resetMs: number;
}

/** ctx.vars entry: the quota headers header_filter sets on the response */
const HEADERS_VAR = 'limit-count.headers';

function compileAmount(value: number | string): Amount {
  if (typeof value === 'number') return value;
  const template = compileTemplate(value);
  return (ctx) => {
    const text = template(ctx).value;
    const n = text.trim() === '' ? NaN : Number(text);
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  };
}

function amount(a: Amount, ctx: PluginContext): number | undefined {
  return typeof a === 'number' ? a : a(ctx);
}

export const limitCount = definePlugin({
  name: 'limit-count',
  priority: 1002,
  schema,
  compile(conf: Conf, scope): Compiled {
    if (conf.policy === 'redis-cluster') throw new Error('/policy: redis-cluster is not supported (use local or redis)');
    return {
      count: compileAmount(conf.count),
      timeWindow: compileAmount(conf.time_window),
      keyOf: compileLimitKey(conf.key_type, conf.key),
      prefix: conf.group !== undefined ? `group:${conf.group}` : scopePrefix(scope),
      rejectedCode: conf.rejected_code,
      rejectedMsg: conf.rejected_msg,
      allowDegradation: conf.allow_degradation,
      showHeaders: conf.show_limit_quota_header,
      // a target only: the client is made on first use (compile also runs to validate a config)
      redis: conf.policy === 'redis' ? redisCounter(conf) : undefined,
    };
  },
  access(c, ctx) {
    const limit = amount(c.count, ctx);
    const windowS = amount(c.timeWindow, ctx);
    if (limit === undefined || windowS === undefined) {
      // APISIX: a count or time_window variable without a positive integer value
      return c.allowDegradation ? undefined : { status: 500 };
    }
    const key = `${c.prefix}:${c.keyOf(ctx)}`;
    if (c.redis === undefined) return answer(c, ctx, countLocally(key, limit, windowS * 1000));
    return c.redis.incoming(key, limit, windowS * 1000).then(
      (verdict) => answer(c, ctx, verdict),
      () => (c.allowDegradation ? undefined : { status: 500, body: { error_msg: 'failed to limit count' } }),
    );
  },
  header_filter(_c, ctx) {
    const headers = ctx.vars.get(HEADERS_VAR) as Record<string, string> | undefined;
    if (headers === undefined || ctx.response === undefined) return;
    for (const name in headers) ctx.response.setHeader(name, headers[name]!);
  },
});

function answer(c: Compiled, ctx: PluginContext, v: Verdict): PluginAnswer | undefined {
  const headers = c.showHeaders
    ? {
        'X-RateLimit-Limit': String(v.limit),
        'X-RateLimit-Remaining': String(v.remaining),
        'X-RateLimit-Reset': String(Math.max(0, Math.ceil(v.resetMs / 1000))),
      }
    : undefined;
  if (headers) ctx.vars.set(HEADERS_VAR, headers);
  if (v.allowed) return undefined;
  const rejected = rejectedAnswer(c.rejectedCode, c.rejectedMsg);
  return headers ? { ...rejected, headers } : rejected;
}

// ---- policy local --------------------------------------------------------------------------

interface Window {
  used: number;
  /** ms since the epoch */
  endsAt: number;
}

const localCounters = new Map<string, Window>();

function countLocally(key: string, limit: number, windowMs: number): Verdict {
  const now = Date.now();
  let w = localCounters.get(key);
  if (w === undefined || w.endsAt <= now) {
    w = { used: 0, endsAt: now + windowMs };
    localCounters.set(key, w);
    sweepExpired(localCounters, (e, t) => e.endsAt <= t);
  }
  if (w.used >= limit) return { allowed: false, limit, remaining: 0, resetMs: w.endsAt - now };
  w.used++;
  return { allowed: true, limit, remaining: limit - w.used, resetMs: w.endsAt - now };
}

// ---- policy redis --------------------------------------------------------------------------

/*
 * One script, so reading, starting a window and counting are atomic across every gateway: a new
 * window (no key, or a key without expiry) starts at 1 with the window's expiry; a full one is
 * left as is (rejections are not counted); otherwise INCR. Returns {used, ms left, rejected}.
 */
const COUNT_SCRIPT = `
local limit = tonumber(ARGV[1])
local ttl = redis.call('pttl', KEYS[1])
if ttl < 0 then
  redis.call('set', KEYS[1], 1, 'PX', ARGV[2])
  return {1, tonumber(ARGV[2]), 0}
end
local used = tonumber(redis.call('get', KEYS[1]) or '0')
if used >= limit then
  return {used, ttl, 1}
end
return {redis.call('incr', KEYS[1]), ttl, 0}
`;

type CountingRedis = Redis & {
  porticoLimitCount(key: string, limit: number, windowMs: number): Promise<[number, number, number]>;
};

/** A shared client and whether it is known to be unreachable (to log an outage once). */
interface SharedClient {
  readonly client: CountingRedis;
  readonly address: string;
  /** the first connection attempt has ended (ready or failed): later, fail fast when not ready */
  settled: boolean;
  down: boolean;
  /** ms since the epoch of the last request that used it */
  lastUsed: number;
}

const clients = new Map<string, SharedClient>();

/*
 * A client no request has used for this long is closed: configs do not say when they stop naming a
 * Redis (compile is not told of removals), so an address taken out of every config must not keep
 * a connection, or reconnection attempts, for the life of the process. Made again on next use.
 */
const CLIENT_IDLE_MS = 5 * 60_000;
let idleSweep: NodeJS.Timeout | undefined;
function sweepIdleClients(): void {
  const now = Date.now();
  for (const [id, s] of clients) {
    if (now - s.lastUsed < CLIENT_IDLE_MS) continue;
    clients.delete(id);
    s.client.disconnect();
  }
}

interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username: string | undefined;
  password: string | undefined;
  timeoutMs: number;
  ssl: boolean;
  sslVerify: boolean;
}

interface RedisCounter {
  incoming(key: string, limit: number, windowMs: number): Promise<Verdict>;
}

function redisCounter(conf: Conf): RedisCounter {
  const target: RedisTarget = {
    host: conf.redis_host!,
    port: conf.redis_port ?? 6379,
    db: conf.redis_database ?? 0,
    username: conf.redis_username,
    password: conf.redis_password === '' ? undefined : conf.redis_password,
    timeoutMs: conf.redis_timeout ?? 1000,
    ssl: conf.redis_ssl ?? false,
    sslVerify: conf.redis_ssl_verify ?? false,
  };
  return {
    async incoming(key, limit, windowMs) {
      const shared = sharedClient(target);
      shared.lastUsed = Date.now();
      try {
        await whenReady(shared, target.timeoutMs);
        const [used, ttl, rejected] = await shared.client.porticoLimitCount(`portico:limit-count:${key}`, limit, windowMs);
        if (shared.down) {
          shared.down = false;
          log.warn({ redis: shared.address }, 'limit-count: redis reachable again, limiting resumes');
        }
        return { allowed: rejected === 0, limit, remaining: rejected === 0 ? Math.max(0, limit - used) : 0, resetMs: ttl };
      } catch (err) {
        if (!shared.down) {
          shared.down = true;
          log.error({ redis: shared.address, err: (err as Error).message }, 'limit-count: redis unreachable, requests are rejected with 500 (or let through where allow_degradation is true) until it is back');
        }
        throw err;
      }
    },
  };
}

/** ioredis, loaded when the first `policy: redis` config compiles (not by every gateway at start). */
const ioredis = onFirstUse<{ Redis: typeof Redis }>('ioredis');
const redisClass = (): typeof Redis => ioredis().Redis;

function sharedClient(t: RedisTarget): SharedClient {
  // the password is part of the identity (two configs with different credentials must not share)
  const id = JSON.stringify([t.host, t.port, t.db, t.username ?? null, t.password ?? null, t.ssl, t.sslVerify, t.timeoutMs]);
  let shared = clients.get(id);
  if (shared) return shared;
  const client = new (redisClass())({
    host: t.host,
    port: t.port,
    db: t.db,
    ...(t.username !== undefined ? { username: t.username } : {}),
    ...(t.password !== undefined ? { password: t.password } : {}),
    ...(t.ssl ? { tls: { rejectUnauthorized: t.sslVerify, servername: t.host } } : {}),
    connectTimeout: t.timeoutMs,
    commandTimeout: t.timeoutMs,
    // while Redis is away a request must be answered now (degraded or 500), not queued: no offline
    // queue, no retries of a command; the connection itself is retried in the background
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(times * 100, 1000),
  }) as CountingRedis;
  client.defineCommand('porticoLimitCount', { numberOfKeys: 1, lua: COUNT_SCRIPT });
  const address = `${t.host}:${t.port}/${t.db}`;
  shared = { client, address, settled: false, down: false, lastUsed: Date.now() };
  idleSweep ??= setInterval(sweepIdleClients, 60_000).unref();
  const s = shared;
  // the end of an outage is logged by the first request counted again (a Redis that hung without
  // dropping the connection never emits 'ready' again)
  client.on('ready', () => {
    s.settled = true;
  });
  // connection errors are reported through the requests that fail (logged once per outage above)
  client.on('error', () => {
    s.settled = true;
  });
  client.on('close', () => {
    s.settled = true;
  });
  clients.set(id, shared);
  return shared;
}

/** Waits for the first connection (at most timeoutMs); afterwards a client not ready fails at once. */
function whenReady(s: SharedClient, timeoutMs: number): Promise<void> {
  if (s.client.status === 'ready') return Promise.resolve();
  if (s.settled) return Promise.reject(new Error(`redis ${s.address} is not connected (${s.client.status})`));
  return new Promise((resolve, reject) => {
    const done = (err?: Error) => {
      clearTimeout(timer);
      s.client.off('ready', onReady).off('error', onError);
      if (err) reject(err);
      else resolve();
    };
    const onReady = () => done();
    const onError = (err: Error) => done(err);
    const timer = setTimeout(() => done(new Error(`redis ${s.address}: no connection after ${timeoutMs} ms`)), timeoutMs);
    s.client.once('ready', onReady).once('error', onError);
  });
}
