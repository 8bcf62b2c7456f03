import { setTimeout as sleep } from 'node:timers/promises';
import { knownVarReader, SUPPORTED_VARS, type VarReader } from './nginx-var.ts';
import type { PluginAnswer, PluginContext, PluginScope } from './types.ts';

/*
 * What the rate-limiting plugins (limit-count, limit-req, limit-conn) share: turning `key_type` +
 * `key` into the string a request is counted under, bounding the module-level state they keep, and
 * the answers they share (rejection, delay, unsupported policy).
 *
 * The key is resolved like APISIX's `ctx.var[key]` (key_type var) or `core.utils.resolve_var`
 * (var_combination: "$remote_addr $http_x_user", `${name}`, `${name ?? default}`); a key that
 * resolves to nothing falls back to the client's address, as APISIX does. Variable names are
 * resolved once, at compile: a name Portico cannot provide is a config error (like route `vars`),
 * not a key that is silently always nil.
 */

/**
 * The getter for an APISIX/nginx variable name (nginx-var.ts's reader); throws for a name Portico
 * does not provide, where nginx-var.ts reads it as absent.
 */
export function compileVar(name: string): VarReader {
  // an empty query is nil here, so a key on it falls back to the client's address instead of
  // counting every request without a query under one key ("")
  if (name === 'args' || name === 'query_string') return (ctx) => ctx.request.query || undefined;
  const read = knownVarReader(name);
  if (read === undefined) throw new Error(`unsupported variable '${name}'; supported: ${SUPPORTED_VARS}`);
  return read;
}

/** A "$a-$b" template resolved per request: the text, and how many variables had a value. */
export type TemplateResolver = (ctx: PluginContext) => { value: string; resolved: number };

// APISIX's pattern: `$name` (word chars and dots) or `${ name }`, not after a backslash
const VAR_REF = /(?<!\\)\$(?:\{\s*([^}]+?)\s*\}|([\w.]+))/g;

/** Compiles an APISIX `resolve_var` template; throws for an unsupported variable. */
export function compileTemplate(template: string): TemplateResolver {
  const literals: string[] = [];
  const vars: { get: VarReader; fallback: string | undefined }[] = [];
  let last = 0;
  for (const m of template.matchAll(VAR_REF)) {
    literals.push(template.slice(last, m.index));
    const spec = (m[1] ?? m[2])!;
    // `${name ?? default}`: the default counts as resolved, as in APISIX
    const [name, fallback] = spec.split(/\s*\?\?\s*/, 2) as [string, string | undefined];
    vars.push({ get: compileVar(name), fallback });
    last = m.index + m[0].length;
  }
  literals.push(template.slice(last));
  if (vars.length === 0) return () => ({ value: template, resolved: 0 });
  return (ctx) => {
    let value = literals[0]!;
    let resolved = 0;
    for (let i = 0; i < vars.length; i++) {
      const v = vars[i]!.get(ctx) ?? vars[i]!.fallback;
      if (v !== undefined) {
        resolved++;
        value += v;
      }
      value += literals[i + 1]!;
    }
    return { value, resolved };
  };
}

export type KeyType = 'var' | 'var_combination' | 'constant';

/**
 * The function giving a request's limit key (without any scope prefix). APISIX: var → ctx.var[key];
 * var_combination → the template, nil when no variable resolved; constant → the key as written;
 * nil → the client's address.
 */
export function compileLimitKey(keyType: KeyType, key: string): (ctx: PluginContext) => string {
  if (keyType === 'constant') return () => key;
  if (keyType === 'var_combination') {
    const template = compileTemplate(key);
    return (ctx) => {
      const r = template(ctx);
      return r.resolved === 0 ? ctx.request.clientAddress : r.value;
    };
  }
  const get = compileVar(key);
  return (ctx) => get(ctx) ?? ctx.request.clientAddress;
}

/**
 * The prefix of every counter of one plugin config: where the config lives, not its content, so a
 * changed config (a raised count, another rejected_code) keeps counting where it was. APISIX keys
 * by a hash of the plugin's config instead, which resets the counter on every change of that config.
 */
export function scopePrefix(scope: PluginScope): string {
  return `${scope.kind}/${scope.id}`;
}

/** What limit-req and limit-conn compile alike from their config. */
export interface LimitBasics {
  /** a request's key, without the scope prefix */
  readonly keyOf: (ctx: PluginContext) => string;
  /** where the config lives (scopePrefix) */
  readonly prefix: string;
  readonly rejectedCode: number;
  readonly rejectedMsg: string | undefined;
}

export function compileLimitBasics(
  conf: { key_type: KeyType; key: string; rejected_code: number; rejected_msg?: string },
  scope: PluginScope,
): LimitBasics {
  return { keyOf: compileLimitKey(conf.key_type, conf.key), prefix: scopePrefix(scope), rejectedCode: conf.rejected_code, rejectedMsg: conf.rejected_msg };
}

/** limit-req and limit-conn keep their state in this process only: another policy is a config error. */
export function requireLocalPolicy(plugin: string, policy: string): void {
  if (policy !== 'local') throw new Error(`/policy: ${policy} is not supported by Portico's ${plugin} (use local)`);
}

/** A request over the limit (APISIX): `rejected_code`, with `{"error_msg": rejected_msg}` as the body when set. */
export function rejectedAnswer(code: number, msg: string | undefined): PluginAnswer {
  return msg === undefined ? { status: code } : { status: code, body: { error_msg: msg } };
}

/** Holds a request for `seconds`; APISIX sleeps only for delays of a millisecond or more. */
export function delayed(seconds: number): Promise<undefined> | undefined {
  return seconds >= 0.001 ? sleep(seconds * 1000).then(() => undefined) : undefined;
}

/**
 * Drops entries of `state` that `expired(entry, now)` says are of no use any more, every
 * `intervalMs`, so per-key state of clients that went away does not grow without bound. The timer
 * is unref'd (it never keeps the process alive) and started once per map.
 */
export function sweepExpired<V>(state: Map<string, V>, expired: (entry: V, now: number) => boolean, intervalMs = 10_000): void {
  if (sweeping.has(state)) return;
  sweeping.add(state);
  setInterval(() => {
    const now = Date.now();
    for (const [k, v] of state) if (expired(v, now)) state.delete(k);
  }, intervalMs).unref();
}
const sweeping = new WeakSet<Map<string, unknown>>();
